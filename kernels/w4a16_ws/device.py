"""Build-time help for w4a16_ws's compile (no device code): the split-K / stream-K variants' fake scratch
arguments."""

import cutlass.cute as cute
from cutlass import Float32, Int32

def split_fake_args(p):
    """Fake (flags, workspace) of a split-K / stream-K variant: the dense family's scratch_args (shapes from
    scratch_shapes with the token tiles symbolic, alignments from the Args), contiguous; they go between out
    and the stream."""
    from . import DENSE_FAMILY, scratch_shapes

    fake = cute.runtime.make_fake_compact_tensor
    shapes = scratch_shapes(p, (cute.sym_int(), p.n // p.tile_m))
    args = DENSE_FAMILY.scratch_args(p)
    return tuple(fake(dt, shape, stride_order=tuple(range(len(shape) - 1, -1, -1)), assumed_align=a.align)
                 for dt, shape, a in zip((Int32, Float32), shapes, args))
