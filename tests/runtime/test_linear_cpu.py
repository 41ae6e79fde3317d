"""Nvfp4Linear on the CPU through the reference-backed store: it opens exactly the ops it
declares (Nvfp4Linear.ops), its missing() checks exactly those at the token counts each serves,
and every path (w4a16_gemm for small M; above it quack's kernels by default, our w4a16_ws_gemm with
quack=False; each the fallback of the other) computes the checkpoint's GEMM."""

import pytest
import torch

from nvfp4_aot.kernels.quack_w4a16.layout import dequantize
from nvfp4_aot.kernels.quack_w4a16.prepare import random_nvfp4_weights
from nvfp4_aot.runtime.errors import MissingVariantError
from nvfp4_aot.runtime.linear import QUACK_FROM, QUACK_FROM_ROW_ALPHA, WS_FROM, Nvfp4Linear

from ref_store import RefStore

N, K = 256, 256


def _weights(seed, scales, n=N):
    g = torch.Generator().manual_seed(seed)
    q, sf = random_nvfp4_weights(n, K, g, "cpu")
    return q, sf.view(torch.float8_e4m3fn), torch.tensor(scales, dtype=torch.float32)


def _rel(got, want):
    return ((got.double() - want).norm() / want.norm()).item()


def _check(lin, q, sf, row_scale, ms):
    w = dequantize(q, sf.view(torch.uint8)).double() * row_scale
    for m in ms:
        x = torch.randn(m, K, generator=torch.Generator().manual_seed(m)).to(torch.bfloat16)
        assert _rel(lin(x), x.double() @ w.T) <= 1e-2, m


@pytest.mark.parametrize("scales", [0.01, [0.01, 0.03]], ids=["one_scale", "two_scales"])
def test_our_kernels_serve_every_m(scales):
    """quack=False: w4a16_gemm up to WS_FROM, w4a16_ws_gemm above, one- and two-scale layers
    alike (both take the per-row alpha); each op's buckets checked only at the M it serves."""
    q, sf, s2 = _weights(1, scales)
    upto = WS_FROM
    parts = {"part_sizes": (192, 64)} if isinstance(scales, list) else {}
    lin = Nvfp4Linear(RefStore("sm_90a", max_m=upto), q, sf, s2, max_tokens=4096, device="cpu", quack=False, **parts)
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "w4a16_ws_gemm"] and lin.upper_from == upto
    assert lin.missing([1, upto]) == []
    # M above the threshold goes to ws, whose buckets end at upto here
    assert lin.missing([upto + 1]) == [f"{lin.upper_op.name} M={upto + 1} (buckets end at {upto})"]
    lin = Nvfp4Linear(RefStore("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", quack=False, **parts)
    row = torch.tensor([0.01] * 192 + [0.03] * 64, dtype=torch.float64)[:, None] if parts else 0.01
    _check(lin, q, sf, row, (3, upto, upto + 6))
    assert lin.op.calls == 2 and lin.upper_op.calls == 1


def test_one_scale_layer_uses_quack_by_default():
    q, sf, s2 = _weights(1, 0.01)
    store = RefStore("sm_90a", max_m=QUACK_FROM)  # every bucket ends at QUACK_FROM
    lin = Nvfp4Linear(store, q, sf, s2, max_tokens=4096, device="cpu")
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "quack_w4a16_gemm"] and lin.upper is not None
    assert lin.missing([1, QUACK_FROM]) == []
    # M above QUACK_FROM goes to quack, whose buckets end at QUACK_FROM here
    assert lin.missing([QUACK_FROM + 1]) == [f"{lin.upper_op.name} M={QUACK_FROM + 1} (buckets end at {QUACK_FROM})"]
    assert lin.upper[3].shape == (1,)  # quack's scalar alpha
    _check(lin, q, sf, 0.01, (3, QUACK_FROM + 6))


