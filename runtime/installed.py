"""Artifact stores installed as Python packages (written by `nvfp4-build pack`), found by name.

A store wheel `nvfp4-aot-store-NAME` installs the package `nvfp4_aot_store_<NAME>` (hyphens as
underscores) whose `store/` folder is an ordinary artifact store, and registers it as NAME in the
entry-point group `nvfp4_aot.stores` (value: that package's module name). Its dist-info holds
PACKAGE_META (name, version, store digest, cache-key, archs, toolchain). A `--format tar` package
unpacks to a store directory with the same PACKAGE_META file at its top. The store digest is
store_format's (recorded in index.json, re-derived from the records on every read).

`resolve(x)`: an existing directory is that store; anything else must be the name of an
installed store. Nothing of the package is imported (its folder is located with find_spec),
and `open` checks an installed store exactly as a directory, then its digest against the
package metadata.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from .store_format import StoreFormatError

ENTRY_POINT_GROUP = "nvfp4_aot.stores"
PACKAGE_META = "nvfp4_aot_store.json"
STORE_SUBDIR = "store"
DIST_PREFIX = "nvfp4-aot-store-"
NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")


def module_name(name: str) -> str:
    """The importable package a store wheel of this NAME installs."""
    return "nvfp4_aot_store_" + name.replace("-", "_")


def installed_stores() -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            raise StoreFormatError(f"two installed packages register the store {ep.name!r}: {found[ep.name].value} and {ep.value}")
        found[ep.name] = ep
    return found


def _package_meta(ep: importlib.metadata.EntryPoint) -> dict[str, Any]:
    dist = getattr(ep, "dist", None) or importlib.metadata.distribution(DIST_PREFIX + ep.name)
    text = dist.read_text(PACKAGE_META)
    if text is None:
        raise StoreFormatError(f"installed store {ep.name!r} ({dist.metadata['Name']}): its dist-info has no {PACKAGE_META}")
    return _parse_meta(text, f"{dist.metadata['Name']} {PACKAGE_META}")


def _parse_meta(text: str, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreFormatError(f"{where}: unreadable: {e}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("store_digest"), str):
        raise StoreFormatError(f"{where}: no store_digest")
    return meta


def resolve(store: os.PathLike | str) -> tuple[Path, dict[str, Any] | None]:
    """(store directory, package metadata or None) for a directory or an installed store's name."""
    path = Path(store)
    if path.is_dir():
        meta_file = path / PACKAGE_META
        meta = _parse_meta(meta_file.read_text(), str(meta_file)) if meta_file.is_file() else None
        return path, meta
    name = str(store)
    stores = installed_stores() if NAME_RE.fullmatch(name) else {}
    if name not in stores:
        listed = ", ".join(sorted(installed_stores())) or "none"
        raise StoreFormatError(
            f"{name}: no such artifact directory, and no installed store of that name "
            f"(installed stores: {listed}; `nvfp4-build pack` writes one, pip installs it)"
        )
    ep = stores[name]
    spec = importlib.util.find_spec(ep.value)  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise StoreFormatError(f"installed store {name!r}: package {ep.value} not found (reinstall it)")
    root = Path(next(iter(spec.submodule_search_locations))) / STORE_SUBDIR
    return root, _package_meta(ep)


def check_package(root: Path, digest: str, meta: Mapping[str, Any] | None) -> None:
    """A packaged store must be the store its package metadata names: `digest` is the store
    digest of its (validated) index, store_format.store_digest."""
    if meta is not None and digest != meta["store_digest"]:
        from .errors import TamperedArtifactError

        raise TamperedArtifactError(
            f"{root}: store digest {digest[:16]}... differs from its package's "
            f"{meta['store_digest'][:16]}... (the installed store was modified; reinstall the package)"
        )
