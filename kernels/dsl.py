"""Small CuTe DSL helpers shared by our kernel modules and the quack adapters: a 1-D launch over
items, fake row-major tensors and the env stream for cute.compile. Build side (imports cutlass):
kernel modules only, never a spec module. Plain Python run at trace time (no control flow)."""

import cutlass
import cutlass.cute as cute
from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream


def launch_1d(launcher, items, threads: int, stream, per_thread: int = 1) -> None:
    """launcher.launch on a 1-D grid of ceil(items / (threads * per_thread)) CTAs of `threads`,
    at least one CTA (items may be 0: M = 0 is a valid call)."""
    launcher.launch(
        grid=[cutlass.max(cute.ceil_div(items, threads * per_thread), 1), 1, 1],
        block=[threads, 1, 1],
        stream=stream,
    )


def fake_row_major(dtype, shape: tuple, align: int):
    """A fake compact row-major tensor (symbolic dims allowed) with the alignment the family's
    signature promises."""
    order = tuple(range(len(shape) - 1, -1, -1))
    return make_fake_compact_tensor(dtype, shape, stride_order=order, assumed_align=align)


def fake_stream():
    """The stream argument of every exported function: tvm-ffi's current stream."""
    return make_fake_stream(use_tvm_ffi_env_stream=True)


def thread_block() -> tuple:
    """(threadIdx.x, blockIdx.x) of a 1-D launch."""
    tidx, _, _ = cute.arch.thread_idx()
    bidx, _, _ = cute.arch.block_idx()
    return tidx, bidx


def flat_item(threads: int):
    """This thread's item in a 1-D launch (launch_1d) of `threads`-thread CTAs, one item a thread."""
    tidx, bidx = thread_block()
    return bidx * threads + tidx
