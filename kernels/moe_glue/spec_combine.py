"""moe_combine: grouped rows y [R, H] + slot_of + weights -> out [M, H] (package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..family import Arg, Family, Signature
from ..validity import in_range
from .common import threads_reason, vector_dim_reasons

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
    modules = ("nvfp4_aot.kernels.moe_glue.spec_combine", "nvfp4_aot.kernels.moe_glue.kernel")

    def can_implement(self, p: CombineParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + threads_reason(p.threads)
        return r + vector_dim_reasons("h", p.h, "y and out") + in_range("topk", p.topk, 1, 32, "unrolled")

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


FAMILY = CombineFamily()
