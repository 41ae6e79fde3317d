"""Sharded builds: each CI job compiles a deterministic 1/N of the variants; `merge` combines them.

Partition. Variant v is in shard I of N (I = 1..N) iff int(key(v), 16) % N == I - 1. The content
key is a sha256, so the split is near-uniform and depends on nothing but the key: the same in
every process and on every machine with the same toolchain (the key covers it), and a variant
keeps its shard when others are added or removed, so a shard's CI cache stays valid. `--arch`
narrows a job to one arch (the CI matrix is arch x shard).

A shard store is an ordinary store (entries + index.json; `verify` and `open` work on it) whose
index lists no dispatch tables: those refer to keys other shards build. The full tables go to
<store>/shard.json instead ({"format", "shard", "archs", "manifests": {name: table}}), written
under the store lock after the shard's entries are committed.

Merge (`merge_stores`), under OUT's lock, following build/store_writer.py's protocol:
  1. every source store passes `verify_store` (static checks: index, hashes, archs, symbols);
  2. entries present in several sources (or already in OUT) must have identical records, apart
     from the measured compile_seconds; different records for one key are a conflict (error);
     every entry must come from one toolchain (DSL, tvm-ffi, DSL runtime library);
  3. tables (from the sources' indexes and shard.json files) with one name must be identical,
     and every key a table refers to must be among the merged entries (a missing shard is an
     error naming the manifest and how many of its variants are absent);
  4. each new entry is copied into tmp/<key>.<pid>/, its sha256 re-checked, renamed to
     entries/<key>/; the index (entries + tables) is written once, last. A SIGKILL before that
     leaves unlisted entry dirs, which readers ignore and the next writer removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from nvfp4_aot.runtime.store_format import (
    LIB_NAME,
    META_NAME,
    TMP_DIR,
    EntryRecord,
    ManifestTable,
    StoreFormatError,
    entry_dir,
    inside,
    load_index,
    sha256_file,
    write_json_atomic,
)

SHARD_NAME = "shard.json"
SHARD_FORMAT = 1
# Fields of a record that measure the build rather than describe the artifact.
MEASURED_FIELDS = ("compile_seconds",)
TOOLCHAIN_FIELDS = ("dsl_version", "tvm_ffi_version", "dsl_runtime_fingerprint")


class MergeError(RuntimeError):
    """The shards cannot be merged (a shard fails verification, conflicts, a missing shard)."""


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise ValueError(f"expected I/N with 1 <= I <= N (e.g. 2/4), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, key: str) -> bool:
        return int(key, 16) % self.count == self.index - 1


def selector(shard: Shard | None, archs: Iterable[str] | None) -> Callable[[Any, str], bool] | None:
    """The (variant, key) predicate StoreWriter.build takes; None selects everything."""
    archs = set(archs or ())
    if shard is None and not archs:
        return None
    return lambda v, key: (not archs or v.arch in archs) and (shard is None or shard.holds(key))


def write_pending_tables(root: Path, tables: Mapping[str, ManifestTable], shard: Shard | None, archs: Iterable[str] | None) -> None:
    """Record the full dispatch tables of the manifests a shard job built (call under the lock)."""
    path = inside(root, root / SHARD_NAME)
    pending = read_pending(root) if path.exists() else {}
    pending.update(tables)
    doc = {"format": SHARD_FORMAT, "shard": str(shard) if shard else None, "archs": sorted(archs or ()),
           "manifests": {n: t.to_json() for n, t in sorted(pending.items())}}  # fmt: skip
    write_json_atomic(path, doc)


def read_pending(root: Path) -> dict[str, ManifestTable]:
    """The tables of a shard store's shard.json, each validated as the index's tables are."""
    path = inside(root, root / SHARD_NAME)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreFormatError(f"{path}: unreadable: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != SHARD_FORMAT or not isinstance(doc.get("manifests"), dict):
        raise StoreFormatError(f"{path}: not a shard table file of format {SHARD_FORMAT}")
    return {str(n): ManifestTable.from_json(t, f"{path}: manifests.{n}") for n, t in doc["manifests"].items()}


def _identity(rec: EntryRecord) -> dict[str, Any]:
    return {k: v for k, v in rec.to_json().items() if k not in MEASURED_FIELDS}


def _table_keys(table: ManifestTable) -> set[str]:
    return {k for op in table.ops.values() for b in op.buckets for k in b.variants.values()}


@dataclass
class MergeReport:
    added: list[str] = field(default_factory=list)
    present: int = 0
    entries: int = 0
    manifests: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _collect(sources: list[Path]) -> tuple[dict[str, tuple[EntryRecord, Path]], dict[str, tuple[ManifestTable, Path]]]:
    """Verify each source; gather entries and tables, refusing conflicts."""
    from .verify import verify_store

    entries: dict[str, tuple[EntryRecord, Path]] = {}
    tables: dict[str, tuple[ManifestTable, Path]] = {}
    for src in sources:
        rep = verify_store(src)
        if not rep.ok:
            more = f" (and {len(rep.errors) - 3} more)" if len(rep.errors) > 3 else ""
            raise MergeError(f"{src} does not verify: {'; '.join(rep.errors[:3])}{more}")
        index = load_index(src)  # the validated schema: keys recomputed, symbols, digest
        found = dict(index.manifests)
        if (src / SHARD_NAME).exists():
            found.update(read_pending(src))
        for key, rec in index.entries.items():
            if key in entries and _identity(entries[key][0]) != _identity(rec):
                raise MergeError(_conflict(key, entries[key], (rec, src)))
            entries.setdefault(key, (rec, src))
        for name, table in found.items():
            if name in tables and tables[name][0].to_json()["ops"] != table.to_json()["ops"]:
                raise MergeError(f"manifest {name!r}: {tables[name][1]} and {src} hold different dispatch tables (built from different manifests)")
            tables.setdefault(name, (table, src))
    return entries, tables


def _conflict(key: str, a: tuple[EntryRecord, Path], b: tuple[EntryRecord, Path]) -> str:
    x, y = _identity(a[0]), _identity(b[0])
    fields = sorted(f for f in x if x[f] != y[f])
    return f"entry {key}: {a[1]} and {b[1]} hold different records for the same key (fields {', '.join(fields)} differ)"


def _check_toolchain(entries: Mapping[str, tuple[Any, Path]]) -> None:
    seen: dict[tuple, str] = {}
    for key, (rec, src) in sorted(entries.items()):
        seen.setdefault(tuple(rec[f] for f in TOOLCHAIN_FIELDS), f"{src} ({key})")
    if len(seen) > 1:
        (a, wa), (b, wb) = list(seen.items())[:2]
        diff = [f"{f} {x} vs {y}" for f, x, y in zip(TOOLCHAIN_FIELDS, a, b) if x != y]
        raise MergeError(f"the shards were built with different toolchains: {wa} and {wb} differ in {'; '.join(diff)}")


def _copy_entry(src: Path, dst_root: Path, rec: EntryRecord) -> Path:
    """Stage one entry (its two files, nothing else) and re-check the copied library's hash."""
    stage = dst_root / TMP_DIR / f"{rec.key}.{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name in (LIB_NAME, META_NAME):
        shutil.copyfile(inside(src, entry_dir(src, rec.key) / name), stage / name)
    if sha256_file(stage / LIB_NAME) != rec.sha256:
        raise MergeError(f"entry {rec.key}: {src} changed while it was being merged")
    return stage


