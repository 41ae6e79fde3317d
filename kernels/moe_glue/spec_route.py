"""moe_route: topk ids -> counts, offsets, slot_of, src_token of the grouped layout (package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nvfp4_aot.runtime.layout import capacity_expr

from ..family import Arg, Family, Signature
from ..validity import one_of
from .common import routing_reasons, threads_reason

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
    modules = ("nvfp4_aot.kernels.moe_glue.spec_route", "nvfp4_aot.kernels.moe_glue.route")

    def can_implement(self, p: RouteParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + threads_reason(p.threads)
        r += routing_reasons(p.topk, p.experts, p.pad, "one CTA per local expert")
        return r + one_of("vec", p.vec, (4, 8, 16), "16-byte loads of topk_ids")

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


FAMILY = RouteFamily()
