"""NVFP4 (E2M1 values + E4M3 block scales) quantization kernels in CuTe DSL.

Two kernels:

* ``Nvfp4QuantizeKernel``: bf16 [M, K] -> packed E2M1 q [M, K/2] + E4M3 scale
  bytes sf (row-major [M, K/16] or Blackwell 128x4-swizzled [Mpad, K/16]),
  given a device-side fp32 global scale gs.
* ``Nvfp4GlobalScaleKernel``: gs = 2688 / max|x| (1.0 if the max is 0), as two
  launches (fixed-grid partial maxima -> single-CTA final reduce).

Numerics are bit-exact with the project's torch reference (all fp32, IEEE RN):
  vmax = max_16 |x|;  s = (vmax * gs) * fp32(1/6);  sf8 = e4m3_rn_satfinite(s)
  os = 0 if float(sf8) == 0 else gs / float(sf8)          (div.rn.f32)
  v = x * os;  nibble = e2m1_rne_sat(|v|) | 8 * signbit(v)
Every fp32 op whose rounding matters is written as inline PTX with an explicit
``.rn`` modifier: that pins IEEE rounding, forbids FMA contraction (ptxas never
fuses ``mul.rn``/``add.rn``) and keeps denormals (no ``.ftz``).

E2M1 in software (same code on sm_90a and sm_100a; Hopper has no e2m1 cvt).
With a = |v| and M = 2^23 (fp32 ulp 1 on [2^23, 2^24), so "c - M" = rne):
  t1 = sat(a/2), t2 = sat(a/2 - 1), t3 = sat(a/2 - 2)     (.sat clamps to [0,1])
  code = rne(4 t1) + rne(2 t2) + rne(t3)
The three terms are the E2M1 grid pieces (spacing 0.5 on [0,2], 1 on [2,4],
2 on [4,6], saturating at 6 -> code 7), each rounded half-to-even once; all
t's are exact in their active range. Checked exhaustively against the
reference threshold sum for every fp32 in [0, 16] (above: code 7 both ways).
All ops are FMA-pipe (FMUL.SAT/FFMA.SAT/FFMA/FADD), no compares or selects.
"""

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32, Int64, Uint8, Uint32, BFloat16, const_expr
from cutlass.cutlass_dsl import T, dsl_user_op
from cutlass._mlir import ir
from cutlass._mlir.dialects import llvm
from cutlass.cute.nvgpu import cpasync

from nvfp4_aot.runtime.nvfp4 import GS_NUMERATOR  # 448 (e4m3 max) * 6 (e2m1 max)

from ..dsl import fake_row_major, fake_stream, launch_1d
from ..ptx import absmax, aligned, div_rn, fmax, inline_asm, inline_asm_struct, tree_max, unpack_bf16x2  # noqa: F401

ELEMS_PER_ITEM = 64  # one thread item = 4 scale blocks of 16 = 128 B of bf16


# ---------------------------------------------------------------------------
# Inline-PTX helpers (pure: has_side_effects=False so LLVM may CSE/schedule).
# ---------------------------------------------------------------------------
@dsl_user_op
def block_scales2(vmax0: Float32, vmax1: Float32, gs: Float32, *, loc=None, ip=None):
    """2 block maxima -> (16-bit pair of e4m3 scale bytes, block 0 in the low
    byte; both scales dequantized to fp32). s = (vmax * gs) * fp32(1/6), then
    cvt.rn.satfinite.e4m3x2.f32 (RNE, saturating to 448). e4m3 -> fp32 through
    cvt.rn.f16x2.e4m3x2 + cvt.f32.f16, both exact."""
    asm = (
        "{.reg .f32 s0, s1; .reg .b16 h, f0, f1; .reg .b32 g;\n\t"
        "mul.rn.f32 s0, $3, $5;\n\tmul.rn.f32 s0, s0, 0f3E2AAAAB;\n\t"
        "mul.rn.f32 s1, $4, $5;\n\tmul.rn.f32 s1, s1, 0f3E2AAAAB;\n\t"
        "cvt.rn.satfinite.e4m3x2.f32 h, s1, s0;\n\t"  # cvt(s1) -> upper byte
        "cvt.u32.u16 $0, h;\n\t"
        "cvt.rn.f16x2.e4m3x2 g, h;\n\t"
        "mov.b32 {f0, f1}, g;\n\tcvt.f32.f16 $1, f0;\n\tcvt.f32.f16 $2, f1;}"
    )
    st = ir.Type.parse("!llvm.struct<(i32, f32, f32)>")
    res = inline_asm(st, [Float32(vmax0), Float32(vmax1), Float32(gs)], asm, "=r,=f,=f,f,f,f", loc, ip)
    pair = Uint32(llvm.extractvalue(T.i32(), res, [0], loc=loc, ip=ip))
    sff = [Float32(llvm.extractvalue(T.f32(), res, [1 + i], loc=loc, ip=ip)) for i in range(2)]
    return pair, sff


