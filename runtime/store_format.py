"""The artifact store's on-disk format: the one contract between the builder and the runtime.

    <store>/
      index.json              commit marker, written last (temp + rename) under the lock
      .lock                   file lock held by a writer (build, gc)
      entries/<key>/          one variant, content-addressed; written to tmp/ and renamed
          kernel.so           the linked shared object exporting __tvm_ffi_<symbol>
          meta.json           the entry's record (identical to its index record)
      tmp/                    staging for entries being built; safe to delete when unlocked
      shard.json              optional: a shard store's full dispatch tables (build/shard.py)
      nvfp4_aot_store.json    optional: package metadata of an unpacked store tarball
                              (runtime/installed.py; a wheel keeps it in its dist-info)

Commit rule: an entry exists for readers only once index.json lists it; an entry directory
that the index does not list (a build killed after the rename, before the index) is ignored
and reported. index.json is rewritten whole (temp + fsync + rename) after each entry and after
each manifest table, and it carries the store digest computed over exactly what it lists, so
the digest is always written last, in the same atomic rename as the records it covers.

index.json (format 2) = {"format": 2, "entries": {key: EntryRecord}, "manifests": {name:
ManifestTable}, "digest": store digest}. Every field is typed and checked on read
(`StoreIndex.from_json`); an unknown field is an error (a later format adds fields by bumping
FORMAT_VERSION). A malformed index raises StoreFormatError naming the file and the field.

Trust model. Each entry is bound to its content: its key is recomputed from the record's own
fields (family, params, arch, compile options, toolchain versions, the family's source digest;
`EntryRecord.expected_key`), the exported symbol names the whole key
(`nvfp4aot_<family>_<key>`), the .so's sha256 and size are recorded, meta.json must equal the
index record, and a manifest table may only point at entries of its family, problem and arch.
Relabelling a record, swapping two entries' files or editing a table is therefore refused;
redirecting an op requires rebuilding an artifact. The store digest (`store_digest`) is one
value over every record and table, for a CI cache or a container to compare stores. All of
this detects corruption and mix-ups, not a deliberate attacker who can rewrite every file
(he can recompute hashes and the digest); that would need a signature over the digest by a
key the reader trusts. Paths: keys are exactly 32 lowercase hex digits, every path derived
from the index is resolved and must stay inside the store, and symlinks inside a store
(entries/, tmp/, entry dirs and their files) are refused; the store root itself may be
reached through a link.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .signature import DTYPES  # noqa: F401  (the tensor dtypes a signature may name: one set, the contract's)

FORMAT_VERSION = 2
# Production switch in the spirit of FLASHINFER_DISABLE_JIT: the runtime never builds, and with
# this set to 1 `nvfp4-build compile` refuses too, so a serving container cannot build by accident.
NO_BUILD_ENV = "NVFP4_AOT_NO_BUILD"
INDEX_NAME = "index.json"
LOCK_NAME = ".lock"
ENTRIES_DIR = "entries"
TMP_DIR = "tmp"
LIB_NAME = "kernel.so"
META_NAME = "meta.json"

KEY_LEN = 32  # hex digits of a content key (128 bits of sha256)
KEY_RE = re.compile(r"[0-9a-f]{32}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
ARCH_RE = re.compile(r"^sm_\d{2,3}a$")
FAMILY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# The record fields a content key is computed from (with FORMAT_VERSION).
KEY_FIELDS = ("family", "params", "arch", "options", "source", "dsl_version", "tvm_ffi_version", "dsl_runtime_fingerprint")


class StoreFormatError(RuntimeError):
    """The store on disk is malformed, incomplete or tampered with."""


class TamperedArtifactError(StoreFormatError):
    """A file's content differs from what the index recorded."""


