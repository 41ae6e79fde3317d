"""nvfp4-aot runtime: open a verified artifact store, dispatch by token bucket, launch with zero JIT.

Imports only torch, tvm_ffi and safetensors (never cutlass, never the build package). Attributes load
lazily so that the build side can read the store format without importing torch.
"""

from importlib import import_module

_EXPORTS = {
    "AbiMismatchError": "errors",
    "ArchMismatchError": "errors",
    "ArgumentError": "errors",
    "MissingVariantError": "errors",
    "Nvfp4AotError": "errors",
    "TamperedArtifactError": "errors",
    "StoreFormatError": "store_format",
    "ArtifactStore": "store",
    "Kernel": "store",
    "Op": "store",
    "NO_BUILD_ENV": "store_format",
    "open_store": "store",
    "Checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "load_layer": "weights",
    "load_linear": "weights",
    "load_moe_experts": "weights",
    "MoERunner": "moe",
    "Nvfp4Linear": "linear",
}

__all__ = [*_EXPORTS, "open"]


def __getattr__(name: str):
    if name == "open":  # the documented entry point: nvfp4_aot.runtime.open(dir)
        name = "open_store"
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
