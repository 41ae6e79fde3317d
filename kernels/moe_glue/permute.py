"""CuTe DSL kernels of the fused MoE glue families (CUDA cores only; same code on sm_90a and
sm_100a): the row gather into route's grouped layout (moe_permute), the gather fused with
NVFP4 quantization (moe_permute_quantize) and SiLU * up fused with NVFP4 quantization
(moe_silu_mul_quantize).

The NVFP4 rounding is not re-derived here: every rounding step is one of the inline-PTX
helpers of kernels/nvfp4_quantize/kernel.py (block_scales2, out_scale, quant8,
unpack_bf16x2, absmax, tree_max), applied in the same order as Nvfp4QuantizeKernel
(`quantize64` below is its per-item body), so a row quantized here has the bits
nvfp4_quantize (and its torch reference quantize_ref) gives the same bf16 row. SiLU * up is
moe_silu_mul's own `silu_mul` + `pack_bf16x2` (the same bf16 values moe_silu_mul writes).

No full-warp operation (warp_idx, shuffles) is used at all, so no lane-divergent branch can
hang a warp; each thread works on its own item.
"""

import cutlass
import cutlass.cute as cute
from cutlass import BFloat16, Float32, Int32, Int64, Uint8, Uint32

from ..dsl import fake_row_major, fake_stream, flat_item, launch_1d, thread_block
from ..nvfp4_quantize.kernel import ELEMS_PER_ITEM, block_scales2, fake_quantized, out_scale, quant8
from ..ptx import absmax, aligned, pack_bf16x2, tree_max, unpack_bf16x2
from .kernel import VEC, clamp_swiglu, f32_literal, load_quad_words, silu_mul, vec_words

SF_ATOM_BYTES = 512  # one 128-row x 4-column atom of the block-scaled layout


# ---------------------------------------------------------------------------
# Shared pieces (plain Python run at trace time: no dynamic control flow inside)
# ---------------------------------------------------------------------------
def quantize64(w, gs, rq):
    """Nvfp4QuantizeKernel's item body: 64 bf16 (w: 32 words, word i = elements 2i, 2i+1)
    -> rq[0:8] packed E2M1 words, returns the word of the 4 E4M3 scale bytes (block 0 in the
    low byte). Two halves of 2 blocks each, exactly as in nvfp4_quantize."""
    pairs = []
    for hf in range(2):
        xf = []
        for i in range(16):
            xf.extend(unpack_bf16x2(w[16 * hf + i]))
        vmax = [tree_max([absmax(xf[16 * b + 2 * i], xf[16 * b + 2 * i + 1]) for i in range(8)]) for b in range(2)]
        pair, sff = block_scales2(vmax[0], vmax[1], gs)
        pairs.append(pair)
        for b in range(2):
            os = out_scale(sff[b], gs)
            for h in range(2):
                rq[4 * hf + 2 * b + h] = quant8(xf[16 * b + 8 * h: 16 * b + 8 * h + 8], os)
    return pairs[0] | (pairs[1] << 16)


def swizzled_sf_offset(row, g, groups: int):
    """Byte offset of scale (row, column 4g) in the 128x4 block-scaled layout of a buffer with
    groups * 4 scale columns (row, g unsigned): atom (row / 128, g) of 512 B, then
    (row % 32) * 16 + ((row / 32) % 4) * 4. Identical to Nvfp4QuantizeKernel's."""
    return Int64((row >> 7) * groups + g) * SF_ATOM_BYTES + Int64((row & 31) * 16 + ((row >> 5) & 3) * 4)


def _store_item(q, sf, item, sf_off, rq, sf_word):
    g_q = cute.recast_tensor(cute.make_tensor(aligned(q.iterator, Int64(item) * 32, 32), cute.make_layout(32)), Uint32)
    cute.autovec_copy(rq, g_q)
    g_sf = cute.recast_tensor(cute.make_tensor(aligned(sf.iterator, sf_off, 4), cute.make_layout(4)), Uint32)
    g_sf[0] = sf_word


