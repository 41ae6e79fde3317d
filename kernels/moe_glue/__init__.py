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

Fused glue feeding the grouped NVFP4 GEMMs (kernels in permute.py):

    permute           x [M, H] bf16 + src_token [CAP] -> xg [CAP, H] bf16, xg[r] = x[src_token[r]]
                      (a bit copy), ZERO rows where src_token[r] is outside [0, M) (padding: the
                      grouped GEMM computes those rows, they must be finite)
    permute_quantize  the same gather fused with NVFP4 quantization under a device global scale:
                      q [CAP, H/2] uint8, sf [CAP, H/16] uint8 (E4M3) in the 128x4 block-scaled
                      layout; padding rows get zero codes and zero scales
    silu_mul_quantize x [M, 2I] bf16 -> h = silu_mul's bf16 values (never stored) -> NVFP4:
                      q [M, I/2], sf [round_up(M, 128), I/16] swizzled (rows past M zero)

src_token is route's output: the TOKEN index of each grouped row (route writes slot // topk),
-1 for padding. CAP is route's capacity_expr() (static TOPK, E, PAD; M dynamic).

Per-expert swizzle invariant (permute_quantize, asserted by can_implement: pad % 128 == 0):
expert e's rows [offsets[e], offsets[e + 1]) start and end at multiples of pad, hence of 128,
and the 128x4 layout stores rows [128 t, 128 t + 128) as one contiguous block of 128 * H/16
bytes (atom t); so the scales of expert e, swizzled on their own, are exactly bytes
[offsets[e] * H/16, offsets[e + 1] * H/16) of the buffer swizzled as a whole: no two experts
share an atom, and the whole-buffer swizzle IS the per-expert swizzle the grouped GEMM wants
(tests/kernels/test_moe_glue.py checks it in torch).

Numerics. permute: exact. permute_quantize: the rounding of nvfp4_quantize (its PTX helpers,
same order): bit-exact vs quantize_ref(gathered rows, gs, "swizzled"). silu_mul_quantize:
the quantizer is bit-exact too, but its bf16 input h comes from ex2.approx / rcp.approx, so h
may differ from torch's silu in the last bf16 bit (rarely); see SILU_MUL_QUANTIZE_* below for
how that is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nvfp4_aot.runtime.layout import capacity, capacity_expr  # noqa: F401  (the grouped layout's rows)

from ..family import Arg, Family, Signature
from ..tolerances import REL_FROBENIUS

VEC = 8  # bf16 elements per 16-byte vector
THREADS = (64, 128, 256, 512, 1024)


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
    tiles = ((128, {"threads": 128, "unroll": 1}), (None, {"threads": 256, "unroll": 2}))  # decode (M <= 128): narrower CTAs
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
    tiles = ((128, {"threads": 128}), (None, {"threads": 256}))  # decode (M <= 128): narrower CTAs
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
    tiles = ((128, {"threads": 128}), (None, {"threads": 512}))  # decode (M <= 128): narrower CTAs
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


# ----------------------------------------------------------------------------- permute (+ quantize)

# The fused families index items with int32 (item < CAP * H / 8 for permute): a smaller max_m
# than route's keeps CAP at max_m times the per-row items below 2^31 for DeepSeek-V4 sizes
# (can_implement checks it for the given H, TOPK, E, PAD).
FUSED_MAX_M = 65536
QUANT_THREADS = (64, 128, 256, 512)
SF_SWIZZLE_ROWS = 128  # rows of one 128x4 atom of the block-scaled scale layout
QUANT_ITEM = 64  # elements per quantize item (4 scale blocks of 16)


def _routing_reasons(topk: int, experts: int, pad: int) -> list[str]:
    r = []
    if not 1 <= topk <= 32:
        r.append(f"topk={topk} must be in [1, 32] (route's range)")
    if not 1 <= experts <= 1024:
        r.append(f"experts={experts} must be in [1, 1024] (route's range)")
    if not 1 <= pad <= 1024:
        r.append(f"pad={pad} must be in [1, 1024] (route's range)")
    return r


