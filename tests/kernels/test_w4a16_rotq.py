"""Word order "rotq" (runtime/word_order.py QUAD_PLACED; Nvfp4Linear's layout with natural activations read straight
from global memory): the placement claim checked against the raw NVFP4 codes, the split 'k' kernel's kq fragment
mapping (kernels/w4a16/kernel.py: weight words at 16 (8 t + g), B registers = natural words j and j + 4, one scale
pair per lane) replayed as m16n8k16 MMAs against the float64 product, w4a16_ws's four 4-byte loads (the same words
as its 16-byte load in "rot", every bank once per load), and the refusals / tables that keep rotq where it is read."""

import pytest
import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, random_nvfp4_weights
from nvfp4_aot.kernels.w4a16.prepare import prepare_weights
from nvfp4_aot.runtime.word_order import (GROUPED_ORDERS, QUAD_PLACED, ROT_DECODED, WORD_ORDERS, _place_quads,
                                          for_runner, word_order, word_unorder)

DENSE = get_family("w4a16_gemm")
GROUPED = get_family("w4a16_grouped_gemm")
E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
                    dtype=torch.float64)


def _weights(n=128, k=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, sf = random_nvfp4_weights(n, k, gen, "cpu")
    blob, strip = prepare_weights(q, sf)
    return q, sf, blob, strip


def _nibble_words(blob_rotq):
    """rotq blob -> its words with rot's bit permutation undone (nibble bit order), placement kept: int64
    [G, kt, 4 slices, 32 positions, 4 words]. (Bits and placement commute: a placement moves whole words.)"""
    nib = _place_quads(word_unorder(_place_quads(blob_rotq, inverse=True), "rot"))
    by = nib.reshape(*blob_rotq.shape[:2], 4, 32, 4, 4).to(torch.int64)
    return (by << (8 * torch.arange(4))).sum(-1)


def test_rotq_round_trips_and_is_a_word_permutation_of_rot():
    _, _, blob, _ = _weights(seed=1)
    rq, rot = word_order(blob, "rotq"), word_order(blob, "rot")
    assert torch.equal(word_unorder(rq, "rotq"), blob) and not torch.equal(rq, rot)
    w = lambda b: b.reshape(-1, 4)  # noqa: E731
    assert sorted(map(bytes, w(rq).tolist())) == sorted(map(bytes, w(rot).tolist()))
    assert QUAD_PLACED == ("rotq",) and set(QUAD_PLACED) <= set(ROT_DECODED) <= set(WORD_ORDERS)
    with pytest.raises(ValueError, match=r"\(128, 16\)"):
        word_order(torch.zeros((2, 64, 16), dtype=torch.uint8), "rotq")


def test_rotq_puts_a_lanes_16_bytes_on_its_own_k_range():
    """Position 8 t + g of slice w, word j, byte p (nibble h): row 16 w + g + 8 (p & 1), K 64 kt + 16 t + 2 j +
    8 (p >> 1) + h, against the checkpoint's codes (q: two codes per byte, low nibble = even K)."""
    q, _, blob, _ = _weights(seed=2)
    x = _nibble_words(word_order(blob, "rotq"))  # G kt w pos j
    codes = torch.stack([q & 15, q >> 4], -1).reshape(q.shape[0], -1).to(torch.int64)  # [N, K]
    G, KT = x.shape[:2]
    for w in range(4):
        for t in range(4):
            for g in range(8):
                for j in range(4):
                    for p in range(4):
                        for h in range(2):
                            got = (x[:, :, w, 8 * t + g, j] >> (8 * p + 4 * h)) & 15  # [G, kt]
                            rows = torch.arange(G) * 64 + 16 * w + g + 8 * (p & 1)
                            ks = torch.arange(KT) * 64 + 16 * t + 2 * j + 8 * (p >> 1) + h
                            assert torch.equal(got, codes[rows][:, ks]), (w, t, g, j, p, h)


def _mma(a_frag, b_frag):
    """m16n8k16 from per-lane fragments: a_frag[lane] = 4 registers x 2 halves (rows g, g + 8; slots 2t (+1),
    2t + 8 (+9)), b_frag[lane] = 2 registers x 2 halves (slots 2t (+1), 2t + 8 (+9); column g) -> D [16, 8]."""
    A = torch.full((16, 16), float("nan"), dtype=torch.float64)
    B = torch.full((16, 8), float("nan"), dtype=torch.float64)
    for lane in range(32):
        g, t = divmod(lane, 4)
        for p in range(4):
            for h in range(2):
                A[g + 8 * (p & 1), 2 * t + 8 * (p >> 1) + h] = a_frag[lane][p][h]
        for e in range(2):
            for h in range(2):
                B[2 * t + 8 * e + h, g] = b_frag[lane][e][h]
    return A @ B


def test_split_k_kq_fragments_multiply_to_the_exact_product():
    """The kernel's kq path on one 16-row slice and 8 natural token rows, k64 tile by tile: lane (g, t) loads the 16
    bytes at 16 (8 t + g), decodes word j with the scale pair of k16 block t (its own range), and feeds MMA block j
    with natural words j and j + 4 of K 16 t .. 16 t + 15 of token g. The sum equals W @ act^T in float64."""
    n, k = 64, 256
    q, sf, blob, strip = _weights(n, k, seed=3)
    x = _nibble_words(word_order(blob, "rotq"))
    scale = strip.reshape(1, k // 64, 32, 4, 2).view(torch.float8_e4m3fn).double()  # G kt (w l) block row
    gen = torch.Generator().manual_seed(4)
    act = torch.randn(8, k, generator=gen, dtype=torch.float64)
    want = dequantize(q, sf).double() @ act.T  # [64, 8]
    for w in range(4):
        got = torch.zeros(16, 8, dtype=torch.float64)
        for kt in range(k // 64):
            for j in range(4):  # MMA block j of the tile
                a_frag, b_frag = [], []
                for lane in range(32):
                    g, t = divmod(lane, 4)
                    word = int(x[0, kt, w, 8 * t + g, j])
                    sc = scale[0, kt, 8 * w + g, t]  # (row g, row g + 8) of the lane's own k16 block t
                    a_frag.append([[E2M1[(word >> (8 * p + 4 * h)) & 15] * sc[p & 1] for h in range(2)]
                                   for p in range(4)])
                    row = act[g, 64 * kt + 16 * t: 64 * kt + 16 * t + 16]  # the lane's 32 natural bytes
                    b_frag.append([[row[2 * (j + 4 * e) + h] for h in range(2)] for e in range(2)])
                got += _mma(a_frag, b_frag)
        torch.testing.assert_close(got, want[16 * w: 16 * w + 16], rtol=1e-12, atol=1e-9)


def test_ws_reads_rots_words_with_four_conflict_free_loads():
    """w4a16_ws in rotq (kernel.py _blob_words): thread tw = 32 w + 4 g + t, k16 block b reads 4 bytes at
    512 w + 16 (8 b + g) + 4 t of the blob tile: the word its 16-byte load finds at word b of 16 tw in "rot"; and the
    warp's 32 addresses of one load fall in 32 distinct banks."""
    _, _, blob, _ = _weights(seed=5)
    rq = word_order(blob, "rotq").reshape(*blob.shape[:2], 2048)
    rot = word_order(blob, "rot").reshape(*blob.shape[:2], 2048)
    for tw in range(128):
        w, lane = divmod(tw, 32)
        g, t = divmod(lane, 4)
        for b in range(4):
            a = 512 * w + 16 * (8 * b + g) + 4 * t
            assert torch.equal(rq[..., a:a + 4], rot[..., 16 * tw + 4 * b: 16 * tw + 4 * b + 4]), (tw, b)
    for b in range(4):
        banks = {((16 * (8 * b + lane // 4) + 4 * (lane % 4)) // 4) % 32 for lane in range(32)}
        assert len(banks) == 32


def test_rotq_refusals_and_tables():
    base = {"n": 6144, "k": 7168, "warps": 8, "word_order": "rotq"}
    assert DENSE.can_implement(DENSE.parse_params(base), "sm_90a") == []
    assert DENSE.can_implement(DENSE.parse_params({**base, "wpf": 1}), "sm_90a") == []
    for bad in ({"sk": 1}, {"split": "n"}, {"act_order": "quad"}, {"split": "wg", "warps": 4, "nt": 8}):
        msgs = DENSE.can_implement(DENSE.parse_params({**base, **bad}), "sm_90a")
        assert any("word_order='rotq'" in r for r in msgs), (bad, msgs)
    msgs = GROUPED.can_implement(GROUPED.parse_params({**base, "experts": 4}), "sm_90a")
    assert any("Nvfp4Linear's" in r for r in msgs)
    ws = get_family("w4a16_ws_grouped_gemm")
    msgs = ws.can_implement(ws.parse_params({"n": 7168, "k": 3072, "experts": 4, "word_order": "rotq"}), "sm_90a")
    assert any("Nvfp4Linear's" in r for r in msgs)
    for (n, k) in ((6144, 7168), (2048, 7168), (7168, 3072), (7168, 2048), (65536, 1536)):
        table = DENSE.tile_table({"n": n, "k": k, "word_order": "rotq"})
        assert [e for e, _ in table] == [8, 16, None]
        for _, tun in table:
            assert "sk" not in tun
            assert DENSE.can_implement(DENSE.parse_params({"n": n, "k": k, "word_order": "rotq", **tun}), "sm_90a") == []


def test_runners_and_rotq():
    """Nvfp4Linear(word_order="rotq"): w4a16_gemm up to WS_FROM on every shape, w4a16_ws_gemm above, no quack tier;
    MoERunner refuses it (its decode path reads quad / quad8 activations)."""
    from nvfp4_aot.runtime.errors import ArgumentError
    from nvfp4_aot.runtime.linear import WS_FROM, Nvfp4Linear
    from nvfp4_aot.runtime.moe import MoERunner

    for (n, k) in ((2048, 7168), (24576, 1536)):
        decls = Nvfp4Linear.ops(n, k, "sm_90a", one_scale=False, word_order="rotq")
        assert [(d.family, d.m_upto) for d in decls] == [("w4a16_gemm", WS_FROM), ("w4a16_ws_gemm", None)]
        assert all(d.problem["word_order"] == "rotq" for d in decls) and decls[1].m_above == WS_FROM
    with pytest.raises(ArgumentError, match="word_order='rotq'"):
        MoERunner.ops(7168, 3072, 8, 2, "sm_90a", word_order="rotq")
    # an order asked of both runners (plan --word-order, $NVFP4_AOT_WORD_ORDER): rotq reaches Nvfp4Linear only
    assert GROUPED_ORDERS == ("nibble", "rot")
    assert [for_runner(o, GROUPED_ORDERS) for o in (None, "nibble", "rot", "rotq")] == [None, "nibble", "rot", None]
