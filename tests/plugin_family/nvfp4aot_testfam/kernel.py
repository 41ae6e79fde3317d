import cutlass
import cutlass.cute as cute
from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream


class ScaleKernel:
    def __init__(self, n: int, alpha: float, threads: int):
        self.n, self.alpha, self.threads = n, alpha, threads

    @cute.jit
    def __call__(self, x: cute.Tensor, y: cute.Tensor, stream):
        total = x.shape[0] * self.n
        self.kernel(x, y).launch(grid=[(total + self.threads - 1) // self.threads, 1, 1],
                                 block=[self.threads, 1, 1], stream=stream)

    @cute.kernel
    def kernel(self, x: cute.Tensor, y: cute.Tensor):
        tidx, _, _ = cute.arch.thread_idx()
        bidx, _, _ = cute.arch.block_idx()
        i = bidx * self.threads + tidx
        if i < x.shape[0] * self.n:
            r = i // self.n
            c = i - r * self.n
            y[r, c] = x[r, c] * cutlass.Float32(self.alpha)


def fake_args(n: int):
    m = cute.sym_int()
    x = make_fake_compact_tensor(cutlass.Float32, (m, n), stride_order=(1, 0), assumed_align=16)
    y = make_fake_compact_tensor(cutlass.Float32, (m, n), stride_order=(1, 0), assumed_align=16)
    return x, y, make_fake_stream(use_tvm_ffi_env_stream=True)
