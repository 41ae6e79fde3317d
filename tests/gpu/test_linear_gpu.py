"""Nvfp4Linear on a Hopper GPU, the five dense DeepSeek-V4 shapes (q_a + kv with two global scales):
our kernels at every M with quack=False (w4a16_gemm up to WS_FROM, w4a16_ws_gemm above, every
bucket edge of both), and the default path (w4a16_gemm, w4a16_ws_gemm on ws_ranges(N, K), quack
on the other M: every bucket edge of each, at the M it serves); against a float64 reference over the
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


def _segments(lin):
    """(above, upto, op): the M ranges (above, upto] the layer's kernels serve, in order."""
    segs, lo = [(0, lin.lower_upto, lin.op)], lin.lower_upto
    if lin.upper is None:
        return segs
    for a, b in lin.ws_spans:
        b = 1 << 62 if b is None else b  # (an open-ended ws range)
        if a > lo:
            segs.append((lo, a, lin.upper_op))
        segs.append((a, b, lin.mid_op))
        lo = b
    return segs + [(lo, 1 << 62, lin.upper_op)]


def _path(lin, m):
    return next(op.spec["family"] for lo, hi, op in _segments(lin) if lo < m <= hi)


def _edges(lin, cap, firsts_only=False):
    """Token counts at every bucket edge of the op serving them and at every path boundary, up to
    cap (firsts_only: each bucket's first M and the boundaries)."""
    ms = {1, cap}
    for lo, hi, op in _segments(lin):
        for a, b in op.bucket_edges():
            ms |= {m for m in ((a, lo + 1, hi) if firsts_only else (a, b, lo, lo + 1, hi, hi + 1))
                   if lo < m <= min(hi, cap)}
    return sorted(ms)


def _err(out, want):
    return ((out.double() - want).norm() / want.norm()).item()


def _check_every_edge(lin, wd, g, n, k) -> None:
    """Run lin at every edge M (_edges, capped where float64 references get slow) on fresh random
    input into a NaN-poisoned output; fail naming each M, its kernel and the error above TOL."""
    cap = M_CAP if n * k <= 1 << 26 else 600
    bad = []
    for m in _edges(lin, cap):
        x = torch.randn((m, k), generator=g, device=DEV).to(torch.bfloat16)
        out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device=DEV)
        lin(x, out=out)
        torch.cuda.synchronize()
        err = _err(out, x.double() @ wd.T)
        path = _path(lin, m)
        print(f"n={n} k={k} M={m} ({path}): rel err {err:.2e}")
        if not err <= TOL:  # NaN (an unwritten row) fails too
            bad.append(f"M={m} ({path}): {err:.2e}")
    assert not bad, f"n={n} k={k}: {bad}"


@pytest.mark.parametrize("n,k,parts", SHAPES, ids=lambda v: str(v))
def test_our_kernels_at_every_bucket_edge(store, seed, n, k, parts):
    lin, wd, g = _layer(store, seed, n, k, parts, quack=False)
    assert lin.upper is not None and lin.upper_op.spec["family"] == "w4a16_ws_gemm", "default store lacks w4a16_ws_gemm"
    assert lin.upper_from == Nvfp4Linear.decode_upto(n, k) and lin.op.spec["family"] == "w4a16_gemm"
    _check_every_edge(lin, wd, g, n, k)


@pytest.mark.parametrize("n,k,parts", SHAPES, ids=lambda v: str(v))
def test_default_path_at_every_bucket_edge(store, seed, n, k, parts):
    """quack=True: w4a16_gemm up to WS_FROM, w4a16_ws_gemm on ws_ranges(N, K) (where listed), quack
    (per-row alpha for the two-scale layer) on the other M; a layer whose ws range covers every M above
    WS_FROM (q_a + kv, q_b) has no quack kernel: ws is its upper kernel."""
    lin, wd, g = _layer(store, seed, n, k, parts)
    all_ws = Nvfp4Linear.ws_everywhere(n, k)
    fam = "w4a16_ws_gemm" if all_ws else "quack_w4a16_rowalpha_gemm" if parts else "quack_w4a16_gemm"
    assert lin.upper is not None and lin.upper_op.spec["family"] == fam
    assert lin.lower_upto == (Nvfp4Linear.decode_upto(n, k) if all_ws else WS_FROM)
    assert lin.ws_spans == (() if all_ws else Nvfp4Linear.ws_ranges(n, k))
    assert (lin.mid_op is not None) == bool(lin.ws_spans)
    _check_every_edge(lin, wd, g, n, k)


@pytest.mark.parametrize("quack", [True, False], ids=["quack", "ours"])
@pytest.mark.parametrize("n,k,parts", [SHAPES[0], SHAPES[3]], ids=lambda v: str(v))
def test_graphs_at_every_path_replay_interleaved(store, seed, n, k, parts, quack):
    """One graph per token count (decode kernel, each bucket of each kernel above it up to 2048:
    ws with its split-K scratch and pdl launches, quack with its split-K scratch), replayed in
    alternating orders with fresh inputs: results vs float64, nothing allocated."""
    lin, wd, g = _layer(store, seed, n, k, parts, quack=quack)
    ms = sorted(set(_edges(lin, 2048, firsts_only=True)) | {3, 2000})
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
