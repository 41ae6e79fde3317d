"""Compile, export and link one variant. Runs in a worker process whose environment pins the
target arch (CUTE_DSL_ARCH) and hides every GPU: the DSL and libraries read the arch at trace
time, not only from --gpu-arch, and a visible GPU of another arch must not leak into the code.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from nvfp4_aot.runtime.store_format import LIB_NAME, META_NAME, EntryRecord, cubin_archs, entry_symbol, sha256_file

from .manifest import Variant

VERSION_SCRIPT = "{ global: __tvm_ffi_*; local: *; };\n"


def worker_env(arch: str) -> dict[str, str]:
    """Environment for a build worker of `arch` (set before cutlass is imported)."""
    # The store is the cache: the DSL's own disk cache (in /tmp) is hidden state we don't key.
    return {"CUTE_DSL_ARCH": arch, "CUDA_VISIBLE_DEVICES": "", "CUTE_DSL_NO_CACHE": "1"}


def init_worker(arch: str, parent: int | None = None) -> None:
    os.environ.update(worker_env(arch))
    if parent is not None:
        die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux prctl PR_SET_PDEATHSIG),
    so that a build whose parent alone is killed leaves no worker writing into tmp/ (the next
    build clears tmp/ under the lock). Elsewhere a no-op: workers then end when the pool's pipe
    closes, after their current variant."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class LinkError(RuntimeError):
    pass


def link_libraries() -> list[str]:
    """Linker arguments: the DSL's static CUDA-dialect runtime inside, tvm_ffi, the DSL runtime
    and libcudart.so.13 as NEEDED (the serving process provides them, see runtime.native)."""
    import tvm_ffi

    from nvfp4_aot.runtime import native

    dsl_lib = native.find_dsl_runtime()
    static = dsl_lib.parent / "libcuda_dialect_runtime_static.a"
    cudart = None
    for root in sys.path:
        hits = glob.glob(os.path.join(root, "nvidia", "cu13", "lib", "libcudart.so.13"))
        if hits:
            cudart = Path(hits[0])
            break
    if cudart is None:
        raise LinkError("libcudart.so.13 not found: install the build extra (nvidia-cuda-runtime==13.0.*)")
    tvm_lib = Path(tvm_ffi.libinfo.find_libtvm_ffi())
    return [
        "-Wl,--whole-archive", str(static), "-Wl,--no-whole-archive",
        f"-L{tvm_lib.parent}", "-ltvm_ffi",
        f"-L{dsl_lib.parent}", "-lcute_dsl_runtime",
        f"-L{cudart.parent}", "-l:libcudart.so.13",
    ]  # fmt: skip


def link(obj: Path, out: Path) -> None:
    cc = os.environ.get("CC", "gcc")
    with tempfile.NamedTemporaryFile("w", suffix=".map", delete=False) as vs:
        vs.write(VERSION_SCRIPT)
    try:
        cmd = [cc, "-shared", "-o", str(out), str(obj), f"-Wl,--version-script={vs.name}", *link_libraries()]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise LinkError(f"link failed ({' '.join(cmd)}):\n{r.stderr}")
    finally:
        os.unlink(vs.name)


def _check_loads(lib: Path, symbol: str) -> None:
    """Load the linked .so through tvm_ffi, as the runtime will (no GPU needed): catches
    unresolved symbols and a missing export before the entry is committed."""
    import tvm_ffi

    from nvfp4_aot.runtime import native

    native.preload()
    try:
        tvm_ffi.load_module(str(lib))[symbol]
    except Exception as e:
        raise LinkError(f"{lib}: tvm_ffi cannot load {symbol}: {e}") from e


@dataclass(frozen=True)
class BuildFailure:
    key: str
    error: str
    trace: str


def build_variant(v: Variant, key: str, stage: str) -> EntryRecord | BuildFailure:
    """Build variant `v` (content key `key`) into `stage` (kernel.so + meta.json). Returns its
    entry record, or a BuildFailure so that one bad variant does not take the pool down."""
    try:
        return _build(v, key, Path(stage))
    except Exception as e:  # reported per variant by the parent
        return BuildFailure(key, f"{type(e).__name__}: {e}", traceback.format_exc())


def _build(v: Variant, key: str, stage: Path) -> EntryRecord:
    from nvfp4_aot.kernels import get_family

    from .keys import key_material

    arch = v.arch
    if os.environ.get("CUTE_DSL_ARCH") != arch:
        raise RuntimeError(f"worker for {arch} runs with CUTE_DSL_ARCH={os.environ.get('CUTE_DSL_ARCH')}")
    t0 = time.perf_counter()
    import cutlass.cute as cute

    fam = get_family(v.family)
    params = fam.parse_params(v.params)
    reasons = fam.can_implement(params, arch)
    if reasons:
        raise ValueError("; ".join(reasons))
    material = key_material(v)
    fn, fake_args = fam.compile_args(params, arch)
    compiled = cute.compile(fn, *fake_args, options=material["options"])
    stage.mkdir(parents=True, exist_ok=True)
    symbol = entry_symbol(fam.name, key)
    obj = stage / "kernel.o"
    compiled.export_to_c(str(obj), function_name=symbol)
    lib = stage / LIB_NAME
    link(obj, lib)
    obj.unlink()
    data = lib.read_bytes()
    if f"__tvm_ffi_{symbol}\0".encode() not in data:
        raise LinkError(f"{lib}: exported symbol __tvm_ffi_{symbol} missing after link")
    embedded = cubin_archs(data)
    if embedded != {arch}:
        raise LinkError(f"{lib}: embedded GPU code is {sorted(embedded)}, expected {arch}")
    _check_loads(lib, symbol)
    # The one record type, validated here as every reader validates it (its key must be the
    # one its fields give, so a mismatch between keys.py and the record fails the build).
    record = EntryRecord.from_json({
        **material,
        "key": key,
        "symbol": symbol,
        "signature": fam.signature(params).to_json(),
        "sha256": sha256_file(lib),
        "size": len(data),
        "compile_seconds": round(time.perf_counter() - t0, 3),
    }, f"variant {key}")  # fmt: skip
    (stage / META_NAME).write_text(json.dumps(record.to_json(), indent=1, sort_keys=True))
    return record


def discard(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