@dsl_user_op
def out_scale(sff: Float32, gs: Float32, *, loc=None, ip=None) -> Float32:
    """0 if sff == 0 else gs / sff (div.rn.f32)."""
    asm = (
        "{.reg .pred p; .reg .f32 t;\n\t"
        "setp.eq.f32 p, $1, 0f00000000;\n\t"
        "div.rn.f32 t, $2, $1;\n\t"
        "selp.f32 $0, 0f00000000, t, p;}"
    )
    return Float32(inline_asm(T.f32(), [Float32(sff), Float32(gs)], asm, "=f,f,f", loc, ip))


def _e2m1_ptx(i: int) -> str:
    """PTX for element i: x{i} -> v{i} = x*os (sign source) and
    c{i} = M + code (code in bits 0..2), M = 2^23 (see module doc):
      t1 = sat(a/2), t2 = sat(a/2 - 1), t3 = sat(a/2 - 2)    (a = |v|; exact)
      c = M + rne(4 t1);  c += rne(2 t2);  c += rne(t3)
    t2 > 0 implies t1 = 1 (c = M+4, even) and t3 > 0 implies t2 = 1 (c = M+6,
    even), so each RN(c + .) rounds its term half-to-even exactly as rne(.).
    .sat maps NaN to 0 (code 0), inf to 1 (code 7 = saturation)."""
    return (
        f"mul.rn.f32 v{i}, x{i}, $9;\n\t"
        f"abs.f32 a, v{i};\n\t"
        "mul.rn.sat.f32 t1, a, 0f3F000000;\n\t"
        "fma.rn.sat.f32 t2, a, 0f3F000000, 0fBF800000;\n\t"
        "fma.rn.sat.f32 t3, a, 0f3F000000, 0fC0000000;\n\t"
        f"fma.rn.f32 c{i}, t1, 0f40800000, 0f4B000000;\n\t"
        f"fma.rn.f32 c{i}, t2, 0f40000000, c{i};\n\t"
        f"add.rn.f32 c{i}, c{i}, t3;\n\t"
    )


# 8 fp32 values + out_scale -> 8 packed E2M1 nibbles (element 2j in the low
# nibble of byte j): byte j = code(2j) | sign(2j)<<3 | code(2j+1)<<4 | sign(2j+1)<<7
_QUANT8_PTX = (
    "{.reg .f32 v<8>, c<8>, a, t1, t2, t3;\n\t"
    ".reg .b32 g<4>, e, o, se, so;\n\t"
    + "".join(_e2m1_ptx(i).replace(f"x{i}", f"${1 + i}") for i in range(8))
    # code bytes (byte 0 of each c) of the even / odd elements
    + "prmt.b32 g0, c0, c2, 0x0040;\n\tprmt.b32 g1, c4, c6, 0x0040;\n\tprmt.b32 e, g0, g1, 0x5410;\n\t"
    "prmt.b32 g2, c1, c3, 0x0040;\n\tprmt.b32 g3, c5, c7, 0x0040;\n\tprmt.b32 o, g2, g3, 0x5410;\n\t"
    # sign bytes (byte 3 of each v): the sign is bit 7 of the gathered byte
    "prmt.b32 g0, v0, v2, 0x0073;\n\tprmt.b32 g1, v4, v6, 0x0073;\n\tprmt.b32 se, g0, g1, 0x5410;\n\t"
    "prmt.b32 g2, v1, v3, 0x0073;\n\tprmt.b32 g3, v5, v7, 0x0073;\n\tprmt.b32 so, g2, g3, 0x5410;\n\t"
    "shl.b32 o, o, 4;\n\tadd.u32 e, e, o;\n\t"
    "and.b32 so, so, 0x80808080;\n\tor.b32 e, e, so;\n\t"
    "shr.u32 se, se, 4;\n\tand.b32 se, se, 0x08080808;\n\tor.b32 $0, e, se;}"
)


