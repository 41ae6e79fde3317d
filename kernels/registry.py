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
def _load() -> tuple[dict[str, Family], dict[str, str]]:
    """(families by name, load errors by entry-point name). A plugin that fails to import is
    an error only for whoever asks for it: one broken package must not take every family down
    (a serving container may lack a build-only dependency of some plugin)."""
    found: dict[str, Family] = {}
    broken: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            fam = ep.load()
        except Exception as e:
            broken[ep.name] = f"family entry point {ep.name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}"
            continue
        if not isinstance(fam, Family):
            broken[ep.name] = f"entry point {ep.name!r} ({ep.value}) is not a Family instance"
        elif fam.name in found and found[fam.name] is not fam:
            broken[ep.name] = f"family name {fam.name!r} registered twice ({ep.value})"
        else:
            found[fam.name] = fam
    return found, broken


def families() -> dict[str, Family]:
    """All families that registered and loaded, by name."""
    return _load()[0]


families.cache_clear = _load.cache_clear  # type: ignore[attr-defined]


def broken_families() -> dict[str, str]:
    return _load()[1]


def get_family(name: str) -> Family:
    fams, broken = _load()
    if name in broken:
        raise ImportError(broken[name])
    if name not in fams:
        raise UnknownFamilyError(
            f"unknown kernel family {name!r}; registered: {sorted(fams)} "
            f"(entry-point group {ENTRY_POINT_GROUP!r}){'; failed to load: ' + '; '.join(broken.values()) if broken else ''}"
        )
    return fams[name]
