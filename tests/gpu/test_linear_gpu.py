"""Nvfp4Linear on a Hopper GPU, the five dense DeepSeek-V4 shapes (q_a + kv with two global scales):
our kernels at every M with quack=False (w4a16_gemm up to WS_FROM, w4a16_ws_gemm above, every
bucket edge of both), quack's above QUACK_FROM (the default); against a float64 reference over the
exactly dequantized weights (relative Frobenius error <= 3e-3), NaN-poisoned outputs; and CUDA
graphs captured at token counts of every path, replayed interleaved with fresh inputs, no
allocation during replay."""

import pytest
import torch

from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, random_nvfp4_weights
from nvfp4_aot.runtime import Nvfp4Linear
from nvfp4_aot.runtime.linear import WS_FROM

from .graphs import capture, replay_without_allocating

pytestmark = pytest.mark.gpu
DEV = torch.device("cuda")
TOL = 3e-3
# (n, k, parts): q_a + kv (two global scales), shared gate + up, shared down, o_b, q_b
SHAPES = [(2048, 7168, (1536, 512)), (6144, 7168, None), (7168, 3072, None), (7168, 2048, None), (65536, 1536, None)]
M_CAP = 2048  # float64 references above this cost seconds each


def _layer(store, seed, n, k, parts, **kw):
    g = torch.Generator(device=DEV).manual_seed(seed)
    q, sf = random_nvfp4_weights(n, k, g, DEV)
    s2 = torch.tensor([0.5, 2.0] if parts else [0.75], device=DEV) / (k**0.5)
    lin = Nvfp4Linear(store, q, sf.view(torch.float8_e4m3fn), s2, part_sizes=parts, max_tokens=8192, **kw)
    alpha = torch.cat([torch.full((p,), float(v)) for p, v in zip(parts, s2.tolist())]) if parts else torch.full((n,), float(s2))
    return lin, dequantize(q, sf).double() * alpha.double().to(DEV)[:, None], g


def _edges(lin, cap):
    """Token counts at every bucket edge of the op serving them, up to cap."""
    ms = {1, cap}
    for op, lo_ok in ((lin.op, lambda m: m <= lin.upper_from), (lin.upper_op, lambda m: m > lin.upper_from)):
        for lo, hi in (op.bucket_edges() if op is not None else ()):
            ms |= {m for m in (lo, hi, lin.upper_from, lin.upper_from + 1) if m <= cap and lo_ok(m)}
    return sorted(ms)


def _err(out, want):
    return ((out.double() - want).norm() / want.norm()).item()


@pytest.mark.parametrize("n,k,parts", SHAPES, ids=lambda v: str(v))
def test_our_kernels_at_every_bucket_edge(store, seed, n, k, parts):
    lin, wd, g = _layer(store, seed, n, k, parts, quack=False)
    assert lin.upper is not None and lin.upper_op.spec["family"] == "w4a16_ws_gemm", "default store lacks w4a16_ws_gemm"
    assert lin.upper_from == WS_FROM and lin.op.spec["family"] == "w4a16_gemm"
    cap = M_CAP if n * k <= 1 << 26 else 600
    bad = []
    for m in _edges(lin, cap):
        x = torch.randn((m, k), generator=g, device=DEV).to(torch.bfloat16)
        out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device=DEV)
        lin(x, out=out)
        torch.cuda.synchronize()
        err = _err(out, x.double() @ wd.T)
        path = "ws" if m > lin.upper_from else "w4a16_gemm"
        print(f"n={n} k={k} M={m} ({path}): rel err {err:.2e}")
        if not err <= TOL:  # NaN (an unwritten row) fails too
            bad.append(f"M={m} ({path}): {err:.2e}")
    assert not bad, f"n={n} k={k}: {bad}"


@pytest.mark.parametrize("n,k,parts", [SHAPES[0], SHAPES[2]], ids=lambda v: str(v))
def test_quack_by_default(store, seed, n, k, parts):
    lin, wd, g = _layer(store, seed, n, k, parts)
    fam = "quack_w4a16_rowalpha_gemm" if parts else "quack_w4a16_gemm"
    assert lin.upper is not None and lin.upper_op.spec["family"] == fam
    for m in (5, lin.upper_from + 1, 1000):
        x = torch.randn((m, k), generator=g, device=DEV).to(torch.bfloat16)
        out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device=DEV)
        lin(x, out=out)
        torch.cuda.synchronize()
        assert _err(out, x.double() @ wd.T) <= TOL, m


@pytest.mark.parametrize("quack", [True, False], ids=["quack", "ours"])
@pytest.mark.parametrize("n,k,parts", [SHAPES[0], SHAPES[3]], ids=lambda v: str(v))
def test_graphs_at_every_path_replay_interleaved(store, seed, n, k, parts, quack):
    """One graph per token count (decode kernel, each bucket of the upper kernel up to 2048: quack
    with its split-K scratch, or ws), replayed in alternating orders with fresh inputs: results vs
    float64, nothing allocated."""
    lin, wd, g = _layer(store, seed, n, k, parts, quack=quack)
    ms = sorted({3, lin.upper_from, lin.upper_from + 1} | {lo for lo, _ in lin.upper_op.bucket_edges()
                                                            if lin.upper_from < lo <= 2048} | {2000})
    xs = {m: torch.randn((m, k), generator=g, device=DEV).to(torch.bfloat16) for m in ms}
    outs = {m: torch.empty((m, n), dtype=torch.bfloat16, device=DEV) for m in ms}
    for m in ms:
        lin(xs[m], outs[m])  # warm
    graphs = {m: capture(lambda m=m: lin(xs[m], outs[m]))[0] for m in ms}
    for r in range(2):
        for m in (ms if r == 0 else ms[::-1]):
            xs[m].copy_(torch.randn((m, k), generator=g, device=DEV))
            outs[m].fill_(float("nan"))
            replay_without_allocating(graphs[m], f"M={m}")
            err = _err(outs[m], xs[m].double() @ wd.T)
            assert err <= TOL, f"n={n} k={k} round {r} M={m}: rel err {err:.2e}"