def sha256_file(path: os.PathLike | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def arch_of_capability(major: int, minor: int) -> str:
    """The arch-specific ("a") target that runs on a device of this compute capability."""
    return f"sm_{major}{minor}a"


def is_key(key: Any) -> bool:
    return isinstance(key, str) and KEY_RE.fullmatch(key) is not None


def content_key(material: Mapping[str, Any]) -> str:
    """The content key of a variant from its KEY_FIELDS values (build/keys.py supplies them)."""
    return hashlib.sha256(canonical_json({"format": FORMAT_VERSION, **material}).encode()).hexdigest()[:KEY_LEN]


def entry_symbol(family: str, key: str) -> str:
    """The function an entry's kernel.so exports (as __tvm_ffi_<symbol>): it names the whole key,
    so a module loaded for one record cannot serve another, and no two loaded modules collide."""
    return f"nvfp4aot_{family}_{key}"


def op_id(family: str, problem: Mapping[str, Any]) -> str:
    """Stable name of an op (what a caller asks for): family plus its problem parameters."""
    return family + "".join(f".{k}={problem[k]}" for k in sorted(problem))


# ----------------------------------------------------------------------------- schema


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _fail(where: str, msg: str) -> None:
    raise StoreFormatError(f"{where}: {msg}")


def _obj(v: Any, where: str, fields: frozenset[str] | None = None) -> dict:
    if not isinstance(v, dict):
        _fail(where, f"must be an object, got {_short(v)}")
    if fields is not None:
        unknown = sorted(set(v) - fields, key=str)
        if unknown:
            _fail(f"{where}.{unknown[0]}", f"unknown field (format {FORMAT_VERSION} has {sorted(fields)})")
        missing = sorted(fields - set(v))
        if missing:
            _fail(f"{where}.{missing[0]}", "missing")
    return v


def _str(v: Any, where: str, pattern: re.Pattern | None = None, what: str = "a string") -> str:
    if not isinstance(v, str) or not v or len(v) > 4096 or (pattern is not None and not pattern.fullmatch(v)):
        _fail(where, f"must be {what}, got {_short(v)}")
    return v


def _int(v: Any, where: str, lo: int = 0) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v >= 1 << 63:
        _fail(where, f"must be an integer >= {lo}, got {_short(v)}")
    return v




def _scalars(v: Any, where: str) -> dict[str, Any]:
    """A params / problem table: identifier -> string, integer, boolean or finite float."""
    for k, x in _obj(v, where).items():
        _str(k, where, NAME_RE, "an object with identifier keys")
        ok = isinstance(x, (str, bool)) or (isinstance(x, int) and abs(x) < 1 << 63) or (isinstance(x, float) and math.isfinite(x))
        if not ok or (isinstance(x, str) and len(x) > 256):
            _fail(f"{where}.{k}", f"must be a string, integer, boolean or finite number, got {_short(x)}")
    return dict(v)


def _signature(v: Any, where: str) -> dict[str, Any]:
    """A kernel signature, validated by its one validator (runtime/signature.py
    Signature.from_json: field types, whitelisted shape expressions, every dim a non-negative
    integer at M = 1)."""
    from .signature import Signature, SignatureError

    try:
        Signature.from_json(v, where)
    except SignatureError as e:
        raise StoreFormatError(str(e)) from None
    return v


@dataclass(frozen=True)
class EntryRecord:
    """One entry of the store: index.json's entries[key] and the entry's meta.json."""

    key: str
    family: str
    params: Mapping[str, Any]
    arch: str
    symbol: str
    signature: Mapping[str, Any]
    sha256: str
    size: int
    options: str
    source: str  # sha256 of the family's source closure (build/keys.py)
    dsl_version: str
    tvm_ffi_version: str
    dsl_runtime_fingerprint: str
    compile_seconds: float

    def __getitem__(self, name: str) -> Any:  # record["params"] reads as before
        if name not in ENTRY_FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in ENTRY_FIELDS}

    def expected_key(self) -> str:
        return content_key({f: getattr(self, f) for f in KEY_FIELDS})

    @classmethod
    def from_json(cls, d: Any, where: str = "record") -> "EntryRecord":
        """Check every field's type and format, then that the key is the one its own fields
        give and that the symbol names it: a record cannot be relabelled."""
        _obj(d, where, _ENTRY_SET)
        hexkey = f"{KEY_LEN} lowercase hex digits"
        key = _str(d["key"], f"{where}.key", KEY_RE, hexkey)
        family = _str(d["family"], f"{where}.family", FAMILY_RE, "a family name")
        arch = _str(d["arch"], f"{where}.arch", ARCH_RE, "an arch like 'sm_90a'")
        secs = d["compile_seconds"]
        if not isinstance(secs, (int, float)) or isinstance(secs, bool) or not 0 <= secs < 1e9:
            _fail(f"{where}.compile_seconds", f"must be a non-negative number, got {_short(secs)}")
        rec = cls(
            key=key,
            family=family,
            params=_scalars(d["params"], f"{where}.params"),
            arch=arch,
            symbol=_str(d["symbol"], f"{where}.symbol"),
            signature=_signature(d["signature"], f"{where}.signature"),
            sha256=_str(d["sha256"], f"{where}.sha256", SHA256_RE, "64 lowercase hex digits"),
            size=_int(d["size"], f"{where}.size", 1),
            options=_str(d["options"], f"{where}.options"),
            source=_str(d["source"], f"{where}.source", SHA256_RE, "64 lowercase hex digits"),
            dsl_version=_str(d["dsl_version"], f"{where}.dsl_version"),
            tvm_ffi_version=_str(d["tvm_ffi_version"], f"{where}.tvm_ffi_version"),
            dsl_runtime_fingerprint=_str(d["dsl_runtime_fingerprint"], f"{where}.dsl_runtime_fingerprint"),
            compile_seconds=secs,
        )
        if rec.symbol != entry_symbol(family, key):
            _fail(f"{where}.symbol", f"is {_short(rec.symbol)}, must be {entry_symbol(family, key)!r} (it names the key)")
        if rec.expected_key() != key:
            _fail(f"{where}.key", f"does not match the record's own fields (they give {rec.expected_key()}): "
                  "the record was relabelled or corrupted")  # fmt: skip
        return rec


ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(EntryRecord))
_ENTRY_SET = frozenset(ENTRY_FIELDS)


