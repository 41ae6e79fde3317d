"""quack_w4a16_grouped_gemm: the MoE expert GEMM (L1 / L2 of the routed experts) on quack 0.6.5's
persistent warp-specialized SM90 W4A16 kernel, one launch for all experts (grouped.py says how).

    out[r, :] = bf16((act[r, :] @ W_e^T) * alpha[e, :])   for offsets[e] <= r < offsets[e + 1]

Contract: offsets[0] = 0, monotone, every offsets[e] a multiple of tile_n (the route kernel
with pad = tile_n), offsets[E] <= M. Each expert's rows are padded to tile_n; padding rows of
out get act's padding rows times W_e (whatever act holds there: the caller ignores them).
tile_n is a problem parameter, not a tuning: it is the offsets' alignment, a contract with the
routing (MoERunner declares route pad = tile_n and this op's tile_n together), so a bucket can
never silently pick a tile_n the offsets do not honour; only tile_m is tuned per bucket.
Weights in quack's layout per expert (prepare.prepare_weights), stacked: [E, N/64, K/64, ...].
For the prefill buckets (many tokens per expert): at t tokens/expert a tile_n-row tile wastes
(tile_n - t mod tile_n) rows per expert; decode stays on w4a16_grouped_gemm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..checks import rel_frobenius_errors
from ..family import Arg, Family, Signature
from ..hopper import SM_COUNT
from ..validity import in_range, multiple_of, one_of
from . import REL_TOL, k_reasons, reference_weights, weight_args

TILE_MS = (64, 128)
TILE_NS = (16, 32, 64, 128, 192, 256)  # quack W4 tile_n candidates (<= 32: 2 CTAs per SM)


@dataclass(frozen=True)
class GroupedParams:
    n: int  # output features per expert (weight rows)
    k: int  # input features
    experts: int  # local experts E
    tile_m: int = 128  # CTA tile along N (weight rows)
    tile_n: int = 128  # CTA tile along the token rows = the offsets' alignment
    max_swizzle_size: int = 8  # unused by the grouped scheduler (kept for the kernel ctor)
    sm_count: int = SM_COUNT  # persistent grid = sm_count CTAs (H100 SXM / H200: 132)


def padded_groups(sizes, tile_n: int):
    """(offsets [E + 1], counts [E]) int32 for row counts per expert, each group padded to tile_n
    (what the route kernel with pad = tile_n produces)."""
    import torch

    sizes = torch.as_tensor(sizes, dtype=torch.long)
    padded = (sizes + tile_n - 1) // tile_n * tile_n
    offsets = torch.zeros(sizes.numel() + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(padded, 0)
    return offsets.to(torch.int32), sizes.to(torch.int32)


class QuackW4A16GroupedFamily(Family):
    name = "quack_w4a16_grouped_gemm"
    params_type = GroupedParams
    problem_keys = ("n", "k", "experts", "tile_n")
    tiles = ((None, {"tile_m": 128}),)  # 128 x 128 / 128 x 256 measured best (docs/PERFORMANCE.md (k))
    archs = ("sm_90a",)
    modules = (
        "nvfp4_aot.kernels.quack_w4a16",
        "nvfp4_aot.kernels.quack_w4a16.kernel",
        "nvfp4_aot.kernels.quack_w4a16.grouped",
        "nvfp4_aot.kernels.quack_w4a16.grouped_family",
        "nvfp4_aot.kernels.quack_w4a16.prepare",
    )
    third_party = ("quack-kernels",)
    grouped = True
    max_m = 65536

    def can_implement(self, p: GroupedParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + one_of("tile_m", p.tile_m, TILE_MS) + one_of("tile_n", p.tile_n, TILE_NS)
        r += multiple_of("n", p.n, p.tile_m, f"tile_m={p.tile_m}: a weight tile never straddles experts")
        r += k_reasons(p.k) + in_range("experts", p.experts, 1, 512)
        return r + in_range("sm_count", p.sm_count, 1, 1024)

    def signature(self, p: GroupedParams) -> Signature:
        return Signature(
            (
                Arg("act", "bfloat16", ("M", "K"), align=16),
                *weight_args("E"),
                Arg("alpha", "float32", ("E", "N"), align=4),
                Arg("offsets", "int32", ("E + 1",), align=4),
                Arg("out", "bfloat16", ("M", "N"), align=16, output=True),
            ),
            static={"N": p.n, "K": p.k, "E": p.experts},
        )

    def compile_args(self, p: GroupedParams, arch: str):
        from . import grouped

        return grouped.make_kernel(p), grouped.fake_args(p.n, p.k, p.experts)

    def make_inputs(self, p: GroupedParams, m: int, device: Any, seed: int, poison: float = float("nan"),
                    dist: str = "uniform"):
        """m rows of act; a random grouping (dist as w4a16_grouped_gemm's) of at most m rows,
        each expert's group padded to tile_n; per-expert, per-half alpha (a wrong expert or row
        mapping in the epilogue shows). "counts" (real rows per expert) is for the check only."""
        import torch

        from ..w4a16_common import random_groups
        from .prepare import prepare_weights, random_nvfp4_weights

        gen = torch.Generator(device=device).manual_seed(seed)
        qs, sfs, blobs, strips = [], [], [], []
        for _ in range(p.experts):
            q, sf = random_nvfp4_weights(p.n, p.k, gen, device)
            b, s = prepare_weights(q, sf)
            qs.append(q), sfs.append(sf), blobs.append(b), strips.append(s)
        tn = p.tile_n
        # real rows fit m after padding: at most m - E * (tn - 1) rows before padding
        budget = max(0, m - p.experts * (tn - 1))
        off0, _ = random_groups(budget, p.experts, dist, gen)
        offsets, counts = padded_groups((off0[1:] - off0[:-1]).tolist(), tn)
        assert int(offsets[-1]) <= m
        half = (torch.rand((p.experts, 2), generator=gen, device=device) + 0.5) * 2.0**-7
        alpha = half.repeat_interleave(torch.tensor([p.n // 2, p.n - p.n // 2], device=device), dim=1)
        act = torch.randn((m, p.k), generator=gen, device=device).to(torch.bfloat16)
        out = torch.full((m, p.n), poison, dtype=torch.bfloat16, device=device)
        return {"act": act, "blob": torch.stack(blobs).contiguous(), "sf": torch.stack(strips).contiguous(),
                "alpha": alpha.contiguous(), "offsets": offsets.to(device), "out": out,
                "counts": counts.to(device), "w_q": qs, "w_sf": sfs}

    def reference(self, p: GroupedParams, inputs: Mapping[str, Any]):
        """float64 per expert on its real rows; every other row is NaN (the check compares real
        rows only), whatever out holds (callers may compute the reference after the launch).
        Without "counts" (the kernel's own arguments, e.g. a reference-backed store) every row of
        each group [offsets[e], offsets[e + 1]) is computed, padding included, as the kernel does."""
        import torch

        out = torch.full(tuple(inputs["out"].shape), float("nan"), dtype=torch.float64, device=inputs["out"].device)
        off = inputs["offsets"].cpu().tolist()
        cnt = inputs["counts"].cpu().tolist() if "counts" in inputs else [b - a for a, b in zip(off, off[1:])]
        for e in range(p.experts):
            if not cnt[e]:
                continue
            w = reference_weights(inputs, e)
            rows = slice(off[e], off[e] + cnt[e])
            out[rows] = (inputs["act"][rows].double() @ w.T) * inputs["alpha"][e].double()
        return {"out": out}

    def check(self, p: GroupedParams, got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
        """The real rows (those the reference computed; it leaves the rest NaN) only."""
        import torch

        g, w = got["out"], want["out"]
        if tuple(g.shape) != tuple(w.shape):
            return [f"out: shape {tuple(g.shape)} != {tuple(w.shape)}"]
        real = torch.isfinite(w).all(dim=1)
        return rel_frobenius_errors("out (real rows)", g[real], w[real], REL_TOL)


FAMILY = QuackW4A16GroupedFamily()
