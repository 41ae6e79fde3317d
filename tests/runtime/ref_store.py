"""A stand-in ArtifactStore whose ops run each family's torch reference (CPU): the runtime's
runners can then be tested end to end without a GPU. Outputs are written into the caller's
output tensors (cast to their dtype), as the kernels do; padding rows the reference leaves NaN
are left as they were."""

from __future__ import annotations

import torch

from nvfp4_aot.kernels import eval_dim, get_family
from nvfp4_aot.runtime.errors import MissingVariantError


class RefOp:
    """One family + problem; `tunings` [(hi, knobs), ...] makes buckets [1, hi1], [hi1 + 1, hi2], ...
    of differently tuned params (e.g. split-K ones with scratch arguments), else one bucket."""

    def __init__(self, family: str, problem: dict, max_m: int, tunings=None):
        self.fam = get_family(family)
        self.params = self.fam.parse_params(problem)
        self.sig = self.fam.signature(self.params)
        self.name = f"{family}({problem})"
        self.max_m = max_m
        self.calls = 0
        self.buckets, lo = [], 1
        for hi, knobs in tunings or [(max_m, {})]:
            p = self.fam.parse_params({**problem, **knobs})
            self.buckets.append((lo, hi, p, self.fam.signature(p)))
            lo = hi + 1
        self.max_m = self.buckets[-1][1]

    def _bucket(self, m):
        # (like the old single-bucket stand-in, calls above the last bucket run its params)
        return next((b for b in self.buckets if b[0] <= m <= b[1]), self.buckets[-1])

    def bucket_edges(self):
        return [(lo, hi) for lo, hi, _, _ in self.buckets]

    def scratch(self, m):
        _, _, p, sig = self._bucket(m)
        env = {**sig.static, "M": m}
        return [(a.name, tuple(eval_dim(d, env) for d in a.shape), getattr(torch, a.dtype)) for a in sig.args if a.scratch]

    def __call__(self, *args, check=True):
        if len(self.buckets) > 1 or self.buckets[0][3] != self.sig:
            _, _, self.params, self.sig = self._bucket(args[0].shape[0])
        assert len(args) == len(self.sig.args), f"{self.name}: {len(args)} args for {[a.name for a in self.sig.args]}"
        inputs = {a.name: t for a, t in zip(self.sig.args, args)}
        for (name, shape, dtype), a in zip(self.scratch(args[0].shape[0]), args[len(args) - len(self.scratch(args[0].shape[0])):]):
            assert tuple(a.shape) == shape and a.dtype == dtype and a.is_contiguous(), (self.name, name, tuple(a.shape))
        if "flags" in inputs:  # quack's serial split-K contract: flags zero before every call
            assert not inputs["flags"].any(), f"{self.name}: split-K flags not zero before the call"
        if self.fam.name == "quack_nvfp4_grouped_gemm":  # its offsets contract (the kernel cannot check it)
            from nvfp4_aot.kernels.quack_blockscaled.ref import check_offsets

            bad = check_offsets(inputs["offsets"], inputs["a"].shape[0])
            assert not bad, f"{self.name}: {bad}"
        if self.fam.name == "quack_w4a16_grouped_gemm":  # its contract: groups start at multiples of tile_n
            off = inputs["offsets"].tolist()
            assert off[0] == 0 and all(a <= b for a, b in zip(off, off[1:])) and off[-1] <= inputs["act"].shape[0], off
            assert all(o % self.params.tile_n == 0 for o in off), f"{self.name}: offsets {off} not multiples of tile_n"
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
    def __init__(self, arch: str, max_m: int = 1 << 16, tunings=None):
        self.arch, self.max_m, self.ops = arch, max_m, {}
        self.tunings = tunings or {}  # family -> [(hi, knobs), ...] (see RefOp)

    def op(self, family: str, **problem):
        key = (family, tuple(sorted(problem.items())))
        if key not in self.ops:
            fam = get_family(family)
            reasons = fam.can_implement(fam.parse_params(problem), self.arch)
            if reasons:
                raise MissingVariantError(f"{family} {problem} on {self.arch}: {reasons}")
            self.ops[key] = RefOp(family, problem, self.max_m, self.tunings.get(family))
        return self.ops[key]

    def prime(self, device=None):
        return 0