@dsl_user_op
def quant8(xs, os: Float32, *, loc=None, ip=None) -> Uint32:
    """8 fp32 values (already widened from bf16) -> one word of 8 nibbles."""
    args = [Float32(v) for v in xs] + [Float32(os)]
    return Uint32(inline_asm(T.i32(), args, _QUANT8_PTX, "=r," + ",".join(["f"] * 9), loc, ip))


# ---------------------------------------------------------------------------
# Quantize kernel
# ---------------------------------------------------------------------------
class Nvfp4QuantizeKernel:
    """One thread item = (row, 64-element column group g): 128 B of x in,
    32 B of q and one 32-bit word of 4 scale bytes out (the 4 block-columns
    c = 4g..4g+3 are contiguous in both sf layouts).

    Items are numbered row-major (item = row * G + g, G = K/64), so the items
    of a warp cover 32 * 128 B = 4 KB of *contiguous* x for any K (x is
    contiguous, K % 64 == 0) and likewise contiguous q / row-major sf.

    stage_smem=True: each warp copies its 4 KB with cp.async so that every
    16-byte lane request of a warp instruction is contiguous (fully coalesced),
    into a per-warp smem slab with the 16 B chunks of each 128 B item row
    XOR-swizzled by (item % 8): the cp.async writes and the per-item 128-bit
    reads are then both bank-conflict free. Only warp-level sync is needed
    (a warp reads only what it copied). stage_smem=False: each thread loads its
    own 128 B directly (8 x ld.global.v4, lanes 128 B apart).

    Defaults (threads_per_cta=128, stage_smem=True): 72 registers, no local
    memory, 16 KB smem per CTA -> 7 CTAs (28 warps) per H100 SM; ~13 SASS
    instructions per element, ~2/3 of them on the FMA pipe.
    """

    def __init__(self, k: int, sf_layout: str, threads_per_cta: int = 128, stage_smem: bool = True):
        assert k % 64 == 0 and k >= 64, "K must be a positive multiple of 64"
        assert sf_layout in ("swizzled", "rowmajor")
        assert threads_per_cta % 32 == 0 and 32 <= threads_per_cta <= 1024
        self.k = k
        self.groups = k // ELEMS_PER_ITEM  # G: items per row
        self.swizzled = sf_layout == "swizzled"
        self.threads = threads_per_cta
        self.stage_smem = stage_smem

    @cute.jit
    def __call__(self, x: cute.Tensor, global_scale: cute.Tensor, q: cute.Tensor, sf: cute.Tensor, stream):
        # Items with row < M quantize; swizzled also has rows [M, Mpad) whose
        # scale words are zero-filled (the caller guarantees Mpad % 128 == 0).
        m = x.shape[0]
        rows_out = sf.shape[0] if const_expr(self.swizzled) else m
        n_items = m * self.groups
        n_total = rows_out * self.groups
        launch_1d(self.kernel(x, global_scale, q, sf, n_items, n_total), n_total, self.threads, stream)

    @cute.kernel
    def kernel(self, x: cute.Tensor, global_scale: cute.Tensor, q: cute.Tensor, sf: cute.Tensor,
               n_items: Int32, n_total: Int32):
        bidx, _, _ = cute.arch.block_idx()
        lane = cute.arch.lane_idx()
        warp = cute.arch.warp_idx()
        warp_item0 = bidx * self.threads + warp * 32
        item = warp_item0 + lane
        gs = global_scale[0]  # issued early: its latency overlaps the x loads

        r = cute.make_rmem_tensor(cute.make_layout(ELEMS_PER_ITEM), BFloat16)
        if const_expr(self.stage_smem):
            smem = cutlass.utils.SmemAllocator()
            s_x = smem.allocate_tensor(BFloat16, cute.make_layout(self.threads * ELEMS_PER_ITEM), byte_alignment=128)
            g2s = cute.make_copy_atom(cpasync.CopyG2SOp(cache_mode=cpasync.LoadCacheMode.GLOBAL), BFloat16,
                                      num_bits_per_copy=128)
            # Copy step j: lane moves 16 B chunk (j*32 + lane) of the warp's 4 KB
            # = chunk c = lane % 8 of warp item t = 4j + lane / 8, stored at smem
            # chunk c ^ (t % 8) of item t's 128 B row. t % 8 = lane / 8 + 4 (j % 2)
            # (lane / 8 < 4), so only two swizzled offsets exist (even / odd j).
            src0 = aligned(x.iterator, Int64(warp_item0) * ELEMS_PER_ITEM + lane * 8, 8)
            row0 = (warp * 32 + (lane >> 3)) * ELEMS_PER_ITEM
            c0 = (lane & 7) ^ (lane >> 3)
            dst0 = [aligned(s_x.iterator, row0 + ((c0 ^ (4 * p)) * 8), 8) for p in range(2)]
            for j in cutlass.range_constexpr(8):
                if warp_item0 + 4 * j + (lane >> 3) < n_items:
                    src = cute.make_tensor(src0 + j * 256, cute.make_layout(8))
                    dst = cute.make_tensor(dst0[j % 2] + j * 256, cute.make_layout(8))
                    cute.copy(g2s, src, dst)
            cute.arch.cp_async_commit_group()
            cute.arch.cp_async_wait_group(0)
            cute.arch.sync_warp()  # makes other lanes' cp.async data visible
            if item < n_items:
                for c in cutlass.range_constexpr(8):
                    off = (warp * 32 + lane) * ELEMS_PER_ITEM + (c ^ (lane & 7)) * 8
                    src = cute.make_tensor(aligned(s_x.iterator, off, 8), cute.make_layout(8))
                    cute.autovec_copy(src, cute.make_tensor(r.iterator + c * 8, cute.make_layout(8)))
        else:
            if item < n_items:
                src = cute.make_tensor(aligned(x.iterator, Int64(item) * ELEMS_PER_ITEM, ELEMS_PER_ITEM),
                                       cute.make_layout(ELEMS_PER_ITEM))
                cute.autovec_copy(src, r)

        # Unsigned index math (item >= 0): cheaper div/mod by constants.
        uitem = Uint32(item)
        row = uitem // self.groups
        g = uitem - row * self.groups
        if const_expr(self.swizzled):
            # byte offset of (row, c = 4g) in the 128x4 atoms of 512 B
            sf_off = (Int64((row >> 7) * self.groups + g) * 512
                      + Int64((row & 31) * 16 + ((row >> 5) & 3) * 4))
        else:
            sf_off = Int64(item) * 4
        g_sf = cute.recast_tensor(cute.make_tensor(aligned(sf.iterator, sf_off, 4), cute.make_layout(4)), Uint32)

        if item < n_items:
            w = cute.recast_tensor(r, Uint32)  # word i = bf16 elements (2i, 2i+1)
            rq = cute.make_rmem_tensor(cute.make_layout(8), Uint32)
            pairs = []
            # Two halves of 2 blocks each (one e4m3x2 cvt per half) keeps only
            # 32 widened fp32 values live at a time.
            for hf in cutlass.range_constexpr(2):
                xf = []
                for i in cutlass.range_constexpr(16):
                    xf.extend(unpack_bf16x2(w[16 * hf + i]))
                vmax = [tree_max([absmax(xf[16 * b + 2 * i], xf[16 * b + 2 * i + 1]) for i in range(8)])
                        for b in range(2)]
                pair, sff = block_scales2(vmax[0], vmax[1], gs)
                pairs.append(pair)
                for b in cutlass.range_constexpr(2):
                    os = out_scale(sff[b], gs)
                    for h in cutlass.range_constexpr(2):
                        rq[4 * hf + 2 * b + h] = quant8(xf[16 * b + 8 * h: 16 * b + 8 * h + 8], os)
            sf_word = pairs[0] | (pairs[1] << 16)
            g_q = cute.recast_tensor(
                cute.make_tensor(aligned(q.iterator, Int64(item) * 32, 32), cute.make_layout(32)), Uint32)
            cute.autovec_copy(rq, g_q)
            g_sf[0] = sf_word
        elif item < n_total:
            g_sf[0] = Uint32(0)  # swizzled padding rows [M, Mpad)


