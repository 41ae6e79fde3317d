"""The artifact store's on-disk format: the one contract between the builder and the runtime.

    <store>/
      index.json              commit marker, written last (temp + rename) under the lock
      .lock                   file lock held by a writer (build, gc)
      entries/<key>/          one variant, content-addressed; written to tmp/ and renamed
          kernel.so           the linked shared object exporting __tvm_ffi_<symbol>
          meta.json           the entry's record (same as its index record)
      tmp/                    staging for entries being built; safe to delete when unlocked

An entry exists for readers only once index.json lists it; an entry directory that the index
does not list (a build killed after the rename, before the index) is ignored and reported.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

FORMAT_VERSION = 1
# Production switch in the spirit of FLASHINFER_DISABLE_JIT: the runtime never builds, and with
# this set to 1 `nvfp4-build compile` refuses too, so a serving container cannot build by accident.
NO_BUILD_ENV = "NVFP4_AOT_NO_BUILD"
INDEX_NAME = "index.json"
LOCK_NAME = ".lock"
ENTRIES_DIR = "entries"
TMP_DIR = "tmp"
LIB_NAME = "kernel.so"
META_NAME = "meta.json"

# Fields every entry record carries; the runtime refuses a record missing any of them.
ENTRY_FIELDS = (
    "key",
    "family",
    "params",
    "arch",
    "symbol",
    "signature",
    "sha256",
    "size",
    "dsl_version",
    "tvm_ffi_version",
    "dsl_runtime_fingerprint",
    "compile_seconds",
)


class StoreFormatError(RuntimeError):
    """The store on disk is malformed, incomplete or tampered with."""


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


def entry_dir(root: Path, key: str) -> Path:
    return root / ENTRIES_DIR / key


def read_index(root: Path) -> dict[str, Any]:
    """Load and structurally validate index.json (hashes are checked by the caller)."""
    path = root / INDEX_NAME
    if not root.is_dir():
        raise StoreFormatError(f"{root}: no such artifact directory")
    if not path.exists():
        raise StoreFormatError(f"{path}: missing (no completed build has committed to this directory)")
    try:
        index = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreFormatError(f"{path}: unreadable index: {e}") from e
    if not isinstance(index, dict) or index.get("format") != FORMAT_VERSION:
        raise StoreFormatError(
            f"{path}: format {index.get('format') if isinstance(index, dict) else None!r} "
            f"is not {FORMAT_VERSION} (rebuild with this nvfp4-aot version)"
        )
    entries = index.get("entries")
    if not isinstance(entries, dict) or not isinstance(index.get("manifests"), dict):
        raise StoreFormatError(f"{path}: 'entries' and 'manifests' must be objects")
    for key, rec in entries.items():
        missing = [f for f in ENTRY_FIELDS if f not in rec]
        if missing or rec.get("key") != key:
            raise StoreFormatError(f"{path}: entry {key}: malformed record (missing {missing})")
    return index


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


def op_id(family: str, problem: Mapping[str, Any]) -> str:
    """Stable name of an op (what a caller asks for): family plus its problem parameters."""
    return family + "".join(f".{k}={problem[k]}" for k in sorted(problem))


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
