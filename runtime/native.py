"""Native libraries an exported kernel needs, found and loaded without importing cutlass.

A kernel .so links against libtvm_ffi (loaded by `import tvm_ffi`), libcute_dsl_runtime (the
DSL's native runtime: a path in NVFP4_AOT_DSL_RUNTIME, else the nvidia-cutlass-dsl-libs-cu13
wheel, a dependency of nvfp4-aot, found through its metadata) and libcudart.so.13 (torch's cu13 build ships it). They are loaded
RTLD_GLOBAL once, before the first kernel module, so the kernel's NEEDED entries resolve.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import importlib.metadata
import importlib.util
import os
import site
import sys
from functools import lru_cache
from pathlib import Path


DSL_RUNTIME_ENV = "NVFP4_AOT_DSL_RUNTIME"
DSL_RUNTIME_NAME = "libcute_dsl_runtime.so"
# The smallest official package shipping the library for the pinned DSL (a runtime dependency).
DSL_LIBS_DIST = "nvidia-cutlass-dsl-libs-cu13"
DSL_RUNTIME_REL = f"nvidia_cutlass_dsl/cu13/lib/{DSL_RUNTIME_NAME}"
DSL_DISTS = ("nvidia-cutlass-dsl-libs-cu13", "nvidia-cutlass-dsl-libs-base", "nvidia-cutlass-dsl")


class NativeLibraryError(RuntimeError):
    pass


def _package_dir(name: str) -> Path | None:
    # find_spec on a top-level name locates it without executing it (no cutlass import).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_dsl_runtime() -> Path:
    """Path of libcute_dsl_runtime.so: $NVFP4_AOT_DSL_RUNTIME, the installed wheel, or LD_LIBRARY_PATH."""
    env = os.environ.get(DSL_RUNTIME_ENV)
    if env:
        p = Path(env)
        if not p.is_file():
            raise NativeLibraryError(f"{DSL_RUNTIME_ENV}={env}: no such file")
        return p
    # The runtime dependency nvidia-cutlass-dsl-libs-cu13 (see pyproject.toml) lists the file in
    # its RECORD; found from metadata, nothing of the DSL is imported.
    try:
        dist = importlib.metadata.distribution(DSL_LIBS_DIST)
        lib = Path(dist.locate_file(DSL_RUNTIME_REL))
        if lib.is_file():
            return lib
    except importlib.metadata.PackageNotFoundError:
        pass
    pkg = _package_dir("nvidia_cutlass_dsl")
    if pkg is not None and (pkg / DSL_RUNTIME_REL.split("/", 1)[1]).is_file():
        return pkg / DSL_RUNTIME_REL.split("/", 1)[1]
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if d and (Path(d) / DSL_RUNTIME_NAME).is_file():
            return Path(d) / DSL_RUNTIME_NAME
    raise NativeLibraryError(
        f"{DSL_RUNTIME_NAME} not found: install {DSL_LIBS_DIST} (a dependency of nvfp4-aot; only "
        f"its native library is used) or set {DSL_RUNTIME_ENV} to the file"
    )


def dsl_version() -> str | None:
    """Installed DSL version from package metadata (no import), None if only the bare library is present."""
    for dist in DSL_DISTS:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@lru_cache(maxsize=None)
def dsl_runtime_fingerprint(path: str) -> str:
    """ABI identity of the DSL runtime library in ~1 ms: sha256 of its size, first and last
    MiB (ELF headers, dynamic symbol and version tables lead the file; section headers end
    it). Another build of the library differs there; hashing all 43 MB would cost ~100 ms
    of every serving start. This guards against a version mismatch, not against tampering
    with an installed package (the artifacts themselves are fully hashed)."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()


def tvm_ffi_version() -> str:
    return importlib.metadata.version("apache-tvm-ffi")


def _find_cudart() -> str | None:
    roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    for root in roots:
        hits = sorted(glob.glob(os.path.join(root, "nvidia", "cu13", "lib", "libcudart.so.13*")))
        if hits:
            return hits[0]
    return None


_LOADED: dict[str, ctypes.CDLL] = {}


def preload() -> Path:
    """Load the DSL runtime and libcudart globally; return the DSL runtime's path."""
    import tvm_ffi  # noqa: F401  (loads libtvm_ffi.so)

    lib = find_dsl_runtime()
    cudart = _find_cudart()
    # cudart first: the DSL runtime and kernels resolve cuda* symbols against it.
    for path in ([cudart] if cudart else []) + [str(lib)]:
        if path not in _LOADED:
            try:
                _LOADED[path] = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                raise NativeLibraryError(f"cannot load {path}: {e}") from e
    return lib