def _int32_items_reasons(name: str, rows_at_max: int, per_row: int, what: str) -> list[str]:
    n = rows_at_max * per_row
    if n >= 2**31:
        return [f"{name}: {rows_at_max} rows at max_m={FUSED_MAX_M} x {per_row} {what} per row = {n} items "
                f"must stay below 2^31 (int32 item index)"]
    return []


def _quant_dim_reasons(name: str, value: int) -> list[str]:
    if value < QUANT_ITEM or value % QUANT_ITEM:
        return [f"{name}={value} must be a positive multiple of {QUANT_ITEM} (4 scale blocks of 16 per thread item)"]
    if value > 1 << 16:
        return [f"{name}={value} must be <= 65536"]
    return []


@dataclass(frozen=True)
class PermuteParams:
    h: int  # hidden size (columns of x and xg)
    topk: int
    experts: int  # local experts E on this rank (route's)
    pad: int = 128  # route's group padding
    threads: int = 256  # threads per CTA (tuning)
    unroll: int = 2  # 16-byte vectors per thread (tuning: loads in flight)


def _permute_signature_static(p) -> dict[str, int]:
    return {"H": p.h, "TOPK": p.topk, "E": p.experts, "PAD": p.pad}


class PermuteFamily(Family):
    name = "moe_permute"
    tiles = ((128, {"threads": 128, "unroll": 1}), (None, {"threads": 256, "unroll": 2}))  # decode (M <= 128): narrower CTAs
    params_type = PermuteParams
    problem_keys = ("h", "topk", "experts", "pad")
    max_m = FUSED_MAX_M
    modules = ("nvfp4_aot.kernels.moe_glue", "nvfp4_aot.kernels.moe_glue.permute")

    def can_implement(self, p: PermuteParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + _threads_reason(p.threads)
        r += _vector_dim_reasons("h", p.h, "x and xg")
        r += _routing_reasons(p.topk, p.experts, p.pad)
        if p.unroll not in (1, 2, 4):
            r.append(f"unroll={p.unroll} must be 1, 2 or 4")
        if not r:
            r += _int32_items_reasons(f"h={p.h}", capacity(self.max_m, p.topk, p.experts, p.pad), p.h // VEC, "16-byte vectors")
        return r

    def signature(self, p: PermuteParams) -> Signature:
        cap = capacity_expr()
        return Signature(
            (
                Arg("x", "bfloat16", ("M", "H"), align=16),
                Arg("src_token", "int32", (cap,), align=4),
                Arg("xg", "bfloat16", (cap, "H"), align=16, output=True),
            ),
            static=_permute_signature_static(p),
        )

    def compile_args(self, p: PermuteParams, arch: str):
        from . import permute

        return permute.make_permute(p), permute.fake_args_permute(p)

    def make_inputs(self, p: PermuteParams, m: int, device: Any, seed: int, poison: float = float("nan")):
        from .ref import permute_inputs

        return permute_inputs(p.h, p.topk, p.experts, p.pad, m, device, seed, poison)

    def reference(self, p: PermuteParams, inputs: Mapping[str, Any]):
        from .ref import permute_ref

        return {"xg": permute_ref(inputs["x"], inputs["src_token"])}

    def check(self, p, got, want) -> list[str]:
        import torch

        from .ref import exact_errors

        g, w = got["xg"], want["xg"]
        if g.dtype == w.dtype == torch.bfloat16:  # compare bit patterns (a bit copy: -0 != +0)
            g, w = g.view(torch.int16), w.view(torch.int16)
        return exact_errors({"xg": g}, {"xg": w})


@dataclass(frozen=True)
class PermuteQuantizeParams:
    h: int  # hidden size: x [M, H] -> q [CAP, H/2], sf [CAP, H/16]
    topk: int
    experts: int
    pad: int = 128  # must be a multiple of 128 (per-expert swizzle == whole-buffer swizzle)
    threads: int = 128  # threads per CTA (tuning)


class PermuteQuantizeFamily(Family):
    name = "moe_permute_quantize"
    tiles = ((128, {"threads": 64}), (None, {"threads": 128}))  # decode (M <= 128): narrower CTAs
    params_type = PermuteQuantizeParams
    problem_keys = ("h", "topk", "experts", "pad")
    max_m = FUSED_MAX_M
    modules = ("nvfp4_aot.kernels.moe_glue", "nvfp4_aot.kernels.moe_glue.permute")

    def can_implement(self, p: PermuteQuantizeParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch)
        if p.threads not in QUANT_THREADS:
            r.append(f"threads={p.threads} must be one of {QUANT_THREADS}")
        r += _quant_dim_reasons("h", p.h)
        r += _routing_reasons(p.topk, p.experts, p.pad)
        if p.pad % SF_SWIZZLE_ROWS:
            r.append(f"pad={p.pad} must be a multiple of {SF_SWIZZLE_ROWS}: each expert's rows must start on a "
                     f"128-row scale atom so that the swizzle over the padded buffer is the per-expert swizzle")
        if not r:
            r += _int32_items_reasons(f"h={p.h}", capacity(self.max_m, p.topk, p.experts, p.pad), p.h // QUANT_ITEM,
                                      "64-element groups")
        return r

    def signature(self, p: PermuteQuantizeParams) -> Signature:
        cap = capacity_expr()
        return Signature(
            (
                Arg("x", "bfloat16", ("M", "H"), align=16),
                Arg("src_token", "int32", (cap,), align=4),
                Arg("global_scale", "float32", (1,), align=4),
                Arg("q", "uint8", (cap, "H // 2"), align=16, output=True),
                Arg("sf", "uint8", (cap, "H // 16"), align=4, output=True),
            ),
            static=_permute_signature_static(p),
        )

    def compile_args(self, p: PermuteQuantizeParams, arch: str):
        from . import permute

        return permute.make_permute_quantize(p), permute.fake_args_permute_quantize(p)

    def make_inputs(self, p: PermuteQuantizeParams, m: int, device: Any, seed: int, poison: int = 0xFF):
        from .ref import permute_quantize_inputs

        return permute_quantize_inputs(p.h, p.topk, p.experts, p.pad, m, device, seed, poison)

    def reference(self, p: PermuteQuantizeParams, inputs: Mapping[str, Any]):
        from .ref import permute_quantize_ref

        q, sf = permute_quantize_ref(inputs["x"], inputs["src_token"], inputs["global_scale"])
        return {"q": q, "sf": sf}

    def check(self, p, got, want) -> list[str]:
        from .ref import exact_errors

        return exact_errors(got, want)


# ----------------------------------------------------------------------------- silu_mul + quantize

# silu_mul_quantize accuracy (the kernels/tolerances.py rules, specialised here).
# The quantizer is nvfp4_quantize's and is checked bit for bit (tests/gpu) on inputs where the
# kernel's bf16 intermediate h provably equals torch's (ref.silu_mul_quantize_inputs mode
# "exact": gate >= 18, g * u with <= 8 significant bits), and on general inputs against
# quantize_ref of moe_silu_mul's own bf16 output (same silu PTX). On general inputs
# h = bf16(silu(g) * u) from ex2.approx / rcp.approx carries a few fp32 ulps (<~2^-21
# relative) of error, which moves the bf16 rounding only when the fp32 value lies that close to
# a bf16 rounding midpoint (midpoints 2^-8 apart in relative terms): a fraction
# p ~ 2 * 2^-21 / 2^-8 = 2^-12 ~ 2.4e-4 of the elements differ from torch's by one bf16 ulp.
# Such an element changes its E2M1 code only if h * os is that close to a code threshold, and
# its block's scale only if it is the block max near an E4M3 midpoint. Simulated on the CPU
# (torch's h with a fraction p of elements moved by one ulp, then quantize_ref, the make_inputs
# distribution): <= 3e-5 of the q bytes and <= 6e-5 of the sf bytes differ; at 4p <= 1e-4 /
# 2e-4. Measured on an H100 the approximations are far better than that bound: 11 of 25M
# elements of moe_silu_mul's h differ from torch's (M = 8192, I = 3072), and 0 bytes of the
# fused q / sf differed from the torch reference at M = 8192 and 55296. The bound allows 1e-3 of
# the bytes (+2 for tiny M): over 10x the estimated worst rate, while a layout, rounding or
# row bug changes a large fraction of the bytes (poison: ~all of them).
SILU_MUL_QUANTIZE_MAX_DIFF_FRAC = 1e-3
SILU_MUL_QUANTIZE_MAX_DIFF_ABS = 2
# Independent of the torch reference's bits: the dequantized output vs float64 silu(g) * u must
# be within the reference pipeline's own NVFP4 error (relative Frobenius, measured per call:
# 0.08-0.25 on these inputs, E2M1 has one mantissa bit and the 0.3x-3x global scales saturate)
# plus this absolute slack. The allowed byte differences are near-ties, where both roundings
# are (almost) equally accurate: in the simulation above they moved the error by <= 3e-7
# (<= 1.5e-6 at 40x the rate). A real defect moves it far more: a factor-2 scale error on 0.1%
# of the blocks alone adds ~sqrt(1e-3) * 0.5 ~ 1.6e-2.
SILU_MUL_QUANTIZE_REL_SLACK = 1e-3


@dataclass(frozen=True)
class SiluMulQuantizeParams:
    i: int  # intermediate size: x [M, 2I] -> q [M, I/2], sf [round_up(M, 128), I/16]
    threads: int = 128  # threads per CTA (tuning)


class SiluMulQuantizeFamily(Family):
    name = "moe_silu_mul_quantize"
    tiles = ((128, {"threads": 64}), (None, {"threads": 128}))  # decode (M <= 128): narrower CTAs
    params_type = SiluMulQuantizeParams
    problem_keys = ("i",)
    max_m = FUSED_MAX_M
    modules = ("nvfp4_aot.kernels.moe_glue", "nvfp4_aot.kernels.moe_glue.permute")

    def can_implement(self, p: SiluMulQuantizeParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch)
        if p.threads not in QUANT_THREADS:
            r.append(f"threads={p.threads} must be one of {QUANT_THREADS}")
        r += _quant_dim_reasons("i", p.i)
        return r

    def signature(self, p: SiluMulQuantizeParams) -> Signature:
        return Signature(
            (
                Arg("x", "bfloat16", ("M", "I * 2"), align=16),
                Arg("global_scale", "float32", (1,), align=4),
                Arg("q", "uint8", ("M", "I // 2"), align=16, output=True),
                Arg("sf", "uint8", ("round_up(M, 128)", "I // 16"), align=4, output=True),
            ),
            static={"I": p.i},
        )

    def compile_args(self, p: SiluMulQuantizeParams, arch: str):
        from . import permute

        return permute.make_silu_mul_quantize(p), permute.fake_args_silu_mul_quantize(p)

    def make_inputs(self, p: SiluMulQuantizeParams, m: int, device: Any, seed: int, poison: int = 0xFF, mode=None):
        from .ref import silu_mul_quantize_inputs

        return silu_mul_quantize_inputs(p.i, m, device, seed, poison, mode)

    def reference(self, p: SiluMulQuantizeParams, inputs: Mapping[str, Any]):
        from .ref import silu_mul_quantize_ref

        q, sf = silu_mul_quantize_ref(inputs["x"], inputs["global_scale"])
        return {"q": q, "sf": sf}

    def check(self, p, got, want) -> list[str]:
        from .ref import silu_mul_quantize_errors

        return silu_mul_quantize_errors(got, want, SILU_MUL_QUANTIZE_MAX_DIFF_FRAC, SILU_MUL_QUANTIZE_MAX_DIFF_ABS,
                                        SILU_MUL_QUANTIZE_REL_SLACK)


PERMUTE_FAMILY = PermuteFamily()
PERMUTE_QUANTIZE_FAMILY = PermuteQuantizeFamily()
SILU_MUL_QUANTIZE_FAMILY = SiluMulQuantizeFamily()
