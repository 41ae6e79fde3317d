"""Errors the runtime raises; each message names the argument, entry or manifest to fix."""

from .store_format import StoreFormatError, TamperedArtifactError  # noqa: F401  (re-exported)


class Nvfp4AotError(RuntimeError):
    pass


class AbiMismatchError(Nvfp4AotError):
    """Artifacts built against a different tvm-ffi or DSL runtime than the one installed."""


class ArchMismatchError(Nvfp4AotError):
    """The artifacts' arch does not match the device (launching would break the CUDA context)."""


class MissingVariantError(Nvfp4AotError, LookupError):
    """The store has no variant for the requested op; nothing is ever compiled at run time."""


class ArgumentError(Nvfp4AotError, ValueError):
    """A call's tensors do not fit the kernel's signature."""
