"""`nvfp4-build pack`: a verified store as an installable wheel or a plain tarball, reproducibly.

Wheel `nvfp4-aot-store-NAME` (see nvfp4_aot.runtime.installed for the layout the runtime reads):
    nvfp4_aot_store_<NAME>/__init__.py          STORE = the folder below (no other code)
    nvfp4_aot_store_<NAME>/store/index.json     the store: index + every listed entry's two files
    nvfp4_aot_store_<NAME>/store/entries/<key>/{kernel.so,meta.json}
    <dist>-<V>.dist-info/{METADATA,WHEEL,entry_points.txt,nvfp4_aot_store.json,RECORD}
Tarball `nvfp4-aot-store-NAME-V.tar.gz`: NAME/ = the store + nvfp4_aot_store.json.

Reproducible: members sorted, every timestamp 1980-01-01 (zip) / 0 (tar, gzip header), modes
0644/0755, owner 0, fixed compression level; nothing from the packing machine (paths, time,
user) enters the bytes. The same store gives the same bytes for the same zlib. The wheel's
platform tag comes from the kernels' host ELF machine, not from the packing machine.

Only the entries the index lists are packed (never tmp/, locks or unlisted dirs), and only a
store that passes `verify` and holds at least one dispatch table (a shard store needs `merge`).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import re
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from nvfp4_aot.runtime.installed import (
    DIST_PREFIX,
    ENTRY_POINT_GROUP,
    NAME_RE,
    PACKAGE_META,
    STORE_SUBDIR,
    module_name,
)
from nvfp4_aot.runtime.store_format import (
    ENTRIES_DIR,
    FORMAT_VERSION,
    INDEX_NAME,
    LIB_NAME,
    META_NAME,
    canonical_json,
    entry_dir,
    read_index,
)

from .keys import cache_key

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
LEVEL = 6
# PEP 440 public version with an optional local label (what pip accepts for a private index).
VERSION_RE = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9]+(\.[a-z0-9]+)*)?")
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


class PackError(RuntimeError):
    pass


@dataclass
class Packed:
    path: Path
    name: str
    version: str
    store_digest: str
    cache_key: str
    files: int
    bytes: int


def _store_files(root: Path, index: dict[str, Any]) -> list[tuple[str, bytes]]:
    files = [(INDEX_NAME, (root / INDEX_NAME).read_bytes())]
    for key in sorted(index["entries"]):
        for name in (LIB_NAME, META_NAME):
            files.append((f"{ENTRIES_DIR}/{key}/{name}", (entry_dir(root, key) / name).read_bytes()))
    return files


def _platform(files: list[tuple[str, bytes]]) -> str:
    lib = next(data for path, data in files if path.endswith(LIB_NAME))
    (machine,) = struct.unpack_from("<H", lib, 18)
    if lib[:4] != b"\x7fELF" or machine not in ELF_MACHINES:
        raise PackError(f"cannot tell the host platform of the kernels (ELF machine {machine})")
    return f"linux_{ELF_MACHINES[machine]}"


def package_meta(name: str, version: str, index: dict[str, Any]) -> dict[str, Any]:
    recs = list(index["entries"].values())
    table_keys = {k for m in index["manifests"].values() for op in m["ops"].values() for b in op["buckets"] for k in b["variants"].values()}
    return {
        "name": name,
        "version": version,
        "store_digest": index["digest"],  # validated against the records by read_index
        "cache_key": cache_key(table_keys),  # = `nvfp4-build cache-key` of the store's manifests
        "format": FORMAT_VERSION,
        "archs": sorted({r["arch"] for r in recs}),
        "entries": len(recs),
        "manifests": sorted(index["manifests"]),
        "dsl_version": sorted({r["dsl_version"] for r in recs}),
        "tvm_ffi_version": sorted({r["tvm_ffi_version"] for r in recs}),
        "nvfp4_aot_version": dist_version("nvfp4-aot"),
    }


def pack(store: Path, name: str, out_dir: Path, version: str | None = None, fmt: str = "wheel") -> Packed:
    from .verify import verify_store

    if not NAME_RE.fullmatch(name):
        raise PackError(f"--name {name!r}: use lowercase letters, digits and inner hyphens (e.g. dsv4-ep8)")
    rep = verify_store(store)
    if not rep.ok:
        more = f" (and {len(rep.errors) - 3} more)" if len(rep.errors) > 3 else ""
        raise PackError(f"{store} does not verify, refusing to pack it: {'; '.join(rep.errors[:3])}{more}")
    index = read_index(store)
    if not index["manifests"]:
        raise PackError(f"{store} has no dispatch tables (a shard store?): `nvfp4-build merge` the shards first")
    digest = index["digest"]
    version = version or f"0+d{digest[:12]}"  # content-derived by default: a new store, a new version
    if not VERSION_RE.fullmatch(version):
        raise PackError(f"--version {version!r} is not a PEP 440 version (e.g. 1.2.0 or 1.2.0+cu13)")
    files = _store_files(store, index)
    meta = package_meta(name, version, index)
    meta_json = (canonical_json(meta) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "wheel":
        path, data = _wheel(name, version, files, meta, meta_json, out_dir)
    elif fmt == "tar":
        path, data = out_dir / f"{DIST_PREFIX}{name}-{version}.tar.gz", _tarball(name, files, meta_json)
    else:
        raise PackError(f"--format {fmt!r}: wheel or tar")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return Packed(path, name, version, digest, meta["cache_key"], len(files), len(data))


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel(name: str, version: str, files, meta: dict[str, Any], meta_json: bytes, out_dir: Path) -> tuple[Path, bytes]:
    pkg = module_name(name)
    dist = f"{pkg}-{version}"
    tag = f"py3-none-{_platform(files)}"
    info = f"{dist}.dist-info"
    init = (
        f'"""Artifact store {name!r} for nvfp4-aot (written by `nvfp4-build pack`; no code runs here).\n\n'
        f'    nvfp4_aot.runtime.open({name!r})   # or NVFP4_AOT_ARTIFACTS={name}\n"""\n\n'
        f"from pathlib import Path\n\nSTORE = Path(__file__).with_name({STORE_SUBDIR!r})\n"
    )
    metadata = "\n".join([
        "Metadata-Version: 2.1",
        f"Name: {DIST_PREFIX}{name}",
        f"Version: {version}",
        f"Summary: nvfp4-aot artifact store {name}: {meta['entries']} kernels for {', '.join(meta['archs'])}",
        "Requires-Python: >=3.10",
        "Requires-Dist: nvfp4-aot",
        *(f"Requires-Dist: apache-tvm-ffi=={v}" for v in meta["tvm_ffi_version"]),
        "Description-Content-Type: text/plain",
        "",
        f"store digest: {meta['store_digest']}\ncache-key: {meta['cache_key']}\n"
        f"manifests: {', '.join(meta['manifests'])}\nbuilt with nvidia-cutlass-dsl {', '.join(meta['dsl_version'])}\n",
    ])  # fmt: skip
    members = [(f"{pkg}/__init__.py", init.encode())]
    members += [(f"{pkg}/{STORE_SUBDIR}/{p}", d) for p, d in files]
    members += [
        (f"{info}/METADATA", metadata.encode()),
        (f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: nvfp4-build pack\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()),
        (f"{info}/entry_points.txt", f"[{ENTRY_POINT_GROUP}]\n{name} = {pkg}\n".encode()),
        (f"{info}/{PACKAGE_META}", meta_json),
    ]
    members.sort(key=lambda m: (m[0].startswith(info), m[0]))  # package first, dist-info after
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in members) + f"{info}/RECORD,,\n"
    members.append((f"{info}/RECORD", record.encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, data in members:
            zi = zipfile.ZipInfo(path, ZIP_EPOCH)
            zi.create_system = 3  # unix: the mode below is meaningful
            zi.external_attr = (0o100644 & 0xFFFF) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data, compresslevel=LEVEL)
    return out_dir / f"{dist}-{tag}.whl", buf.getvalue()


def _tarball(name: str, files, meta_json: bytes) -> bytes:
    members = sorted([(p, d) for p, d in files] + [(PACKAGE_META, meta_json)])
    dirs = sorted({"/".join(p.split("/")[:i]) for p, _ in members for i in range(1, p.count("/") + 1)})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        for path, data in [(d, None) for d in ["", *dirs]] + members:
            ti = tarfile.TarInfo(f"{name}/{path}".rstrip("/"))
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.mode, ti.size = 0o644, len(data)
                t.addfile(ti, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=LEVEL) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()
