"""moe_permute: gathers x into route's grouped rows (bf16 bit copy, zero padding rows), in
`act_order` (runtime/layout.py: "quad" permutes each 64-column tile for the w4a16 GEMM that
reads xg with the same order; MoERunner's decode path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nvfp4_aot.runtime.layout import capacity, capacity_expr

from ..family import Arg, Family, Signature
from .common import (
    FUSED_MAX_M,
    VEC,
    act_order_reasons,
    int32_items_reasons,
    routing_reasons,
    threads_reason,
    unroll_reason,
    vector_dim_reasons,
)

@dataclass(frozen=True)
class PermuteParams:
    h: int  # hidden size (columns of x and xg)
    topk: int
    experts: int  # local experts E on this rank (route's)
    pad: int = 128  # route's group padding
    threads: int = 256  # threads per CTA (tuning)
    unroll: int = 2  # 16-byte vectors per thread (tuning: loads in flight)
    act_order: str = "natural"  # xg's column order (runtime/layout.py ACT_ORDERS)


def permute_signature(p, *outputs: Arg) -> Signature:
    """The gathers' signature (moe_permute, moe_permute_quantize): x [M, H] and route's src_token
    [CAP] in, `outputs` over the CAP grouped rows."""
    cap = capacity_expr()
    return Signature(
        (Arg("x", "bfloat16", ("M", "H"), align=16), Arg("src_token", "int32", (cap,), align=4), *outputs),
        static={"H": p.h, "TOPK": p.topk, "E": p.experts, "PAD": p.pad},
    )


class PermuteFamily(Family):
    name = "moe_permute"
    tiles = ((128, {"threads": 128, "unroll": 1}), (None, {"threads": 256, "unroll": 2}))  # decode (M <= 128): narrower CTAs
    params_type = PermuteParams
    problem_keys = ("h", "topk", "experts", "pad", "act_order")
    max_m = FUSED_MAX_M
    modules = ("nvfp4_aot.kernels.moe_glue.spec_permute", "nvfp4_aot.kernels.moe_glue.permute")

    def can_implement(self, p: PermuteParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + threads_reason(p.threads)
        r += vector_dim_reasons("h", p.h, "x and xg")
        r += routing_reasons(p.topk, p.experts, p.pad)
        r += act_order_reasons(p.act_order, "h", p.h) + unroll_reason(p.unroll)
        if not r:
            r += int32_items_reasons(f"h={p.h}", capacity(self.max_m, p.topk, p.experts, p.pad), p.h // VEC, "16-byte vectors")
        return r

    def signature(self, p: PermuteParams) -> Signature:
        return permute_signature(p, Arg("xg", "bfloat16", (capacity_expr(), "H"), align=16, output=True))

    def compile_args(self, p: PermuteParams, arch: str):
        from . import permute

        return permute.make_permute(p), permute.fake_args_permute(p)

    def make_inputs(self, p: PermuteParams, m: int, device: Any, seed: int, poison: float = float("nan")):
        from .ref import permute_inputs

        return permute_inputs(p.h, p.topk, p.experts, p.pad, m, device, seed, poison)

    def reference(self, p: PermuteParams, inputs: Mapping[str, Any]):
        from nvfp4_aot.runtime.layout import act_order

        from .ref import permute_ref

        return {"xg": act_order(permute_ref(inputs["x"], inputs["src_token"]), p.act_order)}

    def check(self, p, got, want) -> list[str]:
        import torch

        from .ref import exact_errors

        g, w = got["xg"], want["xg"]
        if g.dtype == w.dtype == torch.bfloat16:  # compare bit patterns (a bit copy: -0 != +0)
            g, w = g.view(torch.int16), w.view(torch.int16)
        return exact_errors({"xg": g}, {"xg": w})


FAMILY = PermuteFamily()