@dataclass(frozen=True)
class BucketRow:
    lo: int
    hi: int
    params: Mapping[str, Any]
    variants: Mapping[str, str]  # arch -> entry key

    def to_json(self) -> dict[str, Any]:
        return {"m": [self.lo, self.hi], "params": dict(self.params), "variants": dict(self.variants)}


@dataclass(frozen=True)
class OpTable:
    family: str
    problem: Mapping[str, Any]
    buckets: tuple[BucketRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "problem": dict(self.problem), "buckets": [b.to_json() for b in self.buckets]}

    @classmethod
    def from_json(cls, d: Any, where: str) -> "OpTable":
        _obj(d, where, frozenset({"family", "problem", "buckets"}))
        family = _str(d["family"], f"{where}.family", FAMILY_RE, "a family name")
        problem = _scalars(d["problem"], f"{where}.problem")
        raw = d["buckets"]
        if not isinstance(raw, list) or not raw:
            _fail(f"{where}.buckets", f"must be a non-empty list, got {_short(raw)}")
        rows, expect = [], 1
        for i, b in enumerate(raw):
            w = f"{where}.buckets[{i}]"
            _obj(b, w, frozenset({"m", "params", "variants"}))
            m = b["m"]
            if not (isinstance(m, list) and len(m) == 2):
                _fail(f"{w}.m", f"must be [lo, hi], got {_short(m)}")
            lo, hi = _int(m[0], f"{w}.m[0]", 1), _int(m[1], f"{w}.m[1]", 1)
            if lo != expect or hi < lo:
                _fail(f"{w}.m", f"buckets must be contiguous from M=1 (expected lo={expect} <= hi), got {m}")
            expect = hi + 1
            params = _scalars(b["params"], f"{w}.params")
            if any(params.get(k, object()) != v for k, v in problem.items()):
                _fail(f"{w}.params", "disagree with the op's problem")
            variants = _obj(b["variants"], f"{w}.variants")
            if not variants:
                _fail(f"{w}.variants", "must name at least one arch")
            for arch, key in variants.items():
                _str(arch, f"{w}.variants", ARCH_RE, "an object with arch keys like 'sm_90a'")
                _str(key, f"{w}.variants.{arch}", KEY_RE, f"an entry key ({KEY_LEN} lowercase hex digits)")
            rows.append(BucketRow(lo, hi, params, dict(variants)))
        return cls(family, problem, tuple(rows))


