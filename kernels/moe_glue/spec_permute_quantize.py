"""moe_permute_quantize: moe_permute fused with NVFP4 quantization (swizzled scales)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nvfp4_aot.runtime.layout import capacity, capacity_expr

from ..family import Family, Signature
from ..nvfp4_quantize import quantized_args
from .common import FUSED_MAX_M, QUANT_ITEM, SF_SWIZZLE_ROWS, int32_items_reasons, quant_reasons, routing_reasons
from .spec_permute import permute_signature

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
    modules = ("nvfp4_aot.kernels.moe_glue.spec_permute_quantize", "nvfp4_aot.kernels.moe_glue.permute")

    def can_implement(self, p: PermuteQuantizeParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + quant_reasons(p.threads, "h", p.h)
        r += routing_reasons(p.topk, p.experts, p.pad)
        if p.pad % SF_SWIZZLE_ROWS:
            r.append(f"pad={p.pad} must be a multiple of {SF_SWIZZLE_ROWS}: each expert's rows must start on a "
                     f"128-row scale atom so that the swizzle over the padded buffer is the per-expert swizzle")
        if not r:
            r += int32_items_reasons(f"h={p.h}", capacity(self.max_m, p.topk, p.experts, p.pad), p.h // QUANT_ITEM,
                                      "64-element groups")
        return r

    def signature(self, p: PermuteQuantizeParams) -> Signature:
        cap = capacity_expr()
        return permute_signature(p, *quantized_args(cap, "H", cap))

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


FAMILY = PermuteQuantizeFamily()
