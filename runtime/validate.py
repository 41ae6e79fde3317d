"""Argument validation from a kernel's recorded signature, before any launch.

Checks, per argument: torch tensor, CUDA device (all on one device), dtype, rank, each dim
(shape expressions over static and call-bound symbols), row-major contiguity and data-pointer
alignment. Errors name the kernel symbol and the argument.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from nvfp4_aot.kernels.family import Signature, eval_dim

from .errors import ArgumentError


class CallValidator:
    def __init__(self, symbol: str, sig: Signature, device_type: str = "cuda"):
        self.symbol = symbol
        self.device_type = device_type  # "cpu" only in the CPU tests of this validator
        self.sig = sig
        self.args = sig.args
        self._dtypes = tuple(getattr(torch, a.dtype) for a in sig.args)
        self._binds = {s: self.bind_position(s) for s in sig.dynamic}

    def bind_position(self, symbol: str) -> tuple[int, int]:
        for i, a in enumerate(self.sig.args):
            for j, d in enumerate(a.shape):
                if d == symbol:
                    return i, j
        raise ValueError(f"{self.symbol}: dynamic symbol {symbol} appears in no argument")

    def _fail(self, i: int, what: str) -> ArgumentError:
        a = self.args[i]
        return ArgumentError(f"{self.symbol}: argument #{i} {a.name!r}: {what}")

    def __call__(self, tensors: Sequence[Any]) -> None:
        if len(tensors) != len(self.args):
            raise ArgumentError(
                f"{self.symbol}: expected {len(self.args)} arguments "
                f"({', '.join(a.name for a in self.args)}), got {len(tensors)}"
            )
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise self._fail(i, f"expected a torch.Tensor, got {type(t).__name__}")
        env = dict(self.sig.static)
        for s, (i, j) in self._binds.items():
            t = tensors[i]
            if t.dim() <= j:
                raise self._fail(i, f"expected rank {len(self.args[i].shape)}, got shape {tuple(t.shape)}")
            env[s] = t.shape[j]
        device = tensors[0].device
        for i, (a, dt, t) in enumerate(zip(self.args, self._dtypes, tensors)):
            if t.device.type != self.device_type:
                raise self._fail(i, f"must be on a {self.device_type.upper()} device, got {t.device}")
            if t.device != device:
                raise self._fail(i, f"is on {t.device}, argument #0 on {device}")
            if t.dtype != dt:
                raise self._fail(i, f"dtype {str(t.dtype).replace('torch.', '')}, expected {a.dtype}")
            want = tuple(eval_dim(d, env) for d in a.shape)
            if tuple(t.shape) != want:
                sym = ", ".join(f"{k}={v}" for k, v in env.items())
                raise self._fail(i, f"shape {tuple(t.shape)}, expected {want} = {tuple(a.shape)} with {sym}")
            if not t.is_contiguous():
                raise self._fail(i, f"must be contiguous (row-major), got strides {t.stride()}")
            if t.data_ptr() % a.align:
                raise self._fail(i, f"data pointer {t.data_ptr():#x} is not {a.align}-byte aligned")
