"""The common rules of `Family.can_implement`, phrased once: each returns the reasons a value
breaks the rule (an empty list: it holds), so a predicate is the sum of its rules and every
family names a bad value the same way ("tile_n=48 must be one of (64, 128)"). For any family,
first-party or third-party; no torch, no cutlass (spec modules import it)."""

from __future__ import annotations

from typing import Any, Iterable


def _why(why: str | None) -> str:
    return f" ({why})" if why else ""


def one_of(name: str, value: Any, choices: Iterable[Any], why: str | None = None) -> list[str]:
    """value is one of `choices` (a tuning knob's measured or supported set)."""
    choices = tuple(choices)
    return [] if value in choices else [f"{name}={value!r} must be one of {choices}{_why(why)}"]


def multiple_of(name: str, value: int, unit: int, why: str | None = None) -> list[str]:
    """value is a positive multiple of `unit` (a tile or vector width)."""
    return [] if value >= unit and value % unit == 0 else [f"{name}={value} must be a positive multiple of {unit}{_why(why)}"]


def in_range(name: str, value: Any, lo: Any, hi: Any, why: str | None = None, lo_name: str | None = None) -> list[str]:
    """lo <= value <= hi (lo_name: how the message spells a lower bound taken from another
    parameter, e.g. "cluster_n")."""
    return [] if lo <= value <= hi else [f"{name}={value} must be in [{lo_name or lo}, {hi}]{_why(why)}"]
