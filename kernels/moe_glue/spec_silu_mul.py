"""moe_silu_mul: x [M, 2I] bf16 (gate | up) -> silu(gate) * up [M, I] bf16 (package docstring: numerics),
out in `act_order` (runtime/layout.py: "quad" for the w4a16 L2 that reads it in that order)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..checks import rel_frobenius_errors
from ..family import Arg, Family, Signature
from ..tolerances import REL_FROBENIUS
from .common import THREADS, act_order_reasons, limit_reasons, threads_reason, unroll_reason, vector_dim_reasons  # noqa: F401

@dataclass(frozen=True)
class SiluMulParams:
    i: int  # intermediate size: x has 2 * i columns, out has i
    limit: float = 0.0  # > 0: clamped SwiGLU, silu(min(gate, limit)) * clamp(up, -limit, limit) (DeepSeek-V4: 10)
    threads: int = 256  # threads per CTA (tuning)
    unroll: int = 2  # 16-byte output vectors per thread (tuning: loads in flight)
    act_order: str = "natural"  # out's column order (runtime/layout.py ACT_ORDERS; x is natural)


class SiluMulFamily(Family):
    name = "moe_silu_mul"
    tiles = ((128, {"threads": 128, "unroll": 1}), (None, {"threads": 256, "unroll": 2}))  # decode (M <= 128): narrower CTAs
    params_type = SiluMulParams
    problem_keys = ("i", "limit", "act_order")
    max_m = 1 << 20
    modules = ("nvfp4_aot.kernels.moe_glue.spec_silu_mul", "nvfp4_aot.kernels.moe_glue.kernel")

    def can_implement(self, p: SiluMulParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch) + threads_reason(p.threads)
        r += vector_dim_reasons("i", p.i, "gate, up and out")
        return r + act_order_reasons(p.act_order, "i", p.i) + unroll_reason(p.unroll) + limit_reasons(p.limit)

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
        if p.limit > 0:  # up too crosses +-limit, so both clamps are exercised
            x[:, p.i :] *= torch.exp2(torch.randint(-3, 4, (m, 1), generator=g, device=device).float())
        x = x.to(torch.bfloat16)
        return {"x": x, "out": torch.full((m, p.i), poison, dtype=torch.bfloat16, device=device)}

    def reference(self, p: SiluMulParams, inputs: Mapping[str, Any]):
        from nvfp4_aot.runtime.layout import act_order

        return {"out": act_order(silu_mul(inputs["x"], p.limit), p.act_order)}

    def check(self, p, got, want) -> list[str]:
        return rel_frobenius_errors("out", got["out"], want["out"], REL_FROBENIUS["bfloat16"])


def silu_mul(x: Any, limit: float = 0.0) -> Any:
    """silu(gate) * up of x [M, 2I] (gate | up) in fp32, rounded once to bf16: what moe_silu_mul
    stores (the kernel's ex2 / rcp approximations move it by a few fp32 ulps) and what
    moe_silu_mul_quantize quantizes. limit > 0 clamps first as vLLM's swiglu_limit does:
    gate <= limit, -limit <= up <= limit. Torch, imported lazily (the build never needs it)."""
    import torch

    i = x.shape[1] // 2
    xf = x.float()
    g, u = xf[:, :i], xf[:, i:]
    if limit > 0:
        g, u = g.clamp(max=limit), u.clamp(-limit, limit)
    return (torch.nn.functional.silu(g) * u).to(torch.bfloat16)


FAMILY = SiluMulFamily()
