"""A stand-in ArtifactStore whose ops run each family's torch reference (CPU): the runtime's
runners can then be tested end to end without a GPU. Outputs are written into the caller's
output tensors (cast to their dtype), as the kernels do; padding rows the reference leaves NaN
are left as they were."""

from __future__ import annotations

import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime.errors import MissingVariantError


class RefOp:
    def __init__(self, family: str, problem: dict, max_m: int):
        self.fam = get_family(family)
        self.params = self.fam.parse_params(problem)
        self.sig = self.fam.signature(self.params)
        self.name = f"{family}({problem})"
        self.max_m = max_m
        self.calls = 0

    def __call__(self, *args, check=True):
        assert len(args) == len(self.sig.args), f"{self.name}: {len(args)} args for {[a.name for a in self.sig.args]}"
        inputs = {a.name: t for a, t in zip(self.sig.args, args)}
        if self.fam.name == "quack_nvfp4_grouped_gemm":  # its offsets contract (the kernel cannot check it)
            from nvfp4_aot.kernels.quack_blockscaled.ref import check_offsets

            bad = check_offsets(inputs["offsets"], inputs["a"].shape[0])
            assert not bad, f"{self.name}: {bad}"
        want = self.fam.reference(self.params, inputs)
        for a, t in zip(self.sig.args, args):
            if a.output:
                w = want[a.name]
                if w.is_floating_point() and t.is_floating_point():
                    keep = torch.isnan(w)
                    t.copy_(torch.where(keep, t.to(w.dtype), w).to(t.dtype))
                else:
                    t.copy_(w.to(t.dtype).view(t.shape))
        self.calls += 1


class RefStore:
    def __init__(self, arch: str, max_m: int = 1 << 16):
        self.arch, self.max_m, self.ops = arch, max_m, {}

    def op(self, family: str, **problem):
        key = (family, tuple(sorted(problem.items())))
        if key not in self.ops:
            fam = get_family(family)
            reasons = fam.can_implement(fam.parse_params(problem), self.arch)
            if reasons:
                raise MissingVariantError(f"{family} {problem} on {self.arch}: {reasons}")
            self.ops[key] = RefOp(family, problem, self.max_m)
        return self.ops[key]

    def prime(self, device=None):
        return 0