@dataclass(frozen=True)
class ManifestTable:
    """A manifest's dispatch table: op name -> family, problem and M buckets."""

    path: str  # where the manifest was read from (informational; not in the digest)
    ops: Mapping[str, OpTable]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "ops": {n: o.to_json() for n, o in self.ops.items()}}

    @classmethod
    def from_json(cls, d: Any, where: str) -> "ManifestTable":
        _obj(d, where, frozenset({"path", "ops"}))
        path = _str(d["path"], f"{where}.path")
        ops = {}
        for name, op in _obj(d["ops"], f"{where}.ops").items():
            ops[name] = t = OpTable.from_json(op, f"{where}.ops.{name}")
            if name != op_id(t.family, t.problem):
                _fail(f"{where}.ops.{name}", f"name does not match its family and problem ({op_id(t.family, t.problem)})")
        return cls(path, ops)


def op_conflicts(manifests: Mapping[str, ManifestTable], arch: str) -> list[tuple[str, str, str]]:
    """(op, first manifest, other manifest) for every op that two manifests of one store define with
    different buckets on `arch` (ranges or entries). Such a store opens only with manifest=...: the
    runtime refuses to guess (runtime/store.py), and the builder warns when it writes one (build/cli.py).
    Manifests are visited in name order; an op not built for `arch` by a manifest is not compared."""
    seen: dict[str, tuple[str, list]] = {}
    out = []
    for mname, m in sorted(manifests.items()):
        for name, t in m.ops.items():
            rows = [(b.lo, b.hi, b.variants.get(arch)) for b in t.buckets]
            if any(key is None for *_, key in rows):
                continue
            if name in seen and seen[name][1] != rows:
                out.append((name, seen[name][0], mname))
            seen.setdefault(name, (mname, rows))
    return out


INDEX_FIELDS = frozenset({"format", "entries", "manifests", "digest"})


def _digest(entries: Mapping[str, EntryRecord], manifests: Mapping[str, ManifestTable]) -> str:
    return json_digest({k: r.to_json() for k, r in entries.items()}, {n: m.to_json() for n, m in manifests.items()})


def json_digest(entries: Mapping[str, Any], manifests: Mapping[str, Any]) -> str:
    """The store digest of index.json's entries and manifests (as JSON): sha256 over the sorted
    records less compile_seconds (a timing) and the tables less each manifest's path on the
    build machine, so equal for stores that dispatch to the same files."""
    body = {
        "format": FORMAT_VERSION,
        "entries": {k: {f: v for f, v in r.items() if f != "compile_seconds"} for k, r in entries.items()},
        "manifests": {n: m["ops"] for n, m in manifests.items()},
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


@dataclass(frozen=True)
class StoreIndex:
    entries: Mapping[str, EntryRecord]
    manifests: Mapping[str, ManifestTable]
    digest: str

    @classmethod
    def build(cls, entries: Mapping[str, EntryRecord], manifests: Mapping[str, ManifestTable], where: str = INDEX_NAME) -> "StoreIndex":
        """An index over these records and tables (cross-checked), with its digest."""
        for name, m in manifests.items():
            for op_name, op in m.ops.items():
                for i, b in enumerate(op.buckets):
                    for arch, key in b.variants.items():
                        w = f"{where}: manifests.{name}.ops.{op_name}.buckets[{i}].variants.{arch}"
                        rec = entries.get(key)
                        if rec is None:
                            raise StoreFormatError(f"{w}: entry {key} is not in the index")
                        if (rec.family, rec.arch, dict(rec.params)) != (op.family, arch, dict(b.params)):
                            raise StoreFormatError(f"{w}: entry {key} is {rec.family} {rec.arch} {rec.params}, "
                                                   "not this op's family, arch and params")  # fmt: skip
        return cls(dict(entries), dict(manifests), _digest(entries, manifests))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "entries": {k: r.to_json() for k, r in self.entries.items()},
            "manifests": {n: m.to_json() for n, m in self.manifests.items()},
            "digest": self.digest,
        }

    @classmethod
    def from_json(cls, obj: Any, where: str = INDEX_NAME) -> "StoreIndex":
        fmt = obj.get("format") if isinstance(obj, dict) else None
        if fmt != FORMAT_VERSION:
            _fail(where, f"format {_short(fmt)} is not {FORMAT_VERSION} (rebuild with this nvfp4-aot version)")
        _obj(obj, where, INDEX_FIELDS)
        entries = {}
        for key, rec in _obj(obj["entries"], f"{where}: entries").items():
            if not is_key(key):
                _fail(f"{where}: entries", f"{_short(key)} is not an entry key ({KEY_LEN} lowercase hex digits)")
            entries[key] = r = EntryRecord.from_json(rec, f"{where}: entries.{key}")
            if r.key != key:
                _fail(f"{where}: entries.{key}.key", f"is {r.key}, not the key it is listed under")
        manifests = {}
        for name, m in _obj(obj["manifests"], f"{where}: manifests").items():
            _str(name, f"{where}: manifests", None, "an object with manifest-name keys")
            manifests[name] = ManifestTable.from_json(m, f"{where}: manifests.{name}")
        index = cls.build(entries, manifests, where)
        if obj["digest"] != index.digest:
            _fail(f"{where}: digest", f"is {_short(obj['digest'])}, the records give {index.digest} (edited or corrupt index)")
        return index


