"""moe_silu_mul_quantize: silu(gate) * up (never stored) -> NVFP4 q + swizzled scales; with
`limit` > 0 the clamped SwiGLU of moe_silu_mul (DeepSeek-V4's swiglu_limit), the same PTX."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..family import Arg, Family, Signature
from ..nvfp4_quantize import quantized_args
from .common import FUSED_MAX_M, limit_reasons, quant_reasons

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
    limit: float = 0.0  # > 0: clamped SwiGLU, silu(min(gate, limit)) * clamp(up, -limit, limit) (DeepSeek-V4: 10)
    threads: int = 128  # threads per CTA (tuning)


class SiluMulQuantizeFamily(Family):
    name = "moe_silu_mul_quantize"
    tiles = ((128, {"threads": 64}), (None, {"threads": 128}))  # decode (M <= 128): narrower CTAs
    params_type = SiluMulQuantizeParams
    problem_keys = ("i", "limit")
    max_m = FUSED_MAX_M
    modules = ("nvfp4_aot.kernels.moe_glue.spec_silu_mul_quantize", "nvfp4_aot.kernels.moe_glue.permute")

    def can_implement(self, p: SiluMulQuantizeParams, arch: str) -> list[str]:
        return super().can_implement(p, arch) + quant_reasons(p.threads, "i", p.i) + limit_reasons(p.limit)

    def signature(self, p: SiluMulQuantizeParams) -> Signature:
        return Signature(
            (Arg("x", "bfloat16", ("M", "I * 2"), align=16), *quantized_args("M", "I", "round_up(M, 128)")),
            static={"I": p.i},
        )

    def compile_args(self, p: SiluMulQuantizeParams, arch: str):
        from . import permute

        return permute.make_silu_mul_quantize(p), permute.fake_args_silu_mul_quantize(p)

    def make_inputs(self, p: SiluMulQuantizeParams, m: int, device: Any, seed: int, poison: int = 0xFF, mode=None):
        from .ref import silu_mul_quantize_inputs

        return silu_mul_quantize_inputs(p.i, m, device, seed, poison, mode, p.limit)

    def reference(self, p: SiluMulQuantizeParams, inputs: Mapping[str, Any]):
        from .ref import silu_mul_quantize_ref

        q, sf = silu_mul_quantize_ref(inputs["x"], inputs["global_scale"], p.limit)
        return {"q": q, "sf": sf}

    def check(self, p, got, want) -> list[str]:
        from .ref import silu_mul_quantize_errors

        return silu_mul_quantize_errors(got, want, SILU_MUL_QUANTIZE_MAX_DIFF_FRAC, SILU_MUL_QUANTIZE_MAX_DIFF_ABS,
                                        SILU_MUL_QUANTIZE_REL_SLACK, p.limit)


FAMILY = SiluMulQuantizeFamily()
