"""Build-time help for w4a16_ws's compile (no device code): the split-K / stream-K variants' fake scratch
arguments, and the launch with the DSL's device queries answered (ctas 2: kernels/hopper.py)."""

import cutlass.cute as cute
from cutlass import Float32, Int32

from ..hopper import answer_device_queries


def start(kern, kw, ctas: int) -> None:
    """Launch `kern` (plain Python, run while cute.compile traces kernel.py's _launch). With ctas > 1
    the launch has min_blocks_per_mp > 1, so the DSL asks the GPU for its shared memory per SM to pick
    the carveout: answered for sm_90 (hopper.answer_device_queries), since the build box has none."""
    if ctas == 1:
        kern.launch(**kw)
        return
    with answer_device_queries("w4a16_ws"):
        kern.launch(**kw)


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
