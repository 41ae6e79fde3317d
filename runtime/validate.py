"""Argument validation from a kernel's recorded signature, before any launch.

Two levels, both before the launch:
- quick (default, on every call): what the kernel's own tvm-ffi wrapper cannot see: dims
  derived from a dynamic symbol by an expression (e.g. round_up(M, 128) rows). The exported
  function itself then checks device type and index, dtype, rank, static dims, symbol
  consistency across arguments, strides and data alignment, in C, before launching (the DSL's
  tvm-ffi argument decoder); when it refuses, the full check below runs to name the argument
  in our own terms (tests/gpu checks each refusal on a GPU).
- full: every rule in Python (device, dtype, rank, every dim, contiguity, alignment).
Shape expressions are compiled once per kernel, not parsed per call.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from .errors import ArgumentError
from .signature import Signature, compile_dim


def _compile_dim(expr: str | int, static: dict[str, int]) -> Callable[[dict], int] | int:
    """A constant if the dim does not depend on call-bound symbols, else a compiled env -> int."""
    if isinstance(expr, int):
        return expr
    fn = compile_dim(expr)
    return fn(static) if fn.symbols <= static.keys() else fn


class CallValidator:
    def __init__(self, symbol: str, sig: Signature, device_type: str = "cuda"):
        self.symbol = symbol
        self.sig = sig
        self.args = sig.args
        self.device_type = device_type  # "cpu" only in the CPU tests of this validator
        self.dtypes = self._dtypes = tuple(getattr(torch, a.dtype) for a in sig.args)
        self._binds = {s: self.bind_position(s) for s in sig.dynamic}
        self._cache: tuple[int, list] = (-1, [])  # (M, expected derived dims) of the last call
        static = dict(sig.static)
        self._dims = [[_compile_dim(d, static) for d in a.shape] for a in sig.args]
        # (arg, dim, fn) for dims that are expressions of dynamic symbols but not a bare symbol:
        # the only shape facts the exported function cannot check itself.
        self._derived = [
            (i, j, f)
            for i, dims in enumerate(self._dims)
            for j, f in enumerate(dims)
            if callable(f) and sig.args[i].shape[j] not in sig.dynamic
        ]

    def bind_position(self, symbol: str) -> tuple[int, int]:
        for i, a in enumerate(self.sig.args):
            for j, d in enumerate(a.shape):
                if d == symbol:
                    return i, j
        raise ValueError(f"{self.symbol}: dynamic symbol {symbol} appears in no argument")

    def shape_of(self, i: int, m: int) -> tuple[int, ...]:
        env = {**self.sig.static, **{s: m for s in self.sig.dynamic}}
        return tuple(d(env) if callable(d) else d for d in self._dims[i])

    def zeros(self, m: int, device: Any) -> list[torch.Tensor]:
        """Zero-filled arguments for token count m (every dynamic symbol = m)."""
        return [torch.zeros(self.shape_of(i, m), dtype=dt, device=device) for i, dt in enumerate(self.dtypes)]

    def _fail(self, i: int, what: str) -> ArgumentError:
        return ArgumentError(f"{self.symbol}: argument #{i} {self.args[i].name!r}: {what}")

    def quick(self, tensors: Sequence[Any], m: int | None = None) -> None:
        """Derived dims only (the exported function checks the rest natively, alignment and
        device index included); a failure re-runs the full check to name the argument.
        With m given (the caller already read M), the expected dims are cached per M."""
        if not self._derived:
            return
        try:
            if m is not None and len(self._binds) == 1:
                cm, want = self._cache
                if cm != m:
                    env = {**self.sig.static, **dict.fromkeys(self._binds, m)}
                    want = [(i, j, f(env)) for i, j, f in self._derived]
                    self._cache = (m, want)  # one assignment: readers see a consistent pair
                for i, j, w in want:
                    if tensors[i].shape[j] != w:
                        raise LookupError
                return
            env = {**self.sig.static, **{s: tensors[i].shape[j] for s, (i, j) in self._binds.items()}}
            for i, j, f in self._derived:
                if tensors[i].shape[j] != f(env):
                    raise LookupError
        except (LookupError, AttributeError, TypeError, ValueError):
            self(tensors)
            raise ArgumentError(f"{self.symbol}: arguments rejected") from None

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
        for i, (a, dt, dims, t) in enumerate(zip(self.args, self._dtypes, self._dims, tensors)):
            if t.device.type != self.device_type:
                raise self._fail(i, f"must be on a {self.device_type.upper()} device, got {t.device}")
            if t.device != device:
                raise self._fail(i, f"is on {t.device}, argument #0 on {device}")
            if t.dtype != dt:
                raise self._fail(i, f"dtype {str(t.dtype).replace('torch.', '')}, expected {a.dtype}")
            want = tuple(d(env) if callable(d) else d for d in dims)
            if tuple(t.shape) != want:
                sym = ", ".join(f"{k}={v}" for k, v in env.items())
                raise self._fail(i, f"shape {tuple(t.shape)}, expected {want} = {tuple(a.shape)} with {sym}")
            if not t.is_contiguous():
                raise self._fail(i, f"must be contiguous (row-major), got strides {t.stride()}")
            if t.data_ptr() % a.align:
                raise self._fail(i, f"data pointer {t.data_ptr():#x} is not {a.align}-byte aligned")
