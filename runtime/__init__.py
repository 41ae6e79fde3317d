"""nvfp4-aot runtime: open a verified artifact store, dispatch by token bucket, launch with zero JIT.

Imports only torch and tvm_ffi (never cutlass, never the build package).
"""

from .errors import (
    AbiMismatchError,
    ArchMismatchError,
    ArgumentError,
    MissingVariantError,
    Nvfp4AotError,
    TamperedArtifactError,
)
from .store import NO_BUILD_ENV, ArtifactStore, Kernel, Op, open_store
from .store_format import StoreFormatError

open = open_store  # noqa: A001  (the documented entry point: nvfp4_aot.runtime.open(dir))

__all__ = [
    "AbiMismatchError",
    "ArchMismatchError",
    "ArgumentError",
    "ArtifactStore",
    "Kernel",
    "MissingVariantError",
    "NO_BUILD_ENV",
    "Nvfp4AotError",
    "Op",
    "StoreFormatError",
    "TamperedArtifactError",
    "open",
    "open_store",
]
