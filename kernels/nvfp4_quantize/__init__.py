"""NVFP4 quantize families: BF16 [M, K] -> E2M1 codes + E4M3 block scales, and amax -> global scale.

The torch references (ref.py) *define* the rounding; the CuTe DSL kernels (kernel.py) match them
bit for bit. Semantics per row and per block of 16 along K, all fp32, IEEE round-to-nearest:

    vmax = max |x| over the block
    s    = (vmax * gs) * fp32(1/6)
    sf8  = E4M3(s), round-to-nearest-even, saturating at 448   (cvt.rn.satfinite.e4m3x2)
    out  = 0 if sf8 == 0 else gs / float(sf8)                  (IEEE division)
    code = E2M1(x * out), round-to-nearest-even, saturating at 6; sign = signbit(x * out)

gs is the global *encode* scale, 448 * 6 / amax (the checkpoint's weight_scale_2 is 1 / gs).
Element 2j is the low nibble of byte j. Swizzled scales use Blackwell's 128x4 block-scaled
layout; rows past M up to round_up(M, 128) are zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nvfp4_aot.runtime.nvfp4 import E2M1_MAX as FP4_MAX  # noqa: F401  (re-exported)
from nvfp4_aot.runtime.nvfp4 import E2M1_VALUES, E4M3_MAX, GS_NUMERATOR, SF_BLOCK, round_up  # noqa: F401

from ..family import Arg, Family, Signature
from ..validity import in_range, multiple_of, one_of

SF_LAYOUTS = ("swizzled", "rowmajor")
# E2M1 round-to-nearest-even as threshold tests: ">" where the tie goes down to the even
# code, ">=" where it goes up to the even code.
_E2M1_STEPS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True), (2.5, False), (3.5, True), (5.0, False))


# ----------------------------------------------------------------------------- families


@dataclass(frozen=True)
class QuantizeParams:
    k: int
    sf_layout: str = "swizzled"
    threads: int = 128  # threads per CTA (tuning)
    stage_smem: bool = True  # stage x through shared memory with cp.async (False: direct 16-B loads)


@dataclass(frozen=True)
class GlobalScaleParams:
    k: int
    threads: int = 256  # threads per CTA (tuning)
    partials: int = 1024  # CTAs of the partial-max pass == workspace floats (tuning)


def quantized_args(rows: str, k: str, sf_rows: str) -> tuple[Arg, Arg, Arg]:
    """(global_scale, q, sf) of every entry point that quantizes to NVFP4 (here and moe_glue's
    fused ones): rows x k values -> codes [rows, k/2], scale bytes [sf_rows, k/16]."""
    return (
        Arg("global_scale", "float32", (1,), align=4),
        Arg("q", "uint8", (rows, f"{k} // 2"), align=16, output=True),
        Arg("sf", "uint8", (sf_rows, f"{k} // 16"), align=4, output=True),
    )


def _shape_reasons(k: int) -> list[str]:
    return multiple_of("k", k, 64, "4 scale blocks per thread")


class QuantizeFamily(Family):
    name = "nvfp4_quantize"
    max_m = 65536  # keeps M * K < 2^32 bytes of input at K = 65536 (32-bit offsets stay exact)
    tiles = ((128, {"threads": 64}), (None, {"threads": 128}))  # decode: narrower CTAs
    params_type = QuantizeParams
    problem_keys = ("k", "sf_layout")
    modules = ("nvfp4_aot.kernels.nvfp4_quantize", "nvfp4_aot.kernels.nvfp4_quantize.kernel")

    def can_implement(self, p: QuantizeParams, arch: str) -> list[str]:
        reasons = super().can_implement(p, arch) + _shape_reasons(p.k) + one_of("sf_layout", p.sf_layout, SF_LAYOUTS)
        return reasons + one_of("threads", p.threads, (64, 128, 256, 512))

    def signature(self, p: QuantizeParams) -> Signature:
        sf_rows = "round_up(M, 128)" if p.sf_layout == "swizzled" else "M"
        return Signature(
            (Arg("x", "bfloat16", ("M", "K"), align=16), *quantized_args("M", "K", sf_rows)),
            static={"K": p.k},
        )

    def compile_args(self, p: QuantizeParams, arch: str):
        from . import kernel

        return kernel.make_kernel("quantize", vars(p)), kernel.fake_args("quantize", vars(p))

    def make_inputs(self, p: QuantizeParams, m: int, device: Any, seed: int, poison: int = 0xFF):
        import torch

        from .ref import global_scale_ref, random_activations

        gen = torch.Generator(device=device).manual_seed(seed)
        x = random_activations(m, p.k, device, gen)
        # Scales from 0.3x to 3x the amax-derived one: the large ones drive saturation paths.
        factor = float(torch.empty(()).uniform_(-1.7, 1.6, generator=torch.Generator().manual_seed(seed)).exp2())
        gs = global_scale_ref(x) * factor
        sf_rows = round_up(m, 128) if p.sf_layout == "swizzled" else m
        return {
            "x": x,
            "global_scale": gs,
            "q": torch.full((m, p.k // 2), poison, dtype=torch.uint8, device=device),
            "sf": torch.full((sf_rows, p.k // 16), poison, dtype=torch.uint8, device=device),
        }

    def reference(self, p: QuantizeParams, inputs: Mapping[str, Any]):
        from .ref import quantize_ref

        q, sf = quantize_ref(inputs["x"], inputs["global_scale"], p.sf_layout)
        return {"q": q, "sf": sf}

    def check(self, p, got, want) -> list[str]:
        import torch

        return [f"{n}: {_mismatch(got[n], want[n])}" for n in want if not torch.equal(got[n], want[n])]


class GlobalScaleFamily(Family):
    name = "nvfp4_global_scale"
    params_type = GlobalScaleParams
    problem_keys = ("k",)
    modules = ("nvfp4_aot.kernels.nvfp4_quantize", "nvfp4_aot.kernels.nvfp4_quantize.kernel")

    def can_implement(self, p: GlobalScaleParams, arch: str) -> list[str]:
        reasons = super().can_implement(p, arch) + _shape_reasons(p.k) + one_of("threads", p.threads, (128, 256, 512))
        return reasons + in_range("partials", p.partials, 1, 4096)

    def signature(self, p: GlobalScaleParams) -> Signature:
        return Signature(
            (
                Arg("x", "bfloat16", ("M", "K"), align=16),
                Arg("global_scale", "float32", (1,), align=4, output=True),
                Arg("workspace", "float32", ("P",), align=4, output=True, scratch=True),
            ),
            static={"K": p.k, "P": p.partials},
        )

    def compile_args(self, p: GlobalScaleParams, arch: str):
        from . import kernel

        return kernel.make_kernel("global_scale", vars(p)), kernel.fake_args("global_scale", vars(p))

    def make_inputs(self, p: GlobalScaleParams, m: int, device: Any, seed: int, poison: float = float("nan")):
        import torch

        from .ref import random_activations

        gen = torch.Generator(device=device).manual_seed(seed)
        return {
            "x": random_activations(m, p.k, device, gen),
            "global_scale": torch.full((1,), poison, dtype=torch.float32, device=device),
            "workspace": torch.full((p.partials,), poison, dtype=torch.float32, device=device),
        }

    def reference(self, p: GlobalScaleParams, inputs: Mapping[str, Any]):
        from .ref import global_scale_ref

        return {"global_scale": global_scale_ref(inputs["x"])}

    def check(self, p, got, want) -> list[str]:
        import torch

        n = "global_scale"
        return [] if torch.equal(got[n], want[n]) else [f"{n}: got {got[n].tolist()} want {want[n].tolist()}"]


def _mismatch(got, want) -> str:
    if got.shape != want.shape:
        return f"shape {tuple(got.shape)} != {tuple(want.shape)}"
    bad = (got != want).nonzero()
    return f"{bad.shape[0]} of {want.numel()} bytes differ, first at {bad[0].tolist()}: got {got[tuple(bad[0])].item():#04x} want {want[tuple(bad[0])].item():#04x}"


FAMILY = QuantizeFamily()
GLOBAL_SCALE_FAMILY = GlobalScaleFamily()