# ----------------------------------------------------------------------------- files


def entry_dir(root: Path, key: str) -> Path:
    if not is_key(key):
        raise StoreFormatError(f"{root}: {_short(key)} is not an entry key ({KEY_LEN} lowercase hex digits)")
    return Path(root) / ENTRIES_DIR / key


def inside(root: Path, path: Path) -> Path:
    """`path` if no component of it below `root` is a symlink and it resolves inside `root`
    (every path the store derives from data goes through here before it is read or removed)."""
    root = Path(root)
    p = root
    for part in Path(path).relative_to(root).parts:
        p = p / part
        if p.is_symlink():
            raise StoreFormatError(f"{p}: symlinks are refused inside a store")
    if not Path(path).resolve().is_relative_to(root.resolve()):
        raise StoreFormatError(f"{path}: resolves outside the store {root}")
    return Path(path)


def load_index(root: Path | str) -> StoreIndex:
    """Read and validate index.json (schema, keys, symbols, tables, digest); file hashes are
    checked by `check_entry`."""
    root = Path(root)
    path = root / INDEX_NAME
    if not root.is_dir():
        raise StoreFormatError(f"{root}: no such artifact directory")
    if not path.exists() and not path.is_symlink():
        raise StoreFormatError(f"{path}: missing (no completed build has committed to this directory)")
    inside(root, path)
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise StoreFormatError(f"{path}: unreadable index: {e}") from e
    return StoreIndex.from_json(obj, str(path))


def read_index(root: Path | str) -> dict[str, Any]:
    """The validated index as plain JSON (see `load_index` for the typed one)."""
    return load_index(root).to_json()


def store_digest(root: Path | str) -> str:
    """The store digest recorded in (and re-derived from) a valid index: one value that names
    every record and dispatch table, hence, through the records' sha256, every file. It does
    not re-hash the files: run `nvfp4-build verify` (or open the store) for that."""
    return load_index(root).digest


