"""Family registry: every family, first-party or not, comes through one entry-point group."""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache

from .family import Family

ENTRY_POINT_GROUP = "nvfp4_aot.families"


class UnknownFamilyError(KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@lru_cache(maxsize=1)
def families() -> dict[str, Family]:
    """All registered families by name. A broken or duplicate registration is an error."""
    found: dict[str, Family] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            fam = ep.load()
        except Exception as e:  # a plugin's import error must name the plugin
            raise ImportError(f"family entry point {ep.name!r} ({ep.value}) failed to load: {e}") from e
        if not isinstance(fam, Family):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) is not a Family instance")
        if fam.name in found and found[fam.name] is not fam:
            raise ValueError(f"family name {fam.name!r} registered twice ({ep.value})")
        found[fam.name] = fam
    return found


def get_family(name: str) -> Family:
    fams = families()
    if name not in fams:
        raise UnknownFamilyError(
            f"unknown kernel family {name!r}; registered: {sorted(fams)} "
            f"(entry-point group {ENTRY_POINT_GROUP!r})"
        )
    return fams[name]