def test_two_scale_layer_uses_the_row_alpha_quack_by_default():
    q, sf, s2 = _weights(2, [0.01, 0.03])
    end = QUACK_FROM_ROW_ALPHA - 1
    lin = Nvfp4Linear(RefStore("sm_90a", max_m=end), q, sf, s2, max_tokens=4096, part_sizes=(192, 64), device="cpu",
                      quack=True)
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "quack_w4a16_rowalpha_gemm"]
    # ours serves M <= QUACK_FROM_ROW_ALPHA (buckets ending one short here), quack above it
    assert lin.missing([QUACK_FROM_ROW_ALPHA]) == [f"{lin.op.name} M={QUACK_FROM_ROW_ALPHA} (buckets end at {end})"]
    assert lin.missing([QUACK_FROM_ROW_ALPHA + 1]) == [f"{lin.upper_op.name} M={QUACK_FROM_ROW_ALPHA + 1} (buckets end at {end})"]
    row = torch.tensor([0.01] * 192 + [0.03] * 64, dtype=torch.float64)[:, None]
    lin = Nvfp4Linear(RefStore("sm_90a"), q, sf, s2, max_tokens=4096, part_sizes=(192, 64), device="cpu", quack=True)
    _check(lin, q, sf, row, (5, QUACK_FROM_ROW_ALPHA + 6))


def test_quack_asked_but_absent_falls_back_to_ws():
    q, sf, s2 = _weights(5, 0.02)

    class NoQuack(RefStore):
        def op(self, family, **problem):
            if family.startswith("quack_"):
                raise MissingVariantError(family)
            return super().op(family, **problem)

    lin = Nvfp4Linear(NoQuack("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", quack=True)
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "w4a16_ws_gemm"] and lin.upper_from == WS_FROM
    _check(lin, q, sf, 0.02, (7, 300))


def test_ws_asked_but_absent_falls_back_to_quack():
    q, sf, s2 = _weights(6, 0.02)

    class NoWs(RefStore):
        def op(self, family, **problem):
            if family == "w4a16_ws_gemm":
                raise MissingVariantError(family)
            return super().op(family, **problem)

    lin = Nvfp4Linear(NoWs("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", quack=False)
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "quack_w4a16_gemm"] and lin.upper_from == QUACK_FROM
    _check(lin, q, sf, 0.02, (7, 300))


