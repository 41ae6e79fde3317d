"""Caller-owned scratch of an op (signature arguments marked `scratch`, always the trailing ones),
allocated once per owner and sliced per call: graph safe (no allocation after construction).

One zero-filled buffer per scratch argument name, as large as the largest use among the op's
buckets up to `max_tokens`; a call at token count m gets, for the kernel serving m, a view of
each buffer's contiguous prefix in the shape its signature gives at m (e.g. quack's serial
split-K flags / workspace: runtime/linear.py). Zero-filled because some scratch must start at
zero (split-K flags, which their kernel leaves at zero again after every call: then any prefix
of the buffer, viewed in any shape, is zero before each call). Views are cached per m.
An owner must not run two calls that share its scratch concurrently (two streams).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .errors import ArgumentError


class OpScratch:
    def __init__(self, op: Any, max_tokens: int, device: Any):
        self.op, self.max_tokens = op, max_tokens
        need: dict[str, tuple[int, torch.dtype]] = {}
        for lo, hi in op.bucket_edges():
            if lo > max_tokens:
                break
            for name, shape, dtype in op.scratch(min(hi, max_tokens)):
                if name in need and need[name][1] != dtype:
                    raise ArgumentError(f"{op.name}: scratch argument {name!r} has dtype {dtype} and {need[name][1]} in different buckets")
                need[name] = (max(math.prod(shape), need.get(name, (0, dtype))[0]), dtype)
        self.buffers = {name: torch.zeros(n, dtype=dt, device=device) for name, (n, dt) in need.items()}
        self._views: dict[int, tuple[torch.Tensor, ...]] = {}

    def __call__(self, m: int) -> tuple[torch.Tensor, ...]:
        """The scratch arguments for a call at token count m (empty when its kernel has none)."""
        views = self._views.get(m)
        if views is None:
            views = []
            for name, shape, _ in self.op.scratch(m):
                n = math.prod(shape)
                if m > self.max_tokens or n > self.buffers[name].numel():
                    raise ArgumentError(f"{self.op.name}: M={m} above max_tokens={self.max_tokens} (scratch {name!r} sized for it)")
                views.append(self.buffers[name][:n].view(shape))
            views = self._views[m] = tuple(views)
        return views

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers.values())


__all__ = ["OpScratch"]
