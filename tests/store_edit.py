"""Helpers that edit a store's index the way a careless tool or a mix-up would (tests only)."""

from __future__ import annotations

import json
from pathlib import Path

from nvfp4_aot.runtime.store_format import ENTRIES_DIR, INDEX_NAME, LIB_NAME, META_NAME, json_digest


def load(store: Path) -> dict:
    return json.loads((store / INDEX_NAME).read_text())


def save(store: Path, idx: dict, redigest: bool = True) -> None:
    """Write `idx`; with redigest the store digest is recomputed, as someone who knows the
    format would (so that the check under test, not the digest, is what refuses)."""
    if redigest and isinstance(idx, dict) and isinstance(idx.get("entries"), dict) and isinstance(idx.get("manifests"), dict):
        try:
            idx["digest"] = json_digest(idx["entries"], idx["manifests"])
        except (TypeError, KeyError, AttributeError):
            pass
    (store / INDEX_NAME).write_text(json.dumps(idx))


def two_keys(idx: dict, arch: str = "sm_90a") -> tuple[str, str]:
    """Two entries of one arch and family whose problems differ (n=64 vs n=128)."""
    recs = sorted((r for r in idx["entries"].values() if r["arch"] == arch), key=lambda r: (r["params"]["n"], r["params"]["threads"]))
    return recs[0]["key"], recs[-1]["key"]


def swap_entries(store: Path, a: str, b: str, rewrite: tuple[str, ...] = ("sha256", "size", "symbol"), meta: bool = False,
                 files: bool = True) -> None:  # fmt: skip
    """Swap the kernel.so (and with meta=True also meta.json; files=False: neither) of entries a
    and b, and swap the index fields `rewrite` of their records to describe the swapped files."""
    idx = load(store)
    names = () if not files else (LIB_NAME, META_NAME) if meta else (LIB_NAME,)
    for name in names:
        pa, pb = store / ENTRIES_DIR / a / name, store / ENTRIES_DIR / b / name
        da, db = pa.read_bytes(), pb.read_bytes()
        pa.write_bytes(db)
        pb.write_bytes(da)
    ra, rb = idx["entries"][a], idx["entries"][b]
    for f in rewrite:
        ra[f], rb[f] = rb[f], ra[f]
    save(store, idx)