# ---------------------------------------------------------------------------
# permute
# ---------------------------------------------------------------------------
class MoePermuteKernel:
    """xg[r, :] = x[src_token[r], :] if 0 <= src_token[r] < M else 0 (bit copy).

    One item = 8 columns (16 B) of one grouped row, numbered row-major (item = r * (H/8) + c8):
    a warp reads 512 contiguous bytes of one source row (or of two at a row boundary) and
    writes 512 contiguous bytes of xg. A CTA covers `unroll` consecutive blocks of `threads`
    items, all loads issued before the stores. The src_token load of a row is shared by its
    H / 8 threads (L1 broadcast). Grid: ceil(CAP * H / 8 / (threads * unroll)), CAP from M.
    """

    def __init__(self, h: int, threads: int = 256, unroll: int = 2, quad: bool = False, cross: bool = False):
        assert h % VEC == 0 and h >= VEC and (not quad or h % 64 == 0)
        self.quad = quad  # xg in quad order: each item gathers its words (load_quad_words)
        self.cross = cross  # quad8
        self.h = h
        self.cols = h // VEC
        self.threads = threads
        self.unroll = unroll

    @cute.jit
    def __call__(self, x: cute.Tensor, src_token: cute.Tensor, xg: cute.Tensor, stream):
        n_items = src_token.shape[0] * self.cols
        launch_1d(self.kernel(x, src_token, xg, n_items, x.shape[0]), n_items, self.threads, stream, self.unroll)

    @cute.kernel
    def kernel(self, x: cute.Tensor, src_token: cute.Tensor, xg: cute.Tensor, n_items: Int32, m: Int32):
        tidx, bidx = thread_block()
        rv = cute.make_rmem_tensor(cute.make_layout((4, self.unroll)), Uint32)
        for u in cutlass.range_constexpr(self.unroll):
            for j in cutlass.range_constexpr(4):
                rv[j, u] = Uint32(0)  # padding / out-of-range rows stay zero
            item = (bidx * self.unroll + u) * self.threads + tidx
            if item < n_items:
                row = Uint32(item) // self.cols
                c8 = Uint32(item) - row * self.cols
                tok = src_token[Int32(row)]
                if Uint32(tok) < Uint32(m):  # 0 <= tok < M (a negative tok wraps to >= 2^31)
                    if cutlass.const_expr(self.quad):
                        load_quad_words(x.iterator, Int64(tok) * self.h, c8, rv[None, u], self.cross)
                    else:
                        cute.autovec_copy(vec_words(x.iterator, Int64(tok) * self.h + Int64(c8 * VEC)), rv[None, u])
        for u in cutlass.range_constexpr(self.unroll):
            item = (bidx * self.unroll + u) * self.threads + tidx
            if item < n_items:
                cute.autovec_copy(rv[None, u], vec_words(xg.iterator, Int64(item) * VEC))


# ---------------------------------------------------------------------------
# permute + quantize
# ---------------------------------------------------------------------------
class MoePermuteQuantizeKernel:
    """Grouped row r = NVFP4(x[src_token[r]]) (a zero row, i.e. zero codes and zero scales,
    where src_token[r] is outside [0, M)), scales in the 128x4 block-scaled layout over all
    CAP rows (CAP % 128 == 0 since PAD % 128 == 0: every row has its scale word written).

    One item = (grouped row r, 64-column group g): 128 B of the source row loaded directly
    (8 x 16 B), 32 B of q and one 4-byte scale word out, numbered row-major over CAP rows.
    """

    def __init__(self, h: int, threads: int = 128):
        assert h % ELEMS_PER_ITEM == 0 and h >= ELEMS_PER_ITEM
        self.h = h
        self.groups = h // ELEMS_PER_ITEM
        self.threads = threads

    @cute.jit
    def __call__(self, x: cute.Tensor, src_token: cute.Tensor, global_scale: cute.Tensor, q: cute.Tensor,
                 sf: cute.Tensor, stream):
        n_total = src_token.shape[0] * self.groups
        launch_1d(self.kernel(x, src_token, global_scale, q, sf, n_total, x.shape[0]), n_total, self.threads, stream)

    @cute.kernel
    def kernel(self, x: cute.Tensor, src_token: cute.Tensor, global_scale: cute.Tensor, q: cute.Tensor,
               sf: cute.Tensor, n_total: Int32, m: Int32):
        item = flat_item(self.threads)
        gs = global_scale[0]
        if item < n_total:
            uitem = Uint32(item)
            row = uitem // self.groups
            g = uitem - row * self.groups
            tok = src_token[Int32(row)]
            r = cute.make_rmem_tensor(cute.make_layout(ELEMS_PER_ITEM), BFloat16)
            r.fill(0.0)  # padding rows quantize to zero codes and a zero scale
            if Uint32(tok) < Uint32(m):
                src = cute.make_tensor(
                    aligned(x.iterator, Int64(tok) * self.h + Int64(g * ELEMS_PER_ITEM), ELEMS_PER_ITEM),
                    cute.make_layout(ELEMS_PER_ITEM))
                cute.autovec_copy(src, r)
            rq = cute.make_rmem_tensor(cute.make_layout(8), Uint32)
            sf_word = quantize64(cute.recast_tensor(r, Uint32), gs, rq)
            _store_item(q, sf, item, swizzled_sf_offset(row, g, self.groups), rq, sf_word)


