"""Our warp-specialized Hopper W4A16 NVFP4 GEMM (the prefill kernel of issue 11), grouped and dense:

    out[r, :] = bf16((act[r, :] @ dequant(W_e)^T) * alpha[e, :])   offsets[e] <= r < offsets[e] + counts[e]

Weights in THE Hopper W4A16 layout (quack's nvfp4 layout, kernels/quack_w4a16/layout.py,
prepare_weights per expert, stacked): blob uint8 [E, N/64, K/64, 128, 16] + strip uint8
[E, N/64, K/64, 32, 4, 2]; natural K. alpha fp32 per output row ([E, N]; dense [N]) carries the
global decode scale (two-valued for fused two-scale projections).

w4a16_ws_grouped_gemm  MoE experts in one launch. Expert e owns rows [offsets[e], offsets[e] +
                       counts[e]); rows outside every expert's range are never written; corrupt
                       offsets/counts are clamped into [0, M) (wrong rows at worst, never an
                       out-of-bounds access); an idle expert costs nothing; no route padding.
w4a16_ws_gemm          one weight matrix, M = act rows.

Design (kernel.py): swap-AB, persistent grid of sm_count CTAs with a device-side grouped tile
scheduler, one producer warp (TMA for the activations, 1-D bulk copies for weights and scales)
feeding an S-stage mbarrier ring, two consumer warpgroups decoding NVFP4 into the RS-wgmma A
operand, the decode of the next k16 block (pipe 16) or k64 step (pipe 64) overlapping the
wgmmas in flight. Knobs: tile_m (weight rows per CTA tile: 128 or 256), tile_n (tokens per tile:
64, 128 or 256; accumulators tile_m * tile_n / (128 wgs) per consumer thread), stages, wgs
(consumer warpgroups: 2 or 4), pipe (16 or 64), sm_count. Measured tilings: GROUPED_TILES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..family import Arg, Family, Signature
from ..tolerances import REL_FROBENIUS

TILE_MS = (128, 256)
TILE_NS = (64, 128, 256)
PIPES = (16, 64)
MAX_ACC = 128  # fp32 accumulators per consumer thread (tile_m * tile_n / 256): registers
SMEM_LIMIT = 227 * 1024  # Hopper's per-block opt-in shared memory
REL_TOL = REL_FROBENIUS["bfloat16"]


def smem_bytes(tile_m: int, tile_n: int, stages: int, experts: int) -> int:
    """Shared memory of one CTA: the stage ring (activations tile_n x 128 B, weights tile_m / 64
    blob tiles + strips), the mbarriers and the scheduler's three int32 arrays, with alignment."""
    ring = stages * (tile_n * 128 + (tile_m // 64) * (2048 + 256))
    return 1024 + ring + 16 * stages + 12 * experts + 64


@dataclass(frozen=True)
class WsParams:
    n: int  # output features per expert (weight rows)
    k: int  # input features
    experts: int = 1  # grouped: experts in one launch (dense: 1)
    tile_m: int = 128  # weight rows per CTA tile (2 consumer warpgroups x tile_m / 128 m64 blocks)
    tile_n: int = 128  # tokens per CTA tile (the wgmma N)
    stages: int = 6  # shared-memory ring depth (k64 steps in flight)
    sm_count: int = 132  # persistent grid (H100 SXM / H200: 132 SMs)
    wgs: int = 2  # consumer warpgroups (4: one m64 block each at tile_m 256, more warps to hide the decode)
    pipe: int = 16  # k elements per wgmma commit group: 16 (decode interleaved per k16 block) or 64


def _reasons(p: WsParams) -> list[str]:
    r = []
    if p.tile_m not in TILE_MS:
        r.append(f"tile_m={p.tile_m} must be one of {TILE_MS}")
    if p.tile_n not in TILE_NS:
        r.append(f"tile_n={p.tile_n} must be one of {TILE_NS}")
    if p.tile_m in TILE_MS and p.tile_n in TILE_NS and p.wgs in (2, 4) and p.tile_m * p.tile_n // (128 * p.wgs) > MAX_ACC:
        r.append(f"tile_m x tile_n = {p.tile_m} x {p.tile_n} needs {p.tile_m * p.tile_n // (128 * p.wgs)} accumulators "
                 f"per thread > {MAX_ACC}: lower one")
    if p.tile_m in TILE_MS and (p.n < p.tile_m or p.n % p.tile_m):
        r.append(f"n={p.n} must be a positive multiple of tile_m={p.tile_m} (a weight tile never straddles experts)")
    if p.k < 64 or p.k % 64:
        r.append(f"k={p.k} must be a positive multiple of 64 (the layout's k64 tile)")
    if not 2 <= p.stages <= 12:
        r.append(f"stages={p.stages} must be in [2, 12]")
    elif p.tile_m in TILE_MS and p.tile_n in TILE_NS and smem_bytes(p.tile_m, p.tile_n, p.stages, p.experts) > SMEM_LIMIT:
        r.append(f"stages={p.stages}: {smem_bytes(p.tile_m, p.tile_n, p.stages, p.experts)} B of shared memory > "
                 f"{SMEM_LIMIT}: lower stages or the tile")
    if p.wgs not in (2, 4):
        r.append(f"wgs={p.wgs} must be 2 or 4 (consumer warpgroups)")
    elif p.tile_m in TILE_MS and (p.tile_m // 64) % p.wgs:
        r.append(f"tile_m={p.tile_m} is {p.tile_m // 64} m64 blocks: not a multiple of wgs={p.wgs}")
    elif p.tile_n in TILE_NS and p.wgs == 4 and p.tile_n > 64:
        r.append(f"wgs=4 leaves 112 registers per consumer thread: tile_n={p.tile_n} > 64 makes ptxas serialize "
                 "the wgmmas (C7512)")
    if p.pipe not in PIPES:
        r.append(f"pipe={p.pipe} must be one of {PIPES} (k elements per wgmma commit group)")
    if not 1 <= p.experts <= 1024:
        r.append(f"experts={p.experts} must be in [1, 1024]")
    if not 1 <= p.sm_count <= 1024:
        r.append(f"sm_count={p.sm_count} must be in [1, 1024]")
    if p.n > (1 << 20) or p.k > (1 << 20):
        r.append("n and k must be <= 2^20")
    return r


def random_weights(p: WsParams, gen, device):
    """Per expert: random NVFP4 (q, sf), their blob/strip, and a per-row alpha with two halves of
    different global scales (the fused q_a + kv case; a wrong row or expert mapping shows)."""
    import torch

    from ..quack_w4a16.layout import prepare_weights
    from ..quack_w4a16.prepare import random_nvfp4_weights

    qs, sfs, blobs, strips = [], [], [], []
    for _ in range(p.experts):
        q, sf = random_nvfp4_weights(p.n, p.k, gen, device)
        b, s = prepare_weights(q, sf)
        qs.append(q), sfs.append(sf), blobs.append(b), strips.append(s)
    half = (torch.rand((p.experts, 2), generator=gen, device=device) + 0.5) * 2.0**-7
    alpha = half.repeat_interleave(torch.tensor([p.n // 2, p.n - p.n // 2], device=device), dim=1)
    return qs, sfs, torch.stack(blobs).contiguous(), torch.stack(strips).contiguous(), alpha.contiguous()


def random_groups(m: int, experts: int, dist: str, gen):
    """(offsets [E + 1], counts [E]) int32 on the CPU: expert e owns rows [off[e], off[e] + c[e]),
    followed by 0..25% padding rows; off[E] <= m. dist: uniform | skewed | single | empty."""
    import torch

    g = torch.Generator().manual_seed(int(torch.randint(0, 1 << 30, (1,), generator=gen, device=gen.device).item()))
    if dist == "uniform":
        w = torch.ones(experts)
    elif dist == "skewed":
        w = torch.rand(experts, generator=g) ** 4 + 1e-3
    elif dist == "single":
        w = torch.zeros(experts)
        w[int(torch.randint(0, experts, (1,), generator=g))] = 1.0
    elif dist == "empty":
        w = (torch.rand(experts, generator=g) < 0.3).float()
        if w.sum() == 0:
            w[0] = 1.0
    else:
        raise ValueError(f"unknown distribution {dist!r}")
    share = torch.multinomial(w / w.sum(), m, replacement=True, generator=g) if m else torch.zeros(0, dtype=torch.long)
    sizes = torch.bincount(share, minlength=experts)
    pad = (torch.rand(experts, generator=g) * 0.25 * sizes).long()
    counts = (sizes - pad).clamp_min(0)
    offsets = torch.zeros(experts + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(sizes, 0)
    return offsets.to(torch.int32), counts.to(torch.int32)


class _Base(Family):
    params_type = WsParams
    archs = ("sm_90a",)  # wgmma + setmaxnreg; Blackwell has FP4 tensor cores instead
    modules = ("nvfp4_aot.kernels.w4a16_ws", "nvfp4_aot.kernels.w4a16_ws.kernel", "nvfp4_aot.kernels.w4a16_ws.ptx",
               "nvfp4_aot.kernels.quack_w4a16.layout")
    max_m = 1 << 20
    grouped = False

    def can_implement(self, p: WsParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + _reasons(p)
        if not self.grouped and p.experts != 1:
            r.append(f"experts={p.experts}: the dense family has one weight matrix (use w4a16_ws_grouped_gemm)")
        return r

    def compile_args(self, p: WsParams, arch: str):
        from ..w4a16_device import fake_args
        from . import kernel

        return kernel.make_kernel(p, self.grouped), fake_args(p, self.grouped)

    def reference(self, p: WsParams, inputs: Mapping[str, Any]):
        """float64 act . W_e^T * alpha[e] per expert's counted rows, W dequantized exactly (from
        make_inputs' w_q / w_sf, else by inverting the layout). Other rows: NaN (never written)."""
        import torch

        from ..quack_w4a16.layout import dequantize, unprepare_weights

        act = inputs["act"].double()
        want = torch.full((act.shape[0], p.n), float("nan"), dtype=torch.float64, device=act.device)
        alpha = inputs["alpha"].reshape(p.experts, p.n).double()
        blob = inputs["blob"].reshape(p.experts, p.n // 64, p.k // 64, 128, 16)
        sf = inputs["sf"].reshape(p.experts, p.n // 64, p.k // 64, 32, 4, 2)
        for e, (lo, hi) in enumerate(self._ranges(inputs)):
            if hi > lo:
                q, s = (inputs["w_q"][e], inputs["w_sf"][e]) if "w_q" in inputs else unprepare_weights(blob[e], sf[e])
                w = dequantize(q, s).double()
                want[lo:hi] = (act[lo:hi] @ w.T) * alpha[e]
        return {"out": want}

    def _ranges(self, inputs) -> list[tuple[int, int]]:
        if not self.grouped:
            return [(0, inputs["act"].shape[0])]
        off, cnt = inputs["offsets"].tolist(), inputs["counts"].tolist()
        return [(off[e], off[e] + cnt[e]) for e in range(len(cnt))]

    def check(self, p: WsParams, got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
        """Computed rows: relative Frobenius error <= REL_TOL. Other rows: the poison survives."""
        import torch

        g, w = got["out"], want["out"]
        if tuple(g.shape) != tuple(w.shape):
            return [f"out: shape {tuple(g.shape)} != {tuple(w.shape)}"]
        rows = ~torch.isnan(w).all(dim=1)
        bad = []
        if (~rows).any() and not torch.isnan(g[~rows].float()).all():
            bad.append(f"out: {int((~torch.isnan(g[~rows].float())).sum())} values written in rows outside every "
                       "expert's count")
        gd, wd = g[rows].double(), w[rows]
        if gd.numel():
            nonfin = ~torch.isfinite(gd)
            if nonfin.any():
                return bad + [f"out: {int(nonfin.sum())} of {gd.numel()} computed values non-finite (unwritten poison?)"]
            err = ((gd - wd).norm() / wd.norm().clamp_min(1e-300)).item()
            if err > REL_TOL:
                bad.append(f"out: relative Frobenius error {err:.3e} > {REL_TOL:.0e}")
        return bad


class DenseFamily(_Base):
    name = "w4a16_ws_gemm"
    problem_keys = ("n", "k")

    def tile_table(self, problem: Mapping[str, Any]):
        """Measured per (n, k) and token bucket: tiles.py (Nvfp4Linear's tables)."""
        from .tiles import dense_table

        return dense_table(problem)

    def signature(self, p: WsParams) -> Signature:
        return Signature(
            (
                Arg("act", "bfloat16", ("M", "K"), align=16),
                Arg("blob", "uint8", ("N // 64", "K // 64", 128, 16), align=16),
                Arg("sf", "uint8", ("N // 64", "K // 64", 32, 4, 2), align=16),
                Arg("alpha", "float32", ("N",), align=4),
                Arg("out", "bfloat16", ("M", "N"), align=4, output=True),
            ),
            static={"N": p.n, "K": p.k},
        )

    def make_inputs(self, p: WsParams, m: int, device: Any, seed: int, poison: float = float("nan")):
        import torch

        gen = torch.Generator(device=device).manual_seed(seed)
        qs, sfs, blob, sf, alpha = random_weights(p, gen, device)
        act = torch.randn((m, p.k), generator=gen, device=device).to(torch.bfloat16)
        out = torch.full((m, p.n), poison, dtype=torch.bfloat16, device=device)
        return {"act": act, "blob": blob[0], "sf": sf[0], "alpha": alpha[0], "out": out, "w_q": qs, "w_sf": sfs}


# Grouped tilings by average tokens per expert t = rows / experts (H200 sweep, docs/PERFORMANCE.md
# 2026-12-02 "session 5 ... w4a16_ws"): 256 x 64 (L2: 4 consumer warpgroups) up to t = 32, 256 x 128
# with the pipe-64 loop up to 128, 128 x 256 (pipe 16) above. With uniform groups 256 x 64 wins up to
# t = 64 (L1 674 vs 858 us), but routed groups vary around their mean: at t = 64 about half the
# experts get more than 64 rows, i.e. two 256 x 64 token tiles each; one 256 x 128 tile covers
# them (the MoE layer at 512 tokens measured 1513 us with the edge at 64; H200). Other shapes: same rule.
_T64 = {"tile_m": 256, "tile_n": 64, "stages": 8}
_T128 = {"tile_m": 256, "tile_n": 128, "stages": 8, "pipe": 64}
_T256 = {"tile_m": 128, "tile_n": 256, "stages": 6}
GROUPED_TILES = {  # (n, k) -> per-t table ((t upper edge | None, tuning), ...)
    (7168, 3072): ((32, {**_T64, "wgs": 4}), (128, _T128), (None, _T256)),
}
GROUPED_DEFAULT = ((32, _T64), (128, _T128), (None, _T256))


class GroupedFamily(_Base):
    name = "w4a16_ws_grouped_gemm"
    problem_keys = ("n", "k", "experts")
    grouped = True

    def tile_table(self, problem: Mapping[str, Any]):
        """Token buckets by rows = t * experts (the runner's unpadded routed rows)."""
        e = int(problem["experts"])
        per_t = GROUPED_TILES.get((problem["n"], problem["k"]), GROUPED_DEFAULT)
        return tuple((None if t is None else t * e, tun) for t, tun in per_t)

    def signature(self, p: WsParams) -> Signature:
        return Signature(
            (
                Arg("act", "bfloat16", ("M", "K"), align=16),
                Arg("blob", "uint8", ("E", "N // 64", "K // 64", 128, 16), align=16),
                Arg("sf", "uint8", ("E", "N // 64", "K // 64", 32, 4, 2), align=16),
                Arg("alpha", "float32", ("E", "N"), align=4),
                Arg("offsets", "int32", ("E + 1",), align=4),
                Arg("counts", "int32", ("E",), align=4),
                Arg("out", "bfloat16", ("M", "N"), align=4, output=True),
            ),
            static={"N": p.n, "K": p.k, "E": p.experts},
        )

    def make_inputs(self, p: WsParams, m: int, device: Any, seed: int, poison: float = float("nan"),
                    dist: str = "uniform"):
        """m rows of act grouped over the experts (dist: uniform | skewed | single | empty), each
        expert's rows followed by some padding rows (never written)."""
        import torch

        gen = torch.Generator(device=device).manual_seed(seed)
        qs, sfs, blob, sf, alpha = random_weights(p, gen, device)
        offsets, counts = random_groups(m, p.experts, dist, gen)
        act = torch.randn((m, p.k), generator=gen, device=device).to(torch.bfloat16)
        out = torch.full((m, p.n), poison, dtype=torch.bfloat16, device=device)
        return {"act": act, "blob": blob, "sf": sf, "alpha": alpha, "offsets": offsets.to(device),
                "counts": counts.to(device), "out": out, "w_q": qs, "w_sf": sfs}


DENSE_FAMILY = DenseFamily()
GROUPED_FAMILY = GroupedFamily()
