"""w4a16 families' weight layout (production entry point): the repack into the kernel's
[N/16, K/256, 576] int32 chunks, its inverse and a CPU emulation of the kernel's decode.

The implementation stays in prepare.py (its layout is documented there, next to the code);
this module is the one production code imports.
"""

from .prepare import emulate_weights, repack, unrepack

__all__ = ["emulate_weights", "repack", "unrepack"]
