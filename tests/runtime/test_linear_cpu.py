"""Nvfp4Linear on the CPU through the reference-backed store: it opens exactly the ops it
declares (Nvfp4Linear.ops), its missing() checks exactly those at the token counts each serves,
and both paths (ours up to QUACK_FROM, quack's above it) compute the checkpoint's GEMM."""

import torch

from nvfp4_aot.kernels.quack_w4a16.layout import dequantize
from nvfp4_aot.kernels.quack_w4a16.prepare import random_nvfp4_weights
from nvfp4_aot.runtime.linear import QUACK_FROM, QUACK_FROM_ROW_ALPHA, Nvfp4Linear

from ref_store import RefStore

N, K = 256, 256


def _weights(seed, scales):
    g = torch.Generator().manual_seed(seed)
    q, sf = random_nvfp4_weights(N, K, g, "cpu")
    return q, sf.view(torch.float8_e4m3fn), torch.tensor(scales, dtype=torch.float32)


def _rel(got, want):
    return ((got.double() - want).norm() / want.norm()).item()


def test_one_scale_layer_uses_both_declared_paths():
    q, sf, s2 = _weights(1, 0.01)
    store = RefStore("sm_90a", max_m=QUACK_FROM)  # every bucket ends at QUACK_FROM
    lin = Nvfp4Linear(store, q, sf, s2, max_tokens=4096, device="cpu")
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "quack_w4a16_gemm"] and lin.quack is not None
    assert lin.missing([1, QUACK_FROM]) == []
    # M above QUACK_FROM goes to quack, whose buckets end at QUACK_FROM here
    assert lin.missing([QUACK_FROM + 1]) == [f"{lin.quack_op.name} M={QUACK_FROM + 1} (buckets end at {QUACK_FROM})"]
    w = dequantize(q, sf.view(torch.uint8)).double() * 0.01
    for m in (3, QUACK_FROM + 6):
        x = torch.randn(m, K, generator=torch.Generator().manual_seed(m)).to(torch.bfloat16)
        assert _rel(lin(x), x.double() @ w.T) <= 1e-2, m


def test_two_scale_layer_uses_the_row_alpha_quack_above_its_threshold():
    q, sf, s2 = _weights(2, [0.01, 0.03])
    end = QUACK_FROM_ROW_ALPHA - 1
    lin = Nvfp4Linear(RefStore("sm_90a", max_m=end), q, sf, s2, max_tokens=4096, part_sizes=(192, 64), device="cpu")
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "quack_w4a16_rowalpha_gemm"]
    # ours serves M <= QUACK_FROM_ROW_ALPHA (buckets ending one short here), quack above it
    assert lin.missing([QUACK_FROM_ROW_ALPHA]) == [f"{lin.op.name} M={QUACK_FROM_ROW_ALPHA} (buckets end at {end})"]
    assert lin.missing([QUACK_FROM_ROW_ALPHA + 1]) == [f"{lin.quack_op.name} M={QUACK_FROM_ROW_ALPHA + 1} (buckets end at {end})"]
    w = dequantize(q, sf.view(torch.uint8)).double() * torch.tensor([0.01] * 192 + [0.03] * 64, dtype=torch.float64)[:, None]
    for m in (5, QUACK_FROM_ROW_ALPHA + 6):
        x = torch.randn(m, K, generator=torch.Generator().manual_seed(m)).to(torch.bfloat16)
        assert _rel(lin(x), x.double() @ w.T) <= 1e-2, m


def test_without_quack_in_the_store_ours_serves_every_m():
    q, sf, s2 = _weights(3, 0.02)

    class NoQuack(RefStore):
        def op(self, family, **problem):
            if family.startswith("quack_"):
                from nvfp4_aot.runtime.errors import MissingVariantError

                raise MissingVariantError(family)
            return super().op(family, **problem)

    lin = Nvfp4Linear(NoQuack("sm_90a", max_m=QUACK_FROM), q, sf, s2, max_tokens=4096, device="cpu")
    assert [d.family for d in lin.decls] == ["w4a16_gemm"] and lin.quack is None
    assert lin.missing([QUACK_FROM + 1]) == [f"{lin.op.name} M={QUACK_FROM + 1} (buckets end at {QUACK_FROM})"]


def test_split_k_buckets_get_zeroed_scratch_sized_for_max_tokens():
    """Buckets of quack's op built with serial split-K take flags + workspace: the layer owns one
    zeroed buffer each, sized from the signatures at max_tokens, and passes prefixes shaped for M
    (RefOp checks shapes, dtypes and that the flags are zero before each call)."""
    from nvfp4_aot.runtime.scratch import OpScratch

    q, sf, s2 = _weights(4, 0.01)
    tunings = {"quack_w4a16_gemm": [(64, {"tile_m": 64, "tile_n": 32, "split_k": 2}),
                                    (256, {"tile_m": 128, "tile_n": 64, "split_k": 4}),
                                    (4096, {"tile_m": 128, "tile_n": 128})]}
    lin = Nvfp4Linear(RefStore("sm_90a", tunings=tunings), q, sf, s2, max_tokens=200, device="cpu")
    scratch = lin.quack_scratch
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
    import pytest

    from nvfp4_aot.runtime.errors import ArgumentError

    with pytest.raises(ArgumentError, match="max_tokens=200"):
        scratch(256)
    # buckets without split-K need none
    lin2 = Nvfp4Linear(RefStore("sm_90a"), q, sf, s2, max_tokens=4096, device="cpu")
    assert lin2.quack_scratch.buffers == {} and lin2.quack_scratch(100) == ()