def merge_stores(sources: list[Path], out: Path, lock_timeout: float = -1, on_wait: Callable[[str], None] | None = None) -> MergeReport:
    from .store_writer import StoreWriter

    t0 = time.perf_counter()
    out_real = out.resolve()
    if any(s.resolve() == out_real for s in sources):
        raise MergeError(f"{out} is both a source and the output; merge into another directory")
    entries, tables = _collect(sources)
    rep = MergeReport()
    with StoreWriter(out, lock_timeout, on_wait=on_wait) as w:
        for key, rec in w.entries.items():  # OUT's own entries take part in the checks
            if key in entries and _identity(entries[key][0]) != _identity(rec):
                raise MergeError(_conflict(key, (rec, out), entries[key]))
        _check_toolchain({**{k: (r, out) for k, r in w.entries.items()}, **entries})
        have = set(w.entries) | set(entries)
        for name, (table, src) in sorted(tables.items()):
            missing = sorted(_table_keys(table) - have)
            if missing:
                raise MergeError(
                    f"manifest {name!r} (from {src}): {len(missing)} of its {len(_table_keys(table))} variants are in "
                    f"none of the given stores (e.g. {missing[0]}): is a shard missing?"
                )
        rep.cleaned = w.clean()
        todo = sorted(k for k in entries if k not in w.entries)
        rep.present = len(entries) - len(todo)
        staged = [(entries[k][0], _copy_entry(entries[k][1], out, entries[k][0])) for k in todo]
        w.commit_entries(staged, {name: table for name, (table, _) in sorted(tables.items())})
        rep.added = todo
        rep.entries = len(w.entries)
        rep.manifests = sorted(tables)
    rep.seconds = round(time.perf_counter() - t0, 3)
    return rep