@pytest.mark.parametrize("quack", [False, True])
def test_without_the_upper_kernel_in_the_store_w4a16_gemm_serves_every_m(quack):
    q, sf, s2 = _weights(3, 0.02)

    class Only(RefStore):
        def op(self, family, **problem):
            if family != "w4a16_gemm":
                raise MissingVariantError(family)
            return super().op(family, **problem)

    lin = Nvfp4Linear(Only("sm_90a", max_m=QUACK_FROM), q, sf, s2, max_tokens=4096, device="cpu", quack=quack)
    assert [d.family for d in lin.decls] == ["w4a16_gemm"] and lin.upper is None
    assert lin.missing([2 * QUACK_FROM + 1]) == [f"{lin.op.name} M={2 * QUACK_FROM + 1} (buckets end at {QUACK_FROM})"]
    lin = Nvfp4Linear(Only("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", quack=quack)
    _check(lin, q, sf, 0.02, (7, 300))


def test_split_k_buckets_get_zeroed_scratch_sized_for_max_tokens():
    """Buckets of quack's op built with serial split-K take flags + workspace: the layer owns one
    zeroed buffer each, sized from the signatures at max_tokens, and passes prefixes shaped for M
    (RefOp checks shapes, dtypes and that the flags are zero before each call)."""
    from nvfp4_aot.runtime.scratch import OpScratch

    q, sf, s2 = _weights(4, 0.01)
    tunings = {"quack_w4a16_gemm": [(64, {"tile_m": 64, "tile_n": 32, "split_k": 2}),
                                    (256, {"tile_m": 128, "tile_n": 64, "split_k": 4}),
                                    (4096, {"tile_m": 128, "tile_n": 128})]}
    lin = Nvfp4Linear(RefStore("sm_90a", tunings=tunings), q, sf, s2, max_tokens=200, device="cpu", quack=True)
    scratch = lin.upper_scratch
    assert isinstance(scratch, OpScratch) and set(scratch.buffers) == {"flags", "workspace"}
    # largest use up to max_tokens: bucket [65, 256] at M = 200: 2 x 4 tiles of 128 x 64
    assert scratch.buffers["flags"].numel() == max(256 // 64 * 2, 256 // 128 * 4) == 8
    assert scratch.buffers["workspace"].numel() == 8 * 128 * 64 and scratch.buffers["workspace"].dtype == torch.float32
    assert not scratch.buffers["flags"].any()
    w = dequantize(q, sf.view(torch.uint8)).double() * 0.01
    for m in (QUACK_FROM + 1, 64, 65, 200, 7):
        x = torch.randn(m, K, generator=torch.Generator().manual_seed(m)).to(torch.bfloat16)
        assert _rel(lin(x), x.double() @ w.T) <= 1e-2, m
    assert [a.shape for a in scratch(65)] == [(1, 2, 2), (1, 2, 2, 128 * 64)]
    assert scratch(64)[0].shape == (1, 4, 2) and scratch(300 - 100)[1].shape == (1, 2, 4, 8192)
    # M above max_tokens cannot get scratch: a clear error, not a silent overrun
    from nvfp4_aot.runtime.errors import ArgumentError

    with pytest.raises(ArgumentError, match="max_tokens=200"):
        scratch(256)
    # buckets without split-K need none
    lin2 = Nvfp4Linear(RefStore("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", quack=True)
    assert lin2.upper_scratch.buffers == {} and lin2.upper_scratch(100) == ()
    # our w4a16_ws_gemm takes none
    lin3 = Nvfp4Linear(RefStore("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", quack=False)
    assert lin3.upper_op.name.startswith("w4a16_ws_gemm") and lin3.upper_scratch.buffers == {}


def _dropping(drop):
    """A reference sm_90a store without the family `drop` (None: every family)."""

    class Drop(RefStore):
        def op(self, family, **problem):
            if family == drop:
                raise MissingVariantError(family)
            return super().op(family, **problem)

    return Drop("sm_90a")


@pytest.mark.parametrize("drop", [None, "w4a16_ws_gemm", "quack_w4a16_gemm"])
def test_default_path_serves_ws_on_the_listed_ranges(monkeypatch, drop):
    """quack=True on a shape of tiles.WS_OVER_QUACK: w4a16_gemm up to WS_FROM, w4a16_ws_gemm on the
    listed M ranges, quack on the others; a store without one of the two upper kernels gives the
    other every M above WS_FROM."""
    from nvfp4_aot.kernels.w4a16_ws import tiles

    monkeypatch.setitem(tiles.WS_OVER_QUACK, (N, K), ((0, 64), (128, 192)))
    q, sf, s2 = _weights(7, 0.02)

    lin = Nvfp4Linear(_dropping(drop), q, sf, s2, max_tokens=4096, device="cpu", quack=True)
    fams = [d.family for d in lin.decls]
    if drop is None:
        assert fams == ["w4a16_gemm", "w4a16_ws_gemm", "quack_w4a16_gemm"]
        assert (lin.lower_upto, lin.upper_from, lin.ws_spans) == (WS_FROM, 64, ((WS_FROM, 64), (128, 192)))
        assert [(d.m_above, d.m_upto) for d in lin.decls] == [(0, WS_FROM), (WS_FROM, 192), (64, None)]
    else:
        assert fams == ["w4a16_gemm", "quack_w4a16_gemm" if drop == "w4a16_ws_gemm" else "w4a16_ws_gemm"]
        assert lin.lower_upto == lin.upper_from == WS_FROM and lin.ws_spans == ()
    _check(lin, q, sf, 0.02, (7, WS_FROM, WS_FROM + 1, 64, 65, 128, 129, 192, 193, 300))
    assert lin.op.calls == 2
    if drop is None:  # ws: 33, 64, 129, 192; quack: 65, 128, 193, 300
        assert lin.mid_op.calls == 4 and lin.upper_op.calls == 4
    else:
        assert lin.upper_op.calls == 8


@pytest.mark.parametrize("quack", [True, False], ids=["default", "ours"])
def test_a_shape_decode_threshold_moves_the_first_ws_m(monkeypatch, quack):
    """tiles.DECODE_UPTO: on a shape where ws serves right above the decode range (quack=False, or ws at every M by
    default), w4a16_gemm serves up to the shape's threshold and ws from the next M; a shape outside the table keeps
    WS_FROM."""
    from nvfp4_aot.kernels.w4a16_ws import tiles

    q, sf, s2 = _weights(9, 0.02)
    monkeypatch.setitem(tiles.WS_OVER_QUACK, (N, K), ((0, None),))
    monkeypatch.setitem(tiles.DECODE_UPTO, (N, K), 8)
    assert Nvfp4Linear.decode_upto(N, K) == 8 and Nvfp4Linear.decode_upto(N + 64, K) == WS_FROM
    lin = Nvfp4Linear(RefStore("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", quack=quack)
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "w4a16_ws_gemm"]
    assert [(d.m_above, d.m_upto) for d in lin.decls] == [(0, 8), (8, None)]
    assert lin.lower_upto == lin.upper_from == 8
    _check(lin, q, sf, 0.02, (1, 8, 9, 16, 17))
    assert lin.op.calls == 2 and lin.upper_op.calls == 3


@pytest.mark.parametrize("drop", [None, "w4a16_ws_gemm", "quack_w4a16_gemm"])
def test_open_ended_ws_ranges(monkeypatch, drop):
    """tiles.WS_OVER_QUACK ranges with hi None: ws serves every M above lo. One range (16, None) covers every M
    above WS_FROM: the layer declares no quack kernel (per-row alpha to ours), unless the store lacks ws (then
    quack serves from WS_FROM). ((0, 64), (128, None)): quack only on 65-128."""
    from nvfp4_aot.kernels.w4a16_ws import tiles

    q, sf, s2 = _weights(7, 0.02)

    monkeypatch.setitem(tiles.WS_OVER_QUACK, (N, K), ((0, None),))
    lin = Nvfp4Linear(_dropping(drop), q, sf, s2, max_tokens=4096, device="cpu", quack=True)
    fams = [d.family for d in lin.decls]
    assert fams == ["w4a16_gemm", "quack_w4a16_gemm" if drop == "w4a16_ws_gemm" else "w4a16_ws_gemm"]
    assert lin.lower_upto == lin.upper_from == WS_FROM and lin.ws_spans == ()
    assert lin.upper[3].numel() == (1 if drop == "w4a16_ws_gemm" else N)  # quack's scalar alpha, ours per row
    _check(lin, q, sf, 0.02, (7, WS_FROM + 1, 300, 4096))
    assert lin.upper_op.calls == 3

    monkeypatch.setitem(tiles.WS_OVER_QUACK, (N, K), ((0, 64), (128, None)))
    lin = Nvfp4Linear(_dropping(drop), q, sf, s2, max_tokens=4096, device="cpu", quack=True)
    if drop is None:
        assert [d.family for d in lin.decls] == ["w4a16_gemm", "w4a16_ws_gemm", "quack_w4a16_gemm"]
        assert lin.ws_spans == ((WS_FROM, 64), (128, None))
        assert [(d.m_above, d.m_upto) for d in lin.decls] == [(0, WS_FROM), (WS_FROM, None), (64, None)]
        _check(lin, q, sf, 0.02, (33, 64, 65, 128, 129, 4096))
        assert lin.mid_op.calls == 4 and lin.upper_op.calls == 2  # ws: 33, 64, 129, 4096; quack: 65, 128


@pytest.mark.parametrize("ranges", [None, ((0, 64), (128, 192)), ((0, None),), ((0, 64), (128, None))])
@pytest.mark.parametrize("scales", [0.02, [0.02, 0.05]], ids=["one_scale", "two_scales"])
@pytest.mark.parametrize("quack", [True, False], ids=["default", "ours"])
def test_family_for_is_what_call_serves(monkeypatch, ranges, scales, quack):
    """Nvfp4Linear.family_for (benchmarks' and tools' view of the dispatch) names the op __call__
    runs at every M, on a store holding every declared op."""
    from nvfp4_aot.kernels.w4a16_ws import tiles

    if ranges is not None:
        monkeypatch.setitem(tiles.WS_OVER_QUACK, (N, K), ranges)
    q, sf, s2 = _weights(11, scales)
    parts = {"part_sizes": (192, 64)} if isinstance(scales, list) else {}
    lin = Nvfp4Linear(RefStore("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", quack=quack, **parts)
    ops = {a: getattr(lin, a) for a in ("op", "mid_op", "upper_op") if getattr(lin, a, None) is not None}
    for m in (1, WS_FROM, WS_FROM + 1, 33, 64, 65, 128, 129, 192, 193, 300):
        before = {a: o.calls for a, o in ops.items()}
        lin(torch.randn(m, K).to(torch.bfloat16))
        ran = [a for a, o in ops.items() if o.calls > before[a]]
        assert len(ran) == 1, (m, ran)
        want = Nvfp4Linear.family_for(N, K, m, one_scale=not parts, quack=quack)
        assert ops[ran[0]].name.startswith(want), (m, ops[ran[0]].name, want)


@pytest.mark.parametrize("shape", [(N, K), (2048, 7168)], ids=["unmeasured", "q_a_kv"])
@pytest.mark.parametrize("scales", [0.01, [0.01, 0.03]], ids=["one_scale", "two_scales"])
@pytest.mark.parametrize("order", ["rot", "rotq"])
def test_rot_layer_reads_one_rot_copy_on_our_kernels_at_every_m(scales, shape, order):
    """word_order="rot" / "rotq" (runtime/word_order.py): the weight is prepared once in that order
    (w4a16_rot / w4a16_rotq) and every op declared reads it (word_order rot in each problem); quack's kernels
    read nibble order only, so the layer declares the quack=False ops even when asked for quack,
    on a shape without measured ws ranges and on a DeepSeek-V4 shape (ws_everywhere) alike. The
    reference ops decode in their problem's word order: a nibble copy gives other weights."""
    n, k = shape
    decls = Nvfp4Linear.ops(n, k, "sm_90a", word_order=order, one_scale=not isinstance(scales, list))
    assert [d.family for d in decls] == ["w4a16_gemm", "w4a16_ws_gemm"]
    assert all(d.problem["word_order"] == order for d in decls) and decls[0].m_upto == Nvfp4Linear.decode_upto(n, k, order)
    assert Nvfp4Linear.decode_upto(n, k, "rotq") == WS_FROM  # rotq's split 'k' reads natural rows: no staged threshold
    assert Nvfp4Linear.family_for(n, k, 4096, word_order=order) == "w4a16_ws_gemm"
    if shape != (N, K):
        return
    q, sf, s2 = _weights(3, scales)
    parts = {"part_sizes": (192, 64)} if isinstance(scales, list) else {}
    lin = Nvfp4Linear(RefStore("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", word_order=order, **parts)
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "w4a16_ws_gemm"] and lin.word_order == order
    row = torch.tensor([0.01] * 192 + [0.03] * 64, dtype=torch.float64)[:, None] if parts else 0.01
    _check(lin, q, sf, row, (3, WS_FROM, WS_FROM + 6, 300))
    assert lin.op.calls == 2 and lin.upper_op.calls == 2
    nib = Nvfp4Linear(RefStore("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu", quack=False, word_order="nibble",
                      **parts)
    assert not torch.equal(nib.w[0], lin.w[0]) and torch.equal(nib.w[1], lin.w[1])
    lin.w = nib.w  # negative control: the nibble copy under the rot / rotq ops
    lin.upper = (lin.upper[0], *nib.w, lin.upper[3])
    x = torch.randn(40, K, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    w = dequantize(q, sf.view(torch.uint8)).double() * row
    assert _rel(lin(x), x.double() @ w.T) > 0.5
