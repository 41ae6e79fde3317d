"""quack_nvfp4_gemm / quack_nvfp4_grouped_gemm: quack-kernels 0.6.5's Blackwell block-scaled GEMM
(GemmSm100, tcgen05 kind::mxf4nvf4, NVFP4 x NVFP4) built ahead of time for sm_100a.

    dense:   out[M, N]        = bf16( (Aq[M, K] @ Bq[N, K]^T) * alpha[0] )
    grouped: out[rows(e), N]  = bf16( (Aq[rows(e), K] @ Bq[e, N, K]^T) * alpha[e] ),
             rows(e) = [offsets[e], offsets[e+1])

Xq = e2m1(code) * float(e4m3 block scale), the value nvfp4_quantize encodes *before* its global
scale (nvfp4_quantize: x ~= Xq / gs, gs the encode scale). Operands are exactly what
nvfp4_quantize writes: packed codes uint8 [rows, K/2] (element 2j = low nibble of byte j) and
scale bytes uint8 [round_up(rows, 128), K/16] in the 128x4 swizzled layout (weights: [N, K/16],
N a multiple of 128; grouped: [E, N, K/16], swizzled per expert).

Global scales: quack's epilogue multiplies the fp32 accumulator by one scalar (its `alpha`), so
the two encode scales fold into alpha = 1 / (gs_a * gs_b), an fp32 *device* tensor (pointer
mode, so it may change between calls and under CUDA graphs without a rebuild). With a ModelOpt
checkpoint, weight_scale_2 = 1 / gs_b, so alpha = weight_scale_2 / gs_a (gs_a from
nvfp4_global_scale). Grouped: alpha[e] = 1 / (gs_a * gs_b[e]), one per expert (every expert has
its own weight_scale_2); ref.alpha_from_global_scales computes either.

Grouped layout: tokens sorted by expert, offsets int32 [E+1] with offsets[0] = 0,
nondecreasing, offsets[E] = M and offsets[e] % 128 == 0 for every e < E (each expert but the
last padded to 128 rows; empty experts get no tiles). M, the total padded row count, is the dynamic
symbol. The per-expert scale swizzle is then the swizzle of the whole padded activation buffer
(one nvfp4_quantize call): expert e's scale tiles start at tile offsets[e] / 128. The kernel
cannot check the offsets (device values): misaligned offsets silently read the wrong scales.
Padding rows are computed like any other row (from whatever A holds there) and stored.

Tuning (per token bucket; quack's knobs, none measured here -- nothing ran on Blackwell):
tile_m 128 | 256 (256 = 2-CTA MMA, needs an even cluster_m), tile_n 64..256 step 64,
cluster_m / cluster_n 1, 2, 4 (scale multicast stops at 4), clc = CLC dynamic persistence
(quack's block-scaled default) or a static persistent grid of sm_count // cluster clusters
(B200: 148 SMs), max_swizzle_size, use_pdl. quack's own heuristic
(gemm_config.blockscaled_default_config): M >= 512 -> (256, 256) or (256, 128) with cluster
(2, 1); else (128, 128), cluster (1, 1); always CLC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..checks import rel_frobenius_errors
from ..family import Arg, Family, Signature
from ..tolerances import REL_FROBENIUS
from ..validity import in_range, multiple_of, one_of

ARCH = "sm_100a"
TILE_MS = (128, 256)
TILE_NS = (64, 128, 192, 256)  # the SF tmem datapath is 64-N granular; MMA N <= 256
CLUSTERS = (1, 2, 4)  # power of two; scale-factor multicast spans at most 4 CTAs
REL_TOL = REL_FROBENIUS["bfloat16"]
MAX_EXPERTS = 1024


@dataclass(frozen=True, kw_only=True)
class DenseParams:
    n: int  # output features (weight rows), multiple of 128
    k: int  # input features, multiple of 64
    tile_m: int = 128  # MMA tile along M (tokens); 256 = 2-CTA MMA (cluster_m even)
    tile_n: int = 128  # CTA tile along N
    cluster_m: int = 1
    cluster_n: int = 1
    clc: bool = True  # CLC dynamic persistence (quack's block-scaled default) vs static grid
    max_swizzle_size: int = 8  # persistent scheduler raster swizzle (quack default)
    use_pdl: bool = True  # programmatic dependent launch (quack default)
    sm_count: int = 148  # static grid only: sm_count // (cluster_m * cluster_n) clusters (B200)


@dataclass(frozen=True, kw_only=True)
class GroupedParams(DenseParams):
    experts: int  # E, local experts of this rank


def _reasons(name: str, p: DenseParams, arch: str) -> list[str]:
    r = []
    if arch != ARCH:
        r.append(f"{name} needs {ARCH}: it runs tcgen05 block-scaled MMA (kind::mxf4nvf4), which {arch} lacks")
    r += multiple_of("n", p.n, 128, "whole 128-row scale tiles of B")
    r += multiple_of("k", p.k, 64, "one 128x4 scale atom covers 64 along K")
    r += one_of("tile_m", p.tile_m, TILE_MS) + one_of("tile_n", p.tile_n, TILE_NS)
    r += one_of("cluster_m", p.cluster_m, CLUSTERS)
    if p.cluster_m in CLUSTERS and p.tile_m == 256 and p.cluster_m % 2:
        r.append(f"cluster_m={p.cluster_m} must be even with tile_m=256 (2-CTA MMA pairs)")
    r += one_of("cluster_n", p.cluster_n, CLUSTERS)
    r += in_range("max_swizzle_size", p.max_swizzle_size, 1, 16)
    return r + in_range("sm_count", p.sm_count, p.cluster_m * p.cluster_n, 1024, lo_name="cluster_m * cluster_n")


class _BlockScaledFamily(Family):
    archs = (ARCH,)
    modules = (
        "nvfp4_aot.kernels.quack_blockscaled",
        "nvfp4_aot.kernels.quack_blockscaled.kernel",
        "nvfp4_aot.kernels.quack_blockscaled.ref",
    )
    third_party = ("quack-kernels",)
    # Every large tensor is addressed by TMA (int32 coordinates per dimension). Grouped: expert
    # e's A rows start offsets[e] * K fp4 elements in, possibly 32-bit arithmetic with a static
    # K, so GroupedFamily also bounds max_m * K below 2^31. DeepSeek-V4 EP8 needs ~55k rows.
    max_m = 65536
    grouped = False

    def can_implement(self, p: Any, arch: str) -> list[str]:
        return _reasons(self.name, p, arch)

    def signature(self, p: Any) -> Signature:
        """Dense: B [N, K/2] and one alpha. Grouped: B per expert [E, N, K/2], the offsets, alpha [E]."""
        e = ("E",) if self.grouped else ()
        return Signature(
            (
                Arg("a", "uint8", ("M", "K // 2"), align=16),
                Arg("a_sf", "uint8", ("round_up(M, 128)", "K // 16"), align=16),
                Arg("b", "uint8", (*e, "N", "K // 2"), align=16),
                Arg("b_sf", "uint8", (*e, "N", "K // 16"), align=16),
                *((Arg("offsets", "int32", ("E + 1",), align=16),) if self.grouped else ()),
                Arg("alpha", "float32", e or (1,), align=4),
                Arg("out", "bfloat16", ("M", "N"), align=16, output=True),
            ),
            static={**({"E": p.experts} if self.grouped else {}), "N": p.n, "K": p.k},
        )

    def make_inputs(self, p: Any, m: int, device: Any, seed: int):
        from . import ref

        return ref.make_inputs(p.n, p.k, m, p.experts if self.grouped else None, device, seed)

    def compile_args(self, p: Any, arch: str):
        from . import kernel

        return kernel.make_kernel(p, self.grouped), kernel.fake_args(p, self.grouped)

    def reference(self, p: Any, inputs: Mapping[str, Any]):
        from . import ref

        return {"out": ref.gemm_ref(inputs, grouped=self.grouped)}

    def check(self, p: Any, got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
        return rel_frobenius_errors("out", got["out"], want["out"], REL_TOL)


class DenseFamily(_BlockScaledFamily):
    name = "quack_nvfp4_gemm"
    # 1-CTA MMA for decode, 2-CTA for prefill (untested on hardware: no Blackwell GPU here)
    tiles = ((256, {"tile_m": 128, "tile_n": 128}), (None, {"tile_m": 256, "tile_n": 256, "cluster_m": 2}))
    params_type = DenseParams
    problem_keys = ("n", "k")


class GroupedFamily(_BlockScaledFamily):
    name = "quack_nvfp4_grouped_gemm"
    # M = grouped rows (tokens x top-k, each expert padded to 128): manifests/default.toml's rows
    tiles = ((8192, {"tile_m": 128, "tile_n": 128}), (None, {"tile_m": 256, "tile_n": 256, "cluster_m": 2}))
    params_type = GroupedParams
    problem_keys = ("experts", "n", "k")
    grouped = True

    def can_implement(self, p: GroupedParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + in_range("experts", p.experts, 1, MAX_EXPERTS)
        if self.max_m * p.k >= 2**31:
            r.append(f"k={p.k} too large: max_m * K = {self.max_m * p.k} must stay below 2^31 (row offsets)")
        return r


DENSE_FAMILY = DenseFamily()
GROUPED_FAMILY = GroupedFamily()
