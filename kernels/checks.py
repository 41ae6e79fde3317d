"""Output checks shared by the families' `check` hooks (the bounds themselves live in
kernels/tolerances.py). Torch is imported lazily: spec modules import this module."""

from __future__ import annotations

from typing import Any


def rel_frobenius_errors(name: str, got: Any, want: Any, tol: float) -> list[str]:
    """A float output against its (float64) reference: equal shapes, every value finite (an
    unwritten NaN poison or an overflow shows), relative Frobenius error <= tol."""
    import torch

    if tuple(got.shape) != tuple(want.shape):
        return [f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"]
    bad = ~torch.isfinite(got)
    if bool(bad.any()):
        first = bad.nonzero()[0].tolist()
        return [f"{name}: {int(bad.sum())} of {got.numel()} values non-finite (unwritten poison?), first at {first}"]
    err = float((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-300))
    return [] if err <= tol else [f"{name}: relative Frobenius error {err:.3e} > {tol:.0e}"]


def split_flags_errors(got: Any) -> list[str]:
    """A split-K call's int32 flags (when the family has them) against the scratch contract: the
    last-arriving split resets every flag to 0, so a CUDA-graph replay needs no memset."""
    flags = got.get("flags")
    if flags is None or not bool(flags.any()):
        return []
    return [f"flags: {int(flags.count_nonzero())} split-K flags not reset to 0 after the call"]
