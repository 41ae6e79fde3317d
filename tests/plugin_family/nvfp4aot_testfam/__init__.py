"""A tiny third-party family used by the tests: y = x * alpha on float32 [M, N].

It is registered through the `nvfp4_aot.families` entry-point group by a dist-info the tests
write next to this package, exactly as another pip package would register one.
"""

from dataclasses import dataclass



from nvfp4_aot.kernels import Arg, Family, Signature


@dataclass(frozen=True)
class ScaleParams:
    n: int
    alpha: float = 2.0
    threads: int = 128


class ScaleFamily(Family):
    name = "test_scale"
    params_type = ScaleParams
    problem_keys = ("n", "alpha")
    modules = ("nvfp4aot_testfam", "nvfp4aot_testfam.kernel")
    max_m = 1 << 16

    def can_implement(self, p, arch):
        r = super().can_implement(p, arch)
        if p.n % 4:
            r.append(f"n={p.n} must be a multiple of 4")
        return r

    def signature(self, p):
        return Signature(
            (Arg("x", "float32", ("M", "N")), Arg("y", "float32", ("M", "N"), output=True)),
            static={"N": p.n},
        )

    def compile_args(self, p, arch):
        from . import kernel

        if p.threads == 96:  # lets the tests inject a codegen failure into one variant
            raise RuntimeError("simulated codegen failure (threads=96)")
        return kernel.ScaleKernel(p.n, p.alpha, p.threads), kernel.fake_args(p.n)

    def make_inputs(self, p, m, device, seed):
        import torch

        g = torch.Generator(device=device).manual_seed(seed)
        return {"x": torch.randn((m, p.n), generator=g, device=device),
                "y": torch.full((m, p.n), float("nan"), device=device)}

    def reference(self, p, inputs):
        return {"y": inputs["x"].double() * p.alpha}

    def check(self, p, got, want):
        err = (got["y"].double() - want["y"]).norm() / want["y"].norm()
        return [] if err <= 1e-6 else [f"y: relative error {err:.2e} > 1e-6"]


FAMILY = ScaleFamily()
