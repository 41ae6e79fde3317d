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
    """Fake (flags, workspace) of a split-K variant (the dense family's scratch_args): [token
    tiles (symbolic), weight tiles, ...], contiguous; they go between out and the stream."""
    fake = cute.runtime.make_fake_compact_tensor
    tt = cute.sym_int()
    from . import split_flags

    flags = fake(Int32, (tt, p.n // p.tile_m, split_flags(p)), stride_order=(2, 1, 0), assumed_align=4)
    if getattr(p, "stream", 0):  # stream-K: per CTA of the largest grid, independent of M (stream_ws_shape)
        from . import stream_ws_shape

        ws = fake(Float32, stream_ws_shape(p), stride_order=(1, 0), assumed_align=16)
    else:
        ws = fake(Float32, (tt, p.n // p.tile_m, p.split_k * p.tile_m * p.tile_n), stride_order=(2, 1, 0),
                  assumed_align=16)
    return flags, ws
