"""Build-time help for w4a16_ws's compile (no device code): the split-K variants' fake scratch
arguments, and the launch with the DSL's device queries answered (ctas 2)."""

import contextlib

import cutlass.cute as cute
from cutlass import Float32, Int32

from . import SMEM_PER_SM


@contextlib.contextmanager
def sm90_device_queries():
    """A launch with min_blocks_per_mp > 1 (ctas 2) makes the DSL ask the GPU for its shared
    memory per SM (to pick the carveout) while tracing; the build runs on a CPU box for sm_90a,
    so answer it with every sm_90 part's 228 KiB (SMEM_PER_SM) and refuse any other query
    (a new one in a future DSL fails the build instead of baking in a guess)."""
    import cutlass.base_dsl.runtime.cuda as dsl_cuda

    attr = dsl_cuda.cuda.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    real = dsl_cuda.get_device_attribute

    def fake(attribute, device_id=0):
        if attribute == attr:
            return SMEM_PER_SM
        raise RuntimeError(f"w4a16_ws: the DSL queried the GPU for {attribute} while compiling for sm_90a")

    dsl_cuda.get_device_attribute = fake
    try:
        yield
    finally:
        dsl_cuda.get_device_attribute = real


def start(kern, kw, ctas: int) -> None:
    """Launch `kern` (plain Python, run while cute.compile traces kernel.py's _launch), inside
    sm90_device_queries when ctas > 1."""
    if ctas == 1:
        kern.launch(**kw)
        return
    with sm90_device_queries():
        kern.launch(**kw)


def split_fake_args(p):
    """Fake (flags, workspace) of a split-K variant (the dense family's scratch_args): [token
    tiles (symbolic), weight tiles, ...], contiguous; they go between out and the stream."""
    fake = cute.runtime.make_fake_compact_tensor
    tt = cute.sym_int()
    flags = fake(Int32, (tt, p.n // p.tile_m, 4 * p.wgs), stride_order=(2, 1, 0), assumed_align=4)
    ws = fake(Float32, (tt, p.n // p.tile_m, p.split_k * p.tile_m * p.tile_n), stride_order=(2, 1, 0), assumed_align=16)
    return flags, ws
