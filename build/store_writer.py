"""The write side of the artifact store: locked, staged, committed entry by entry.

Protocol (readers never lock; see nvfp4_aot.runtime.store_format):
  1. take <store>/.lock for the whole build (a second build of the same directory waits);
  2. clear tmp/ (staging left by a killed build) and orphan entry dirs the index does not list;
  3. each variant is built into tmp/<key>.<pid>/, then renamed to entries/<key>/, then the
     index is rewritten (temp + rename) to list it: a SIGKILL at any point leaves an index
     whose every entry is complete;
  4. the manifest's dispatch table is written to the index last, once all its entries exist.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable

from filelock import FileLock, Timeout

from nvfp4_aot.runtime.store_format import (
    ENTRIES_DIR,
    FORMAT_VERSION,
    INDEX_NAME,
    LOCK_NAME,
    TMP_DIR,
    entry_dir,
    read_index,
    write_json_atomic,
)

from .keys import variant_key
from .manifest import Manifest, Variant
from .worker import build_variant, discard, init_worker


class LockBusyError(RuntimeError):
    pass


@dataclass
class BuildReport:
    built: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    seconds: float = 0.0


def empty_index() -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "entries": {}, "manifests": {}}


class StoreWriter:
    def __init__(self, root: Path | str, lock_timeout: float = -1, on_wait: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        self._lock = None

    def __enter__(self) -> "StoreWriter":
        (self.root / ENTRIES_DIR).mkdir(parents=True, exist_ok=True)
        (self.root / TMP_DIR).mkdir(exist_ok=True)
        self._lock = FileLock(str(self.root / LOCK_NAME))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            if self.on_wait:
                self.on_wait(f"waiting for another build holding {self.root / LOCK_NAME}")
            try:
                self._lock.acquire(timeout=self.lock_timeout)
            except Timeout:
                raise LockBusyError(f"{self.root}: another build holds {LOCK_NAME} (waited {self.lock_timeout}s)") from None
        self.index = read_index(self.root) if (self.root / INDEX_NAME).exists() else empty_index()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()

    # -- housekeeping -----------------------------------------------------------
    def clean(self) -> list[str]:
        """Remove staging leftovers and entry dirs not listed in the index (under the lock)."""
        removed = []
        for p in sorted((self.root / TMP_DIR).iterdir()):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
            removed.append(str(p))
        for p in sorted((self.root / ENTRIES_DIR).iterdir()):
            if p.name not in self.index["entries"]:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(str(p))
        return removed

    def _write_index(self) -> None:
        write_json_atomic(self.root / INDEX_NAME, self.index)

    def commit_entry(self, record: dict[str, Any], stage: Path) -> None:
        final = entry_dir(self.root, record["key"])
        if final.exists():  # only orphans can be here: clean() ran under this lock
            shutil.rmtree(final)
        os.replace(stage, final)
        self.index["entries"][record["key"]] = record
        self._write_index()

    def commit_manifest(self, manifest: Manifest, keys: dict[tuple, str]) -> None:
        ops = {}
        for op in manifest.ops:
            ops[op.name] = {
                "family": op.family,
                "problem": dict(op.problem),
                "buckets": [
                    {"m": [b.lo, b.hi], "params": dict(b.params),
                     "variants": {a: keys[Variant(op.family, b.params, a).ident] for a in op.archs}}
                    for b in op.buckets
                ],
            }  # fmt: skip
        self.index["manifests"][manifest.name] = {"path": str(manifest.path), "ops": ops}
        self._write_index()

    # -- build ------------------------------------------------------------------
    def build(
        self,
        manifest: Manifest,
        jobs: int = 1,
        progress: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> BuildReport:
        t0 = time.perf_counter()
        report = BuildReport(cleaned=self.clean())
        variants = manifest.variants()
        keys = {v.ident: variant_key(v) for v in variants}
        todo: dict[str, list[Variant]] = {}
        for v in variants:
            key = keys[v.ident]
            if key in self.index["entries"] and (entry_dir(self.root, key)).is_dir():
                report.skipped.append(key)
            else:
                todo.setdefault(v.arch, []).append(v)
        for arch, vs in sorted(todo.items()):
            self._build_arch(arch, vs, keys, jobs, report, progress)
        if not report.failed:
            self.commit_manifest(manifest, keys)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _build_arch(self, arch, variants: list[Variant], keys, jobs, report: BuildReport, progress) -> None:
        ctx = get_context("spawn")  # fresh interpreters: the arch env is set before cutlass loads
        stages = {}
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(variants))), mp_context=ctx,
                                 initializer=init_worker, initargs=(arch,)) as pool:  # fmt: skip
            pending = set()
            for v in variants:
                key = keys[v.ident]
                stage = self.root / TMP_DIR / f"{key}.{os.getpid()}"
                stages[key] = stage
                job = {"family": v.family, "params": dict(v.params), "arch": arch, "key": key, "stage": str(stage)}
                pending.add(pool.submit(build_variant, job))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    rec = fut.result()
                    if "error" in rec:
                        discard(stages[rec["key"]])
                        report.failed.append(rec)
                    else:
                        self.commit_entry(rec, stages[rec["key"]])
                        report.built.append(rec)
                    if progress:
                        progress(arch, rec)

    # -- gc ---------------------------------------------------------------------
    def gc(self, keep: Iterable[Manifest], dry_run: bool = False) -> list[str]:
        """Drop entries (and manifest sections) that none of `keep` references."""
        keep = list(keep)
        names = {m.name for m in keep}
        wanted = {variant_key(v) for m in keep for v in m.variants()}
        # Entries referenced by a kept manifest's committed table stay even if keys moved on.
        for name in names & set(self.index["manifests"]):
            for op in self.index["manifests"][name]["ops"].values():
                for b in op["buckets"]:
                    wanted.update(b["variants"].values())
        drop = sorted(k for k in self.index["entries"] if k not in wanted)
        if dry_run:
            return drop
        self.index["manifests"] = {n: m for n, m in self.index["manifests"].items() if n in names}
        for k in drop:
            del self.index["entries"][k]
        self._write_index()  # index first: readers never see an entry whose files are gone
        for k in drop:
            shutil.rmtree(entry_dir(self.root, k), ignore_errors=True)
        return drop
