"""MoE glue families around the grouped expert GEMMs (expert parallel, DeepSeek-V4 sizes).

    route     topk_ids [M, topk] (GLOBAL expert ids) + expert_start [1] (device int32)
              -> counts [E], offsets [E + 1], slot_of [M, topk], src_token [CAP]
    silu_mul  x [M, 2I] bf16 (gate | up) -> out [M, I] bf16 = silu(gate) * up
    combine   y [R, H] bf16 (grouped rows) + slot_of [M, topk] + weights [M, topk] fp32
              -> out [M, H] bf16 = sum_k w[m, k] * y[slot_of[m, k]]

Grouped ("padded") layout, produced by route and consumed by the grouped GEMMs and combine:
local expert e = global id - expert_start owns rows [offsets[e], offsets[e + 1]); its
counts[e] routed slots come first, ordered by (token, k) ascending, then padding rows up to
round_up(counts[e], pad) (src_token = -1). offsets[0] = 0, offsets[E] = rows used. Slots routed
to a non-local expert (id outside [expert_start, expert_start + E)) get slot_of = -1: that
expert's rank computes them, combine skips them.

Capacity. route's src_token has CAP = (M * topk + E * (pad - 1)) // pad * pad rows. Rows used
are sum_e round_up(c_e, pad) = pad * sum_e ceil(c_e / pad) <= pad * floor((sum_e (c_e + pad - 1)) / pad)
<= CAP, so any routing fits; the bound is attained (tight) whenever M * topk >= E (e.g. every
expert gets 1 + a multiple of pad tokens). For M * topk < E it over-allocates by < E * pad rows.
Rows [offsets[E], CAP) are padding too (src_token = -1).

combine takes the grouped rows R as a second dynamic symbol (any R: the caller's GEMM output
buffer, normally route's CAP); a slot outside [0, R) contributes nothing, like -1, so a bad
slot can never read out of bounds.

Numerics. silu_mul: fp32 silu(g) * u with ex2.approx / rcp.approx (a few fp32 ulps), rounded
once to bf16 (RNE): checked by relative Frobenius error. combine: acc = 0; for k = 0..topk-1
ascending, skipping invalid slots: acc = RN(acc + RN(w * float(y))) (separate mul.rn / add.rn,
never an FMA), then one RNE rounding to bf16; the torch reference performs the very same fp32
operations in the same order, so the check is bit-exact. route: integers, exact.

Graph safety: every launch has a fixed grid given M (no host sync, no data-dependent grid or
trip count, no allocation, no scratch, no atomics: results are deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..family import Arg, Family, Signature
from ..tolerances import REL_FROBENIUS

VEC = 8  # bf16 elements per 16-byte vector
THREADS = (64, 128, 256, 512, 1024)


def capacity_expr() -> str:
    """route's grouped-layout rows (see the package docstring), in the static symbols of its
    signature: TOPK, E, PAD."""
    return "(M * TOPK + E * (PAD - 1)) // PAD * PAD"


def capacity(m: int, topk: int, experts: int, pad: int) -> int:
    return (m * topk + experts * (pad - 1)) // pad * pad


def _threads_reason(threads: int) -> list[str]:
    return [] if threads in THREADS else [f"threads={threads} must be one of {THREADS}"]


def _vector_dim_reasons(name: str, value: int, tensors: str) -> list[str]:
    """A feature dim read and written as 16-byte vectors, indexed with int32 up to max_m rows."""
    r = []
    if value < VEC or value % VEC:
        r.append(f"{name}={value} must be a positive multiple of {VEC} (16-byte vectors of {tensors})")
    if value > 1 << 16:
        r.append(f"{name}={value} must be <= 65536 (int32 vector index at M = max_m)")
    return r


# ----------------------------------------------------------------------------- silu_mul


@dataclass(frozen=True)
class SiluMulParams:
    i: int  # intermediate size: x has 2 * i columns, out has i
    threads: int = 256  # threads per CTA (tuning)
    unroll: int = 2  # 16-byte output vectors per thread (tuning: loads in flight)


class SiluMulFamily(Family):
    name = "moe_silu_mul"
    params_type = SiluMulParams
    problem_keys = ("i",)
    max_m = 1 << 20
    modules = ("nvfp4_aot.kernels.moe_glue", "nvfp4_aot.kernels.moe_glue.kernel")

    def can_implement(self, p: SiluMulParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + _threads_reason(p.threads)
        r += _vector_dim_reasons("i", p.i, "gate, up and out")
        if p.unroll not in (1, 2, 4):
            r.append(f"unroll={p.unroll} must be 1, 2 or 4")
        return r

    def signature(self, p: SiluMulParams) -> Signature:
        return Signature(
            (
                Arg("x", "bfloat16", ("M", "I * 2"), align=16),
                Arg("out", "bfloat16", ("M", "I"), align=16, output=True),
            ),
            static={"I": p.i},
        )

    def compile_args(self, p: SiluMulParams, arch: str):
        from . import kernel

        return kernel.make_silu_mul(p), kernel.fake_args_silu_mul(p)

    def make_inputs(self, p: SiluMulParams, m: int, device: Any, seed: int, poison: float = float("nan")):
        import torch

        g = torch.Generator(device=device).manual_seed(seed)
        # gate spans the saturating regions of silu (|g| up to ~24), up is O(1)
        x = torch.randn((m, 2 * p.i), generator=g, device=device)
        x[:, : p.i] *= torch.exp2(torch.randint(-3, 4, (m, 1), generator=g, device=device).float())
        x = x.to(torch.bfloat16)
        return {"x": x, "out": torch.full((m, p.i), poison, dtype=torch.bfloat16, device=device)}

    def reference(self, p: SiluMulParams, inputs: Mapping[str, Any]):
        from .ref import silu_mul_ref

        return {"out": silu_mul_ref(inputs["x"])}

    def check(self, p, got, want) -> list[str]:
        from .ref import rel_frobenius_errors

        return rel_frobenius_errors("out", got["out"], want["out"], REL_FROBENIUS["bfloat16"])


# ----------------------------------------------------------------------------- combine


@dataclass(frozen=True)
class CombineParams:
    h: int  # hidden size
    topk: int
    threads: int = 128  # threads per CTA (tuning); one thread = 8 output columns of one token


class CombineFamily(Family):
    name = "moe_combine"
    params_type = CombineParams
    problem_keys = ("h", "topk")
    max_m = 1 << 20
    modules = ("nvfp4_aot.kernels.moe_glue", "nvfp4_aot.kernels.moe_glue.kernel")

    def can_implement(self, p: CombineParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + _threads_reason(p.threads)
        r += _vector_dim_reasons("h", p.h, "y and out")
        if not 1 <= p.topk <= 32:
            r.append(f"topk={p.topk} must be in [1, 32] (unrolled)")
        return r

    def signature(self, p: CombineParams) -> Signature:
        return Signature(
            (
                Arg("y", "bfloat16", ("R", "H"), align=16),
                Arg("slot_of", "int32", ("M", "TOPK"), align=4),
                Arg("weights", "float32", ("M", "TOPK"), align=4),
                Arg("out", "bfloat16", ("M", "H"), align=16, output=True),
            ),
            static={"H": p.h, "TOPK": p.topk},
            dynamic=("M", "R"),
        )

    def compile_args(self, p: CombineParams, arch: str):
        from . import kernel

        return kernel.make_combine(p), kernel.fake_args_combine(p)

    def make_inputs(self, p: CombineParams, m: int, device: Any, seed: int, poison: float = float("nan")):
        from .ref import combine_inputs

        return combine_inputs(p.h, p.topk, m, device, seed, poison)

    def reference(self, p: CombineParams, inputs: Mapping[str, Any]):
        from .ref import combine_ref

        return {"out": combine_ref(inputs["y"], inputs["slot_of"], inputs["weights"])}

    def check(self, p, got, want) -> list[str]:
        from .ref import exact_errors

        return exact_errors(got, want)


# ----------------------------------------------------------------------------- route


@dataclass(frozen=True)
class RouteParams:
    experts: int  # local experts E on this rank
    topk: int
    pad: int = 128  # rows of each expert's group are padded to a multiple of pad
    threads: int = 256  # threads per CTA (tuning)
    vec: int = 8  # consecutive slots per thread per scan step (tuning; multiple of 4)


class RouteFamily(Family):
    name = "moe_route"
    params_type = RouteParams
    problem_keys = ("experts", "topk", "pad")
    max_m = 1 << 20  # M * topk and CAP stay far below 2^31 for topk <= 32, E * pad <= 2^20
    modules = ("nvfp4_aot.kernels.moe_glue", "nvfp4_aot.kernels.moe_glue.route")

    def can_implement(self, p: RouteParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + _threads_reason(p.threads)
        if not 1 <= p.experts <= 1024:
            r.append(f"experts={p.experts} must be in [1, 1024] (one CTA per local expert)")
        if not 1 <= p.topk <= 32:
            r.append(f"topk={p.topk} must be in [1, 32]")
        if not 1 <= p.pad <= 1024:
            r.append(f"pad={p.pad} must be in [1, 1024]")
        if p.vec not in (4, 8, 16):
            r.append(f"vec={p.vec} must be 4, 8 or 16 (16-byte loads of topk_ids)")
        return r

    def signature(self, p: RouteParams) -> Signature:
        return Signature(
            (
                Arg("topk_ids", "int32", ("M", "TOPK"), align=16),
                Arg("expert_start", "int32", (1,), align=4),
                Arg("counts", "int32", ("E",), align=4, output=True),
                Arg("offsets", "int32", ("E + 1",), align=4, output=True),
                Arg("slot_of", "int32", ("M", "TOPK"), align=4, output=True),
                Arg("src_token", "int32", (capacity_expr(),), align=4, output=True),
            ),
            static={"E": p.experts, "TOPK": p.topk, "PAD": p.pad},
        )

    def compile_args(self, p: RouteParams, arch: str):
        from . import route

        return route.make_route(p), route.fake_args_route(p)

    def make_inputs(self, p: RouteParams, m: int, device: Any, seed: int, poison: int = -7):
        from .ref import route_inputs

        return route_inputs(p.experts, p.topk, p.pad, m, device, seed, poison)

    def reference(self, p: RouteParams, inputs: Mapping[str, Any]):
        from .ref import route_ref

        return route_ref(inputs["topk_ids"], inputs["expert_start"], p.experts, p.pad)

    def check(self, p, got, want) -> list[str]:
        from .ref import exact_errors

        return exact_errors(got, want)


SILU_MUL_FAMILY = SiluMulFamily()
COMBINE_FAMILY = CombineFamily()
ROUTE_FAMILY = RouteFamily()
