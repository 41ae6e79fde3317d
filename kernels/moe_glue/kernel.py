"""CuTe DSL kernels of the MoE glue families (CUDA cores only; same code on sm_90a and
sm_100a): SiLU * up and the weighted combine. Routing is in route.py.

Every fp32 operation whose rounding the references pin is inline PTX with an explicit
rounding modifier (mul.rn / add.rn are never contracted into an FMA, no .ftz), and bf16
results are packed with cvt.rn.bf16x2.f32 (RNE, as torch's .to(torch.bfloat16)).
"""

import struct

import cutlass
import cutlass.cute as cute
from cutlass import BFloat16, Float32, Int32, Int64, Uint32, const_expr
from cutlass.cutlass_dsl import T, dsl_user_op

from nvfp4_aot.runtime.layout import quad_vector_word

from ..dsl import fake_row_major, fake_stream, flat_item, launch_1d, thread_block
from ..ptx import add_rn, aligned, inline_asm, inline_asm_struct, mul_rn, pack_bf16x2, unpack_bf16x2  # noqa: F401

VEC = 8  # bf16 per 16-byte vector (4 x b32 words)


# ---------------------------------------------------------------------------
# Inline-PTX helpers (pure)
# ---------------------------------------------------------------------------
@dsl_user_op
def silu_mul(g: Float32, u: Float32, *, loc=None, ip=None) -> Float32:
    """g / (1 + 2^(-g log2 e)) * u: ex2.approx and rcp.approx (~2 ulp each). g -> -inf gives
    2^+inf = inf, rcp = 0, -0 * u; g -> +inf gives rcp(1) = 1."""
    asm = (
        "{.reg .f32 t;\n\t"
        "mul.f32 t, $1, 0fBFB8AA3B;\n\t"  # -log2(e)
        "ex2.approx.ftz.f32 t, t;\n\t"
        "add.f32 t, t, 0f3F800000;\n\t"
        "rcp.approx.ftz.f32 t, t;\n\t"
        "mul.f32 t, t, $1;\n\t"
        "mul.f32 $0, t, $2;}"
    )
    return Float32(inline_asm(T.f32(), [Float32(g), Float32(u)], asm, "=f,f,f", loc, ip))


def f32_literal(x: float) -> str:
    """A float as a PTX fp32 immediate (0fXXXXXXXX): the fp32 value nearest x."""
    return "0f" + struct.pack(">f", x).hex().upper()


@dsl_user_op
def clamp_swiglu(g: Float32, u: Float32, limit: str, *, loc=None, ip=None):
    """(min(g, L), min(max(u, -L), L)) for the fp32 immediate L = `limit` (f32_literal):
    DeepSeek-V4's clamped SwiGLU inputs (vLLM's swiglu_limit; exact, no rounding)."""
    neg = "0f" + format(int(limit[2:], 16) ^ 0x80000000, "08X")
    asm = f"min.f32 $0, $2, {limit};\n\tmax.f32 $1, $3, {neg};\n\tmin.f32 $1, $1, {limit};"
    g, u = inline_asm_struct(2, T.f32(), [Float32(g), Float32(u)], asm, "=f,=f,f,f", loc, ip)
    return Float32(g), Float32(u)


def vec_words(ptr, off):
    """The 16 bytes of bf16 at element offset `off` (a multiple of 8) as a 4-word gmem tensor."""
    return cute.recast_tensor(cute.make_tensor(aligned(ptr, off, VEC), cute.make_layout(VEC)), Uint32)