# ---------------------------------------------------------------------------
# Global scale kernel
# ---------------------------------------------------------------------------
class Nvfp4GlobalScaleKernel:
    """gs = 2688 / max|x| (1.0 if max == 0), deterministic and graph-safe.

    Launch 1: nblocks = min(P, #tiles) CTAs (>= 1) grid-stride over tiles of
    threads*8 16-byte chunks of the contiguous x (thread tid loads chunks
    j*threads + tid, j < 8: every warp load instruction reads one contiguous
    512 B; 64-bit tile offsets, so any M*K fits); each CTA writes
    its max to workspace[bid]. Launch 2 (same stream, so ordered): one CTA
    reduces workspace[0:nblocks] and writes gs. max is order-independent, so the
    result is deterministic; every workspace entry read is rewritten by the same
    call, so no state needs resetting (CUDA-graph safe, no host sync)."""

    def __init__(self, k: int, threads_per_cta: int = 256, num_partials: int = 1024):
        assert k % 64 == 0 and k >= 64
        assert threads_per_cta % 32 == 0 and 32 <= threads_per_cta <= 1024
        self.k = k
        self.threads = threads_per_cta
        self.num_partials = num_partials

    @cute.jit
    def __call__(self, x: cute.Tensor, gs_out: cute.Tensor, workspace: cute.Tensor, stream):
        # A tile = `threads` 64-element items = threads*8 16 B chunks.
        n_items = x.shape[0] * (self.k // ELEMS_PER_ITEM)
        n_tiles = cute.ceil_div(n_items, self.threads)
        nblocks = cutlass.max(cutlass.min(n_tiles, self.num_partials), 1)  # >= 1 even if M == 0
        self.partial_kernel(x, workspace, n_items, n_tiles).launch(
            grid=[nblocks, 1, 1], block=[self.threads, 1, 1], stream=stream)
        self.final_kernel(gs_out, workspace, nblocks).launch(
            grid=[1, 1, 1], block=[self.threads, 1, 1], stream=stream)

    @cute.jit
    def _block_max(self, v: Float32) -> Float32:
        """CTA-wide max of v (result valid in every thread)."""
        smem = cutlass.utils.SmemAllocator()
        red = smem.allocate_tensor(Float32, cute.make_layout(self.threads // 32), byte_alignment=16)
        v = cute.arch.warp_reduction(v, fmax)
        # warp_idx() is a full-warp shfl.sync: it must run on every lane, never inside the
        # lane-0 branch (there it waits for lanes that never arrive: a hang seen on an H100).
        warp = cute.arch.warp_idx()
        if cute.arch.lane_idx() == 0:
            red[warp] = v
        cute.arch.sync_threads()
        v = red[0]
        for i in cutlass.range_constexpr(1, self.threads // 32):
            v = fmax(v, red[i])
        return v

    @cute.kernel
    def partial_kernel(self, x: cute.Tensor, workspace: cute.Tensor, n_items: Int32, n_tiles: Int32):
        tidx, _, _ = cute.arch.thread_idx()
        bidx, _, _ = cute.arch.block_idx()
        gdim, _, _ = cute.arch.grid_dim()
        acc = Float32(0.0)
        r = cute.make_rmem_tensor(cute.make_layout(ELEMS_PER_ITEM), BFloat16)
        w = cute.recast_tensor(r, Uint32)
        for tile in cutlass.range(bidx, n_tiles, gdim):
            rem = n_items - tile * self.threads  # items of this tile that exist
            base = aligned(x.iterator, Int64(tile) * (self.threads * ELEMS_PER_ITEM), 8)
            r.fill(0.0)  # chunks past the end contribute |0|
            for j in cutlass.range_constexpr(8):
                cl = j * self.threads + tidx  # chunk within the tile (item cl / 8)
                if (cl >> 3) < rem:
                    src = cute.make_tensor(aligned(base, cl * 8, 8), cute.make_layout(8))
                    cute.autovec_copy(src, cute.make_tensor(r.iterator + j * 8, cute.make_layout(8)))
            p = []
            for i in cutlass.range_constexpr(32):
                lo, hi = unpack_bf16x2(w[i])
                p.append(absmax(lo, hi))
            acc = fmax(acc, tree_max(p))
        acc = self._block_max(acc)
        if tidx == 0:
            workspace[bidx] = acc

    @cute.kernel
    def final_kernel(self, gs_out: cute.Tensor, workspace: cute.Tensor, nblocks: Int32):
        tidx, _, _ = cute.arch.thread_idx()
        acc = Float32(0.0)
        for i in cutlass.range(tidx, nblocks, self.threads):
            acc = fmax(acc, workspace[i])
        acc = self._block_max(acc)
        if tidx == 0:
            gs = Float32(1.0)
            if acc != Float32(0.0):
                gs = div_rn(Float32(GS_NUMERATOR), acc)
            gs_out[0] = gs


# ---------------------------------------------------------------------------
# Build helpers
# ---------------------------------------------------------------------------
# Tuning knobs accepted in `params` (aliases: the family dataclasses use the short names).
_QUANT_KNOBS = {"threads": "threads_per_cta", "threads_per_cta": "threads_per_cta", "stage_smem": "stage_smem"}
_GS_KNOBS = {"threads": "threads_per_cta", "threads_per_cta": "threads_per_cta",
             "partials": "num_partials", "num_partials": "num_partials"}


def _knobs(params: dict, names: dict) -> dict:
    return {names[n]: v for n, v in params.items() if n in names}


def _num_partials(params: dict) -> int:
    return _knobs(params, _GS_KNOBS).get("num_partials", 1024)


def make_kernel(kind: str, params: dict):
    if kind == "quantize":
        return Nvfp4QuantizeKernel(params["k"], params["sf_layout"], **_knobs(params, _QUANT_KNOBS))
    if kind == "global_scale":
        return Nvfp4GlobalScaleKernel(params["k"], **_knobs(params, _GS_KNOBS))
    raise ValueError(f"unknown kind {kind!r}")


def fake_quantized(rows, k: int, sf_rows) -> tuple:
    """Fake (global_scale, q [rows, K/2], sf [sf_rows, K/16]) of every NVFP4-quantizing entry point
    (here and moe_glue's fused ones), alignments as their signatures promise."""
    return (fake_row_major(Float32, (1,), 4), fake_row_major(Uint8, (rows, k // 2), 16),
            fake_row_major(Uint8, (sf_rows, k // 16), 4))


def fake_args(kind: str, params: dict):
    k = params["k"]
    m = cute.sym_int()  # one SymInt object shared by every tensor with M rows
    x = fake_row_major(BFloat16, (m, k), 16)
    if kind == "quantize":
        mpad = cute.sym_int(divisibility=128) if params["sf_layout"] == "swizzled" else m
        return (x, *fake_quantized(m, k, mpad), fake_stream())
    if kind == "global_scale":
        return x, fake_row_major(Float32, (1,), 4), fake_row_major(Float32, (_num_partials(params),), 4), fake_stream()
    raise ValueError(f"unknown kind {kind!r}")
