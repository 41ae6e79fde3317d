"""The write side of the artifact store: locked, staged, committed entry by entry.

Protocol (readers never lock; see nvfp4_aot.runtime.store_format):
  1. take <store>/.lock for the whole build (a second build of the same directory waits);
     refuse a store whose entries/ or tmp/ is a symlink, or whose index is malformed;
  2. clear tmp/ (staging left by a killed build or by workers of a killed parent) and orphan
     entry dirs the index does not list; only names that are entry keys are ever removed
     under entries/, symlinks are unlinked, never followed;
  3. each variant is built into tmp/<key>.<pid>/ by a worker that dies with this process, then
     renamed to entries/<key>/, then the index is rewritten (temp + rename) to list it, its
     digest recomputed: a SIGKILL at any point leaves an index whose every entry is complete;
  4. the manifest's dispatch table is written to the index last, once all its entries exist;
  5. `merge` (build/shard.py) stages copies of other stores' validated entries in tmp/, renames
     them all, then writes the index listing them and their tables once (commit_entries).
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
    INDEX_NAME,
    LOCK_NAME,
    TMP_DIR,
    BucketRow,
    EntryRecord,
    ManifestTable,
    OpTable,
    StoreFormatError,
    StoreIndex,
    entry_dir,
    inside,
    load_index,
    write_json_atomic,
)

from .keys import variant_key
from .manifest import Manifest, Variant
from .worker import BuildFailure, build_variant, discard, init_worker


class LockBusyError(RuntimeError):
    pass


@dataclass
class BuildReport:
    built: list[EntryRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[BuildFailure] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    seconds: float = 0.0


def manifest_table(manifest: Manifest, keys: dict[tuple, str]) -> ManifestTable:
    """The dispatch table of `manifest` (keys: Variant.ident -> content key)."""
    ops = {}
    for op in manifest.ops:
        rows = tuple(
            BucketRow(b.lo, b.hi, dict(b.params), {a: keys[Variant(op.family, b.params, a).ident] for a in op.archs})
            for b in op.buckets
        )
        ops[op.name] = OpTable(op.family, dict(op.problem), rows)
    return ManifestTable(str(manifest.path), ops)


class StoreWriter:
    def __init__(self, root: Path | str, lock_timeout: float = -1, on_wait: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        self._lock = None

    def __enter__(self) -> "StoreWriter":
        self.root.mkdir(parents=True, exist_ok=True)
        for d in (ENTRIES_DIR, TMP_DIR):
            inside(self.root, self.root / d)  # refuses a symlinked entries/ or tmp/
            (self.root / d).mkdir(exist_ok=True)
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
        try:
            index = load_index(self.root) if (self.root / INDEX_NAME).exists() else StoreIndex.build({}, {})
        except BaseException:
            self._lock.release()
            raise
        self.entries: dict[str, EntryRecord] = dict(index.entries)
        self.manifests: dict[str, ManifestTable] = dict(index.manifests)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()

    # -- housekeeping -----------------------------------------------------------
    def _remove(self, p: Path) -> None:
        """Remove a direct child of tmp/ or entries/ without following a symlink."""
        if p.is_symlink() or not p.is_dir():
            p.unlink()
        else:
            shutil.rmtree(inside(self.root, p), ignore_errors=True)

    def clean(self) -> list[str]:
        """Remove staging leftovers and entry dirs not listed in the index (under the lock)."""
        removed = []
        for p in sorted((self.root / TMP_DIR).iterdir()):
            self._remove(p)
            removed.append(str(p))
        for p in sorted((self.root / ENTRIES_DIR).iterdir()):
            if p.name not in self.entries:  # listed names are keys; anything else is not ours to keep
                self._remove(p)
                removed.append(str(p))
        return removed

    def _write_index(self) -> None:
        index = StoreIndex.build(self.entries, self.manifests)
        write_json_atomic(self.root / INDEX_NAME, index.to_json())

    def commit_entry(self, record: EntryRecord, stage: Path) -> None:
        final = entry_dir(self.root, record.key)
        if final.exists() or final.is_symlink():  # only orphans can be here: clean() ran under this lock
            self._remove(final)
        os.replace(stage, final)
        self.entries[record.key] = record
        self._write_index()

    def commit_entries(self, staged: list[tuple[EntryRecord, Path]], tables: dict[str, ManifestTable]) -> None:
        """Commit many staged entries and dispatch tables at once (merge): every stage is renamed
        into entries/ first, then the index listing them and the tables is written once, last.
        Killed in between, the renamed dirs are unlisted orphans: ignored, removed by clean()."""
        for record, stage in staged:
            final = entry_dir(self.root, record.key)
            if final.exists() or final.is_symlink():  # only orphans can be here: clean() ran under this lock
                self._remove(final)
            os.replace(stage, final)
        for record, _ in staged:
            self.entries[record.key] = record
        self.manifests.update(tables)
        self._write_index()

    def commit_manifest(self, manifest: Manifest, keys: dict[tuple, str]) -> None:
        self.manifests[manifest.name] = manifest_table(manifest, keys)
        self._write_index()

    # -- build ------------------------------------------------------------------
    def build(
        self,
        manifest: Manifest,
        jobs: int = 1,
        progress: Callable[[str, EntryRecord | BuildFailure], None] | None = None,
        select: Callable[[Variant, str], bool] | None = None,
    ) -> BuildReport:
        """Build the manifest's missing variants, then commit its dispatch table. With `select`
        (variant, key) -> bool only the selected variants are built (a shard, build/shard.py)
        and no table is committed: it would refer to entries this store does not hold."""
        t0 = time.perf_counter()
        report = BuildReport(cleaned=self.clean())
        variants = manifest.variants()
        keys = {v.ident: variant_key(v) for v in variants}
        if select is not None:
            variants = [v for v in variants if select(v, keys[v.ident])]
        todo: dict[str, list[Variant]] = {}
        for v in variants:
            key = keys[v.ident]
            if key in self.entries and entry_dir(self.root, key).is_dir():
                report.skipped.append(key)
            else:
                todo.setdefault(v.arch, []).append(v)
        for arch, vs in sorted(todo.items()):
            self._build_arch(arch, vs, keys, jobs, report, progress)
        if not report.failed and select is None:
            self.commit_manifest(manifest, keys)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _build_arch(self, arch, variants: list[Variant], keys, jobs, report: BuildReport, progress) -> None:
        ctx = get_context("spawn")  # fresh interpreters: the arch env is set before cutlass loads
        stages = {}
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(variants))), mp_context=ctx,
                                 initializer=init_worker, initargs=(arch, os.getpid())) as pool:  # fmt: skip
            pending = set()
            for v in variants:
                key = keys[v.ident]
                stages[key] = stage = self.root / TMP_DIR / f"{key}.{os.getpid()}"
                pending.add(pool.submit(build_variant, v, key, str(stage)))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    rec = fut.result()
                    if isinstance(rec, BuildFailure):
                        discard(stages[rec.key])
                        report.failed.append(rec)
                    else:
                        self.commit_entry(rec, stages[rec.key])
                        report.built.append(rec)
                    if progress:
                        progress(arch, rec)

    # -- gc ---------------------------------------------------------------------
    def gc(self, keep: Iterable[Manifest], dry_run: bool = False) -> list[str]:
        """Drop entries (and manifest tables) that none of `keep` references. Only validated
        entries are removed: listed in the (schema-checked) index, named by a key, inside the
        store and not a symlink."""
        keep = list(keep)
        names = {m.name for m in keep}
        wanted = {variant_key(v) for m in keep for v in m.variants()}
        # Entries referenced by a kept manifest's committed table stay even if keys moved on.
        for name in names & set(self.manifests):
            for op in self.manifests[name].ops.values():
                for b in op.buckets:
                    wanted.update(b.variants.values())
        drop = sorted(k for k in self.entries if k not in wanted)
        dirs = {k: inside(self.root, entry_dir(self.root, k)) for k in drop}  # all checked before any removal
        if dry_run:
            return drop
        self.manifests = {n: m for n, m in self.manifests.items() if n in names}
        for k in drop:
            del self.entries[k]
        self._write_index()  # index first: readers never see an entry whose files are gone
        for k in drop:
            if dirs[k].exists():
                self._remove(dirs[k])
        return drop


__all__ = ["BuildReport", "LockBusyError", "StoreFormatError", "StoreWriter"]