def check_entry(root: Path, rec: EntryRecord) -> bytes:
    """Check an entry's files against its record and return kernel.so's bytes: no symlinks, size
    and sha256, meta.json equal to the record, the exported symbol, the embedded GPU arch."""
    d = entry_dir(root, rec.key)
    lib, meta = inside(root, d / LIB_NAME), inside(root, d / META_NAME)
    if not lib.is_file():
        raise TamperedArtifactError(f"{lib}: listed in the index but missing")
    data = lib.read_bytes()
    if len(data) != rec.size or hashlib.sha256(data).hexdigest() != rec.sha256:
        raise TamperedArtifactError(
            f"{lib}: sha256 does not match the index (corrupt or tampered); rebuild with "
            f"`nvfp4-build compile` or restore the artifact directory"
        )
    try:
        meta_obj = json.loads(meta.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise TamperedArtifactError(f"{meta}: unreadable: {e}") from e
    if meta_obj != rec.to_json():
        raise TamperedArtifactError(f"{meta}: disagrees with the index record (entries mixed up or edited)")
    if f"__tvm_ffi_{rec.symbol}\0".encode() not in data:
        raise TamperedArtifactError(f"{lib}: does not export __tvm_ffi_{rec.symbol}: it is not the artifact its record describes")
    archs = cubin_archs(data)
    if archs != {rec.arch}:
        raise TamperedArtifactError(f"{lib}: recorded arch {rec.arch} but the embedded GPU code is {sorted(archs)}")
    return data


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so that readers see either the old file or the complete new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def embedded_cubins(data: bytes) -> list[tuple[str, bytes]]:
    """(arch, image) of each CUDA ELF image (EM_CUDA = 190) embedded in a linked kernel .so.

    The cubin's e_flags carry the SM number: bits 8..15 from ELF ABI version 8 on (CUDA 12.8+
    cubins), bits 0..7 before. "a" is appended because this project builds only arch-specific
    targets; the number is what decides whether the device can run it. An image ends with its
    section headers and sections, which is how it is cut out for nvdisasm / cuobjdump.
    """
    import struct

    found = []
    start = 1  # offset 0 is the host .so itself
    while (off := data.find(b"\x7fELF", start)) != -1:
        start = off + 4
        if off + 64 > len(data) or data[off + 4] != 2:  # only 64-bit ELF headers
            continue
        (machine,) = struct.unpack_from("<H", data, off + 18)
        if machine != 190:
            continue
        (flags,) = struct.unpack_from("<I", data, off + 48)
        sm = (flags >> 8) & 0xFF if data[off + 8] >= 8 else flags & 0xFF
        (phoff, shoff) = struct.unpack_from("<QQ", data, off + 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, off + 54)
        end = max(shoff + shentsize * shnum, phoff + phentsize * phnum)
        for i in range(shnum):  # sections may lie after the header table
            sh = off + shoff + i * shentsize
            if sh + 64 <= len(data):
                (sh_type,) = struct.unpack_from("<I", data, sh + 4)
                sh_offset, sh_size = struct.unpack_from("<QQ", data, sh + 24)
                if sh_type != 8:  # SHT_NOBITS occupies no file bytes
                    end = max(end, sh_offset + sh_size)
        found.append((f"sm_{sm}a", data[off : off + end]))
    return found


def cubin_archs(data: bytes) -> set[str]:
    return {arch for arch, _ in embedded_cubins(data)}


def cubin_registers(image: bytes) -> dict[str, int]:
    """Registers per thread of each kernel in one cubin image (embedded_cubins), by kernel name:
    the EIATTR_REGCOUNT attributes (0x2f; value = symbol index, count) of its .nv.info sections,
    whose entries are (format, attribute) then a value by format: 1 none, 2 / 3 two bytes, 4 a
    16-bit size and that many bytes. What ptxas allotted decides how many CTAs share an SM."""
    import struct

    shoff, = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", image, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + i * shentsize) for i in range(shnum)]

    def name(table: int, at: int) -> str:
        start = secs[table][4] + at
        return image[start : image.index(b"\0", start)].decode()

    symtab = next((s for s in secs if s[1] == 2), None)  # SHT_SYMTAB: (name, info, other, shndx, value, size)
    regs = {}
    for sec in secs:
        if not name(shstrndx, sec[0]).startswith(".nv.info"):
            continue
        p, end = sec[4], sec[4] + sec[5]
        while p + 2 <= end:
            fmt, attr = image[p], image[p + 1]
            if fmt == 4:
                (size,) = struct.unpack_from("<H", image, p + 2)
                if attr == 0x2F and symtab is not None:
                    sym, count = struct.unpack_from("<II", image, p + 4)
                    regs[name(symtab[6], struct.unpack_from("<I", image, symtab[4] + sym * symtab[9])[0])] = count
                p += 4 + size
            elif fmt in (2, 3):
                p += 4
            elif fmt == 1:
                p += 2
            else:
                break
    return regs