# ---------------------------------------------------------------------------
# silu_mul + quantize
# ---------------------------------------------------------------------------
class SiluMulQuantizeKernel:
    """h = bf16(silu(x[:, :I]) * x[:, I:]) (moe_silu_mul's values; with limit L > 0 its clamped
    SwiGLU bf16(silu(min(g, L)) * clamp(u, -L, L)), the same clamp_swiglu PTX), then q, sf =
    NVFP4(h) with swizzled scales over round_up(M, 128) rows (rows [M, Mpad) get zero scale
    words). The bf16 intermediate never leaves registers.

    One item = (row, 64-column group g of the output): 128 B of gate and 128 B of up loaded
    directly, 32 B of q and one scale word out; items numbered row-major over Mpad rows.
    """

    def __init__(self, i: int, threads: int = 128, limit: float = 0.0):
        assert i % ELEMS_PER_ITEM == 0 and i >= ELEMS_PER_ITEM and limit >= 0
        self.i = i
        self.groups = i // ELEMS_PER_ITEM
        self.threads = threads
        self.limit = f32_literal(limit) if limit > 0 else None  # None: no clamp, the PTX of limit 0 unchanged

    @cute.jit
    def __call__(self, x: cute.Tensor, global_scale: cute.Tensor, q: cute.Tensor, sf: cute.Tensor, stream):
        n_items = x.shape[0] * self.groups
        n_total = sf.shape[0] * self.groups  # sf has round_up(M, 128) rows (checked by the runtime)
        launch_1d(self.kernel(x, global_scale, q, sf, n_items, n_total), n_total, self.threads, stream)

    @cute.kernel
    def kernel(self, x: cute.Tensor, global_scale: cute.Tensor, q: cute.Tensor, sf: cute.Tensor,
               n_items: Int32, n_total: Int32):
        item = flat_item(self.threads)
        gs = global_scale[0]
        uitem = Uint32(item)
        row = uitem // self.groups
        g = uitem - row * self.groups
        sf_off = swizzled_sf_offset(row, g, self.groups)
        if item < n_items:
            rg = cute.make_rmem_tensor(cute.make_layout(ELEMS_PER_ITEM), BFloat16)
            ru = cute.make_rmem_tensor(cute.make_layout(ELEMS_PER_ITEM), BFloat16)
            base = Int64(row) * (2 * self.i) + Int64(g * ELEMS_PER_ITEM)
            cute.autovec_copy(cute.make_tensor(aligned(x.iterator, base, ELEMS_PER_ITEM),
                                               cute.make_layout(ELEMS_PER_ITEM)), rg)
            cute.autovec_copy(cute.make_tensor(aligned(x.iterator, base + self.i, ELEMS_PER_ITEM),
                                               cute.make_layout(ELEMS_PER_ITEM)), ru)
            wg = cute.recast_tensor(rg, Uint32)
            wu = cute.recast_tensor(ru, Uint32)
            hw = cute.make_rmem_tensor(cute.make_layout(ELEMS_PER_ITEM // 2), Uint32)
            for j in cutlass.range_constexpr(ELEMS_PER_ITEM // 2):
                g0, g1 = unpack_bf16x2(wg[j])
                u0, u1 = unpack_bf16x2(wu[j])
                if cutlass.const_expr(self.limit is not None):
                    g0, u0 = clamp_swiglu(g0, u0, self.limit)
                    g1, u1 = clamp_swiglu(g1, u1, self.limit)
                hw[j] = pack_bf16x2(silu_mul(g0, u0), silu_mul(g1, u1))
            rq = cute.make_rmem_tensor(cute.make_layout(8), Uint32)
            sf_word = quantize64(hw, gs, rq)
            _store_item(q, sf, item, sf_off, rq, sf_word)
        elif item < n_total:
            g_sf = cute.recast_tensor(cute.make_tensor(aligned(sf.iterator, sf_off, 4), cute.make_layout(4)), Uint32)
            g_sf[0] = Uint32(0)  # swizzled padding rows [M, Mpad)


# ---------------------------------------------------------------------------
# Build helpers
# ---------------------------------------------------------------------------
def make_permute(p):
    return MoePermuteKernel(p.h, threads=p.threads, unroll=p.unroll, quad=p.act_order in ("quad", "quad8"),
                            cross=p.act_order == "quad8")


def fake_args_permute(p):
    m = cute.sym_int()
    cap = cute.sym_int()  # CAP = capacity_expr() of M, checked by the runtime
    return (fake_row_major(BFloat16, (m, p.h), 16), fake_row_major(Int32, (cap,), 4),
            fake_row_major(BFloat16, (cap, p.h), 16), fake_stream())


def make_permute_quantize(p):
    return MoePermuteQuantizeKernel(p.h, threads=p.threads)


def fake_args_permute_quantize(p):
    m = cute.sym_int()
    cap = cute.sym_int(divisibility=128)  # a multiple of PAD, PAD % 128 == 0
    x = fake_row_major(BFloat16, (m, p.h), 16)
    src_token = fake_row_major(Int32, (cap,), 4)
    return (x, src_token, *fake_quantized(cap, p.h, cap), fake_stream())


def make_silu_mul_quantize(p):
    return SiluMulQuantizeKernel(p.i, threads=p.threads, limit=p.limit)


def fake_args_silu_mul_quantize(p):
    m = cute.sym_int()
    mpad = cute.sym_int(divisibility=128)  # round_up(M, 128), checked by the runtime
    return (fake_row_major(BFloat16, (m, 2 * p.i), 16), *fake_quantized(m, p.i, mpad), fake_stream())


__all__ = ["MoePermuteKernel", "MoePermuteQuantizeKernel", "SiluMulQuantizeKernel"]