def load_quad_words(ptr, row_off, c8, dst, cross: bool = False):
    """Quad order (runtime/layout.py): output vector c8 of a row (8 bf16 = quad words 4v .. 4v + 3
    of 64-column tile c8 // 8, v = c8 % 8; cross: quad8, the same words with their bf16 pairs
    crossed) holds the natural words quad_word(4v + w) =
    16 (v % 2) + 4 w + v // 2 of the tile, w = 0..3: four 4-byte loads (16 B apart) from the
    natural row at element offset row_off into dst[0..3]. The 8 threads of a tile together read
    its whole 128 bytes, so a warp's loads still cover whole sectors."""
    v = c8 % 8
    # word w of the vector is natural word quad_vector_word(v, 0) + 4 w (runtime/layout.py): one
    # runtime base, then constant 16-byte steps
    base = row_off + Int64((c8 // 8) * 64 + 2 * quad_vector_word(v, 0))
    for w in range(4):  # plain Python: unrolled at trace time (this helper is not preprocessed)
        src = cute.recast_tensor(cute.make_tensor(aligned(ptr, base + Int64(8 * w), 2), cute.make_layout(2)), Uint32)
        dst[w] = src[0]
    if cross:  # quad8: words (2i, 2i + 1) = block b's (e = 0, e = 1) -> their low halves, their high halves
        for i in range(2):
            w0, w1 = dst[2 * i], dst[2 * i + 1]
            dst[2 * i] = (w0 & Uint32(0xFFFF)) | (w1 << Uint32(16))
            dst[2 * i + 1] = (w0 >> Uint32(16)) | (w1 & Uint32(0xFFFF0000))


# ---------------------------------------------------------------------------
# silu_mul
# ---------------------------------------------------------------------------
class SiluMulKernel:
    """out[m, c] = bf16(silu(x[m, c]) * x[m, I + c]); with limit L > 0 (clamped SwiGLU, as
    DeepSeek-V4): bf16(silu(min(g, L)) * clamp(u, -L, L)).

    One item = 8 output columns of one row (16 B of gate, 16 B of up, 16 B out). Items are
    numbered row-major, item = m * (I / 8) + c8, so a warp's loads and stores are 512 B
    contiguous runs. A CTA covers `unroll` consecutive blocks of `threads` items; each thread
    issues all its loads before computing (loads in flight = 2 * unroll * 16 B per thread).
    """

    def __init__(self, i: int, threads: int = 256, unroll: int = 2, limit: float = 0.0, quad: bool = False,
                 cross: bool = False):
        assert i % VEC == 0 and i >= VEC and limit >= 0 and (not quad or i % 64 == 0)
        self.quad = quad  # out in quad order: gate / up gathered by load_quad_words (elementwise op)
        self.cross = cross  # quad8
        self.i = i
        self.limit = f32_literal(limit) if limit > 0 else None
        self.cols = i // VEC
        self.threads = threads
        self.unroll = unroll

    @cute.jit
    def __call__(self, x: cute.Tensor, out: cute.Tensor, stream):
        n_items = x.shape[0] * self.cols
        launch_1d(self.kernel(x, out, n_items), n_items, self.threads, stream, self.unroll)

    @cute.kernel
    def kernel(self, x: cute.Tensor, out: cute.Tensor, n_items: Int32):
        tidx, bidx = thread_block()
        rg = cute.make_rmem_tensor(cute.make_layout((4, self.unroll)), Uint32)
        ru = cute.make_rmem_tensor(cute.make_layout((4, self.unroll)), Uint32)
        for u in cutlass.range_constexpr(self.unroll):
            item = (bidx * self.unroll + u) * self.threads + tidx
            if item < n_items:
                row = Uint32(item) // self.cols
                c8 = Uint32(item) - row * self.cols
                if const_expr(self.quad):
                    load_quad_words(x.iterator, Int64(row) * (2 * self.i), c8, rg[None, u], self.cross)
                    load_quad_words(x.iterator, Int64(row) * (2 * self.i) + Int64(self.i), c8, ru[None, u], self.cross)
                else:
                    off = Int64(row) * (2 * self.i) + Int64(c8 * VEC)
                    cute.autovec_copy(vec_words(x.iterator, off), rg[None, u])
                    cute.autovec_copy(vec_words(x.iterator, off + self.i), ru[None, u])
        for u in cutlass.range_constexpr(self.unroll):
            item = (bidx * self.unroll + u) * self.threads + tidx
            if item < n_items:
                ro = cute.make_rmem_tensor(cute.make_layout(4), Uint32)
                for w in cutlass.range_constexpr(4):
                    g0, g1 = unpack_bf16x2(rg[w, u])
                    u0, u1 = unpack_bf16x2(ru[w, u])
                    if const_expr(self.limit is not None):
                        g0, u0 = clamp_swiglu(g0, u0, self.limit)
                        g1, u1 = clamp_swiglu(g1, u1, self.limit)
                    ro[w] = pack_bf16x2(silu_mul(g0, u0), silu_mul(g1, u1))
                cute.autovec_copy(ro, vec_words(out.iterator, Int64(item) * VEC))


# ---------------------------------------------------------------------------
# combine
# ---------------------------------------------------------------------------
class CombineKernel:
    """out[m, :] = bf16(sum_k w[m, k] * y[slot_of[m, k], :]), k ascending, fp32 mul.rn then
    add.rn (no FMA), slots outside [0, R) skipped.

    One item = 8 columns of one token (item = m * (H / 8) + c8): topk gathered 16-byte loads
    of y (a warp reads 512 contiguous bytes of each selected row), one 16-byte store. The
    slot / weight loads of a token are the same for all its H / 8 threads (L1 broadcasts).
    """

    def __init__(self, h: int, topk: int, threads: int = 128):
        assert h % VEC == 0 and h >= VEC
        self.h = h
        self.cols = h // VEC
        self.topk = topk
        self.threads = threads

    @cute.jit
    def __call__(self, y: cute.Tensor, slot_of: cute.Tensor, weights: cute.Tensor, out: cute.Tensor, stream):
        n_items = out.shape[0] * self.cols
        launch_1d(self.kernel(y, slot_of, weights, out, n_items, y.shape[0]), n_items, self.threads, stream)

    @cute.kernel
    def kernel(self, y: cute.Tensor, slot_of: cute.Tensor, weights: cute.Tensor, out: cute.Tensor,
               n_items: Int32, rows: Int32):
        item = flat_item(self.threads)
        if item < n_items:
            tok = Uint32(item) // self.cols
            c8 = Uint32(item) - tok * self.cols
            rs = cute.make_rmem_tensor(cute.make_layout(self.topk), Int32)
            rw = cute.make_rmem_tensor(cute.make_layout(self.topk), Float32)
            for k in cutlass.range_constexpr(self.topk):
                rs[k] = slot_of[tok, k]
                rw[k] = weights[tok, k]
            acc = cute.make_rmem_tensor(cute.make_layout(VEC), Float32)
            acc.fill(0.0)
            ry = cute.make_rmem_tensor(cute.make_layout(4), Uint32)
            for k in cutlass.range_constexpr(self.topk):
                s = rs[k]
                if Uint32(s) < Uint32(rows):  # 0 <= s < R (a negative s wraps to >= 2^31)
                    cute.autovec_copy(vec_words(y.iterator, Int64(s) * self.h + Int64(c8 * VEC)), ry)
                    w = rw[k]
                    for j in cutlass.range_constexpr(4):
                        lo, hi = unpack_bf16x2(ry[j])
                        acc[2 * j] = add_rn(acc[2 * j], mul_rn(w, lo))
                        acc[2 * j + 1] = add_rn(acc[2 * j + 1], mul_rn(w, hi))
            ro = cute.make_rmem_tensor(cute.make_layout(4), Uint32)
            for j in cutlass.range_constexpr(4):
                ro[j] = pack_bf16x2(acc[2 * j], acc[2 * j + 1])
            cute.autovec_copy(ro, vec_words(out.iterator, Int64(item) * VEC))


# ---------------------------------------------------------------------------
# Build helpers
# ---------------------------------------------------------------------------
def make_silu_mul(p):
    return SiluMulKernel(p.i, threads=p.threads, unroll=p.unroll, limit=p.limit,
                        quad=p.act_order in ("quad", "quad8"), cross=p.act_order == "quad8")


def fake_args_silu_mul(p):
    m = cute.sym_int()  # one SymInt shared by every tensor with M rows
    return fake_row_major(BFloat16, (m, 2 * p.i), 16), fake_row_major(BFloat16, (m, p.i), 16), fake_stream()


def make_combine(p):
    return CombineKernel(p.h, p.topk, threads=p.threads)


def fake_args_combine(p):
    m, r = cute.sym_int(), cute.sym_int()
    return (fake_row_major(BFloat16, (r, p.h), 16), fake_row_major(Int32, (m, p.topk), 4),
            fake_row_major(Float32, (m, p.topk), 4), fake_row_major(BFloat16, (m, p.h), 16), fake_stream())


__all__ = ["SiluMulKernel", "CombineKernel", "make_silu_mul", "make_combine"]
