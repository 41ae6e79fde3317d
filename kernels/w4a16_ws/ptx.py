"""Register-level PTX of the warp-specialized W4A16 kernel (kernel.py): the NVFP4 decode into the
WGMMA A fragment, the E4M3 scale pair, 1-D bulk copies into the stage ring, mbarrier waits and
the RS warpgroup MMA (kernels/w4a16_device.py). Inline asm where the bit-level semantics must be exact and visible.

Fragment facts (PTX ISA, wgmma m64nNk16 with A in registers, bf16): thread (warp w of the
warpgroup, lane 4l + c) holds a0 = (row 16w + l, k 2c..2c+1), a1 = (row + 8, same k),
a2 = (row, k 2c+8..2c+9), a3 = (row + 8, k 2c+8..), each a bf16x2 with the lower k in the low
half. quack's nvfp4 blob gives this thread one 4-byte word per k16 block whose bytes are
exactly a0..a3 (layout.py: j = 4b + 2e + h), each byte two E2M1 codes, low nibble = lower k.
"""

import cutlass
from cutlass import Float32, Int32, Int64
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op

from ..ptx import inline_asm as _asm
from ..w4a16_device import struct_type as _struct


def _ints(res, n, loc, ip):
    return tuple(Int32(llvm.extractvalue(T.i32(), res, [i], loc=loc, ip=ip)) for i in range(n))


def _effect(text, vals, cons, loc, ip):
    llvm.inline_asm(None, [v.ir_value(loc=loc, ip=ip) for v in vals], text, cons, has_side_effects=True,
                    loc=loc, ip=ip)


# ----------------------------------------------------------------------------- decode
# Table decode with byte permutes: a code's magnitude (3 bits) indexes an 8-byte table once for
# the low and once for the high byte of bf16(|v| * 2^120) (LUT_LO, LUT_HI below); the sign bit
# goes into bit 7 of the high byte; two more permutes interleave low/high bytes into the bf16x2
# registers. The scale pair register is built from the E4M3 bits as bf16 bits ((b & 0x7F) << 4 |
# sign << 15): exactly s * 2^-120 for every finite E4M3 (subnormals become bf16 subnormals). One
# bf16x2 multiply by one lane of the pair (an HMUL2 source swizzle, no extra instruction) then
# gives v * s exactly (<= 6 significant bits, in range), so the epilogue multiplies the fp32 sums
# by alpha alone. CPU replay: tests/kernels/test_w4a16_ws.py.
# Per 8 codes: 15 integer ops + 4 HMUL2; per scale pair (2 rows x one k16 block): 3 ops.
# The tables' first words ride registers (a PRMT has one immediate slot, which ptxas gives to the
# second word); they are laundered through %tid.x once per thread (lut_regs) so that ptxas can
# neither make them uniform nor rematerialize them (UR -> R moves) inside the mainloop.
LUT_LO = (0xC0800000, 0xC0804000)  # low bytes of bf16(m * 2^120), m = 0, .5, 1, 1.5 | 2, 3, 4, 6
LUT_HI = (0x7B7B7B00, 0x7C7C7C7C)  # high bytes (sign clear)


@dsl_user_op
def pinned(v: cutlass.Constexpr[int], *, loc=None, ip=None):
    """The constant v in a per-thread register: (tid & 2^31) | v, tid < 2^31 (see above)."""
    # one lop3 ((a & b) | c): ptxas folds a separate and.b32 (it knows tid < 1024), not this
    body = f"{{.reg .b32 t;\n\tmov.u32 t, %tid.x;\n\tlop3.b32 $0, t, 0x80000000, {v:#x}, 0xEA;}}"
    return Int32(_asm(T.i32(), [], body, "=r", loc, ip))


def lut_regs():
    """(LUT_LO[0], LUT_HI[0]) in pinned registers: once per consumer thread, before its loops."""
    return pinned(LUT_LO[0]), pinned(LUT_HI[0])


@dsl_user_op
def decode_k16(word: Int32, lo_a: Int32, hi_a: Int32, pair: Int32, *, loc=None, ip=None):
    """4 bytes of codes (a0..a3 of one k16 block, low nibble = lower k) -> the 4 bf16x2 A
    registers v * s: a0, a2 times the pair's low lane (row 16w + l), a1, a3 times its high lane
    (row + 8). lo_a, hi_a: lut_regs()."""
    body = (
        "{.reg .b32 xm, xh, xs, l03, h03, l47, h47, s03, s47, r0, r1, r2, r3, sl, sh;\n\t"
        ".reg .b16 pl, ph;\n\t"
        "mov.b32 {pl, ph}, $7;\n\tmov.b32 sl, {pl, pl};\n\tmov.b32 sh, {ph, ph};\n\t"
        "and.b32 xm, $4, 0x77777777;\n\tshr.u32 xh, xm, 16;\n\t"
        f"prmt.b32 l03, $5, {LUT_LO[1]:#x}, xm;\n\t"
        f"prmt.b32 h03, $6, {LUT_HI[1]:#x}, xm;\n\t"
        f"prmt.b32 l47, $5, {LUT_LO[1]:#x}, xh;\n\t"
        f"prmt.b32 h47, $6, {LUT_HI[1]:#x}, xh;\n\t"
        # byte k of x << 4 holds the sign of code 2k at bit 7, byte k of x that of code 2k + 1
        "shl.b32 xs, $4, 4;\n\t"
        "prmt.b32 s03, xs, $4, 0x5140;\n\tprmt.b32 s47, xs, $4, 0x7362;\n\t"
        "and.b32 s03, s03, 0x80808080;\n\tand.b32 s47, s47, 0x80808080;\n\t"
        "or.b32 h03, h03, s03;\n\tor.b32 h47, h47, s47;\n\t"
        "prmt.b32 r0, l03, h03, 0x5140;\n\tprmt.b32 r1, l03, h03, 0x7362;\n\t"
        "prmt.b32 r2, l47, h47, 0x5140;\n\tprmt.b32 r3, l47, h47, 0x7362;\n\t"
        "mul.rn.bf16x2 $0, r0, sl;\n\tmul.rn.bf16x2 $1, r1, sh;\n\t"
        "mul.rn.bf16x2 $2, r2, sl;\n\tmul.rn.bf16x2 $3, r3, sh;}"
    )
    res = _asm(_struct("i32", 4), [Int32(word), Int32(lo_a), Int32(hi_a), Int32(pair)], body,
               "=r,=r,=r,=r,r,r,r,r", loc, ip)
    return _ints(res, 4, loc, ip)


def pair_selector(byte: int) -> int:
    """prmt selector: bytes [b, sign(b) x 8, b + 1, sign(b + 1) x 8] of the scale word (a
    selector nibble with bit 3 set replicates the selected byte's top bit)."""
    return byte | ((8 | byte) << 4) | ((byte + 1) << 8) | ((8 | (byte + 1)) << 12)


PAIR_MASK = 0x87F087F0  # after << 4: exponent+mantissa of each byte at bits 4..10, sign at bit 15


@dsl_user_op
def scale_pair(word: Int32, byte: cutlass.Constexpr[int], *, loc=None, ip=None):
    """E4M3 scale bytes `byte` (row 16w + l) and `byte` + 1 (row + 8) of `word` -> one bf16x2
    (s_lo * 2^-120, s_hi * 2^-120), exact (see above): 3 ops."""
    body = ("{.reg .b32 d;\n\t"
            f"prmt.b32 d, $1, 0, {pair_selector(byte):#x};\n\t"
            f"shl.b32 d, d, 4;\n\tand.b32 $0, d, {PAIR_MASK:#x};}}")
    return Int32(_asm(T.i32(), [Int32(word)], body, "=r,r", loc, ip))


# ----------------------------------------------------------------------------- shared memory


@dsl_user_op
def lds_v4(addr: Int32, *, loc=None, ip=None):
    # side effects: the load must stay after the mbarrier wait that publishes the stage
    res = llvm.inline_asm(_struct("i32", 4), [Int32(addr).ir_value(loc=loc, ip=ip)],
                          "ld.shared.v4.b32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,r",
                          has_side_effects=True, loc=loc, ip=ip)
    return _ints(res, 4, loc, ip)


@dsl_user_op
def lds_u32(addr: Int32, *, loc=None, ip=None):
    res = llvm.inline_asm(T.i32(), [Int32(addr).ir_value(loc=loc, ip=ip)], "ld.shared.b32 $0, [$1];", "=r,r",
                          has_side_effects=True, loc=loc, ip=ip)
    return Int32(res)


def blob_words(tile, tw, kq: bool):
    """Thread tw's four blob words (k16 blocks 0..3) of the (m64, k64) blob tile at shared address `tile`: the 16
    bytes at 16 tw, or, in word order "rotq" (kq; runtime/word_order.py), block b's word at 16 (8 b + g) + 4 t of
    warp tw // 32's 512-byte slice (lane 4 g + t): four 4-byte loads, each hitting the 32 banks once. Plain Python,
    traced inline."""
    if kq:
        lane = tw % 32
        base = tile + (tw // 32) * 512 + (lane // 4) * 16 + (lane % 4) * 4
        return [lds_u32(base + b * 128) for b in range(4)]
    return lds_v4(tile + tw * 16)


@dsl_user_op
def lds_v2(addr: Int32, *, loc=None, ip=None):
    res = llvm.inline_asm(_struct("i32", 2), [Int32(addr).ir_value(loc=loc, ip=ip)],
                          "ld.shared.v2.b32 {$0, $1}, [$2];", "=r,=r,r", has_side_effects=True, loc=loc, ip=ip)
    return _ints(res, 2, loc, ip)


@dsl_user_op
def bulk_g2s(dst: Int32, src: Int64, nbytes: cutlass.Constexpr[int], mbar: Int32, *, loc=None, ip=None):
    """1-D bulk copy global -> shared (TMA engine, no tensor map) completing `nbytes` of the
    mbarrier's transaction count. dst, src 16-byte aligned, nbytes a multiple of 16."""
    _effect(f"cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [$0], [$1], {nbytes}, [$2];",
            [Int32(dst), Int64(src), Int32(mbar)], "r,l,r", loc, ip)


_SEM = {"cta": "", "cluster": ".{}.cluster"}  # mbarrier memory semantics: default (CTA scope) or at cluster scope


@dsl_user_op
def mbar_wait(mbar: Int32, phase: Int32, scope: str = "cta", *, loc=None, ip=None):
    """Spin until the mbarrier's phase with parity `phase` has completed. scope "cluster": acquire at
    cluster scope (pairs with mbar_arrive_cluster(..., "cluster"): the peers' writes are visible)."""
    sem = _SEM[scope].format("acquire")
    _effect("{.reg .pred done;\n\tWAIT:\n\t"
            f"mbarrier.try_wait.parity{sem}.shared::cta.b64 done, [$0], $1;\n\t"
            "@!done bra WAIT;}", [Int32(mbar), Int32(phase)], "r,r", loc, ip)


@dsl_user_op
def mbar_test(mbar: Int32, phase: Int32, *, loc=None, ip=None) -> Int32:
    """1 if the mbarrier's phase with parity `phase` has completed, else 0: one non-blocking
    test_wait (never suspends the thread, unlike try_wait)."""
    body = ("{.reg .pred done;\n\t"
            "mbarrier.test_wait.parity.shared::cta.b64 done, [$1], $2;\n\t"
            "selp.b32 $0, 1, 0, done;}")
    return Int32(llvm.inline_asm(T.i32(), [Int32(mbar).ir_value(loc=loc, ip=ip), Int32(phase).ir_value(loc=loc, ip=ip)],
                                 body, "=r,r,r", has_side_effects=True, loc=loc, ip=ip))


@dsl_user_op
def mbar_arrive(mbar: Int32, *, loc=None, ip=None):
    _effect("mbarrier.arrive.shared::cta.b64 _, [$0];", [Int32(mbar)], "r", loc, ip)


@dsl_user_op
def mbar_arrive_cluster(mbar: Int32, cta: Int32, scope: str = "cta", *, loc=None, ip=None):
    """Arrive on the mbarrier at this CTA's shared address `mbar` in cluster CTA `cta` (its own
    rank included; mapa). scope "cta": the default (release, CTA-scope) semantics, as CUTLASS's
    ClusterBarrier::arrive(cta_id): the arriving warp's reads of the stage (retired wgmmas, shared
    loads into registers) are complete before that CTA's producer refills it (mc 2: kernel.py
    _release). scope "cluster": release at cluster scope, so what this thread wrote (and, after
    fence_cluster + bar.warp.sync, what its warp wrote) is visible to a thread of the cluster that
    observes the phase with mbar_wait(..., "cluster") (red 1: stream.py _split_reduce_cluster)."""
    sem = _SEM[scope].format("release")
    _effect("{.reg .b32 ra;\n\tmapa.shared::cluster.u32 ra, $0, $1;\n\t"
            f"mbarrier.arrive{sem}.shared::cluster.b64 _, [ra];}}", [Int32(mbar), Int32(cta)], "r,r", loc, ip)


# ----------------------------------------------------------------------------- split-K reduction
# Global memory of the dense split-K reduction (kernel.py _split_reduce), all volatile asm so
# that none moves across the fences / the arrival atomic around it.


@dsl_user_op
def stg_f32(addr: Int64, v: Float32, *, loc=None, ip=None):
    _effect("st.global.f32 [$0], $1;", [Int64(addr), Float32(v)], "l,f", loc, ip)


@dsl_user_op
def stg_s32(addr: Int64, v: Int32, *, loc=None, ip=None):
    _effect("st.relaxed.gpu.global.s32 [$0], $1;", [Int64(addr), Int32(v)], "l,r", loc, ip)


@dsl_user_op
def ldg_cg_f32(addr: Int64, *, loc=None, ip=None):
    """A load cached in L2 only: the value was written by another SM (L1 is not coherent)."""
    return Float32(llvm.inline_asm(T.f32(), [Int64(addr).ir_value(loc=loc, ip=ip)], "ld.global.cg.f32 $0, [$1];",
                                   "=f,l", has_side_effects=True, loc=loc, ip=ip))


def _st_v4_f32(op: str, addr, cons: str, v, loc, ip):
    """`op` [addr], 4 fp32: one 16-byte store (addr: an Int64 global address, cons "l", or an Int32 shared
    one, "r")."""
    _effect(f"{op} [$0], {{$1, $2, $3, $4}};", [addr, *(Float32(x) for x in v)], f"{cons},f,f,f,f", loc, ip)


def _ld_v4_f32(op: str, addr, cons: str, loc, ip):
    """`op` of 4 fp32 at addr (as _st_v4_f32's), one 16-byte load, volatile: it stays after the fence or
    barrier wait before it."""
    res = llvm.inline_asm(_struct("f32", 4), [addr.ir_value(loc=loc, ip=ip)], f"{op} {{$0, $1, $2, $3}}, [$4];",
                          f"=f,=f,=f,=f,{cons}", has_side_effects=True, loc=loc, ip=ip)
    return tuple(Float32(llvm.extractvalue(T.f32(), res, [i], loc=loc, ip=ip)) for i in range(4))


@dsl_user_op
def stg_v4_f32(addr: Int64, v, *, loc=None, ip=None):
    """One 16-byte store of 4 fp32 (addr 16-byte aligned)."""
    _st_v4_f32("st.global.v4.f32", Int64(addr), "l", v, loc, ip)


@dsl_user_op
def ldg_cg_v4_f32(addr: Int64, *, loc=None, ip=None):
    """ldg_cg_f32's 16-byte form: 4 fp32 cached in L2 only (addr 16-byte aligned)."""
    return _ld_v4_f32("ld.global.cg.v4.f32", Int64(addr), "l", loc, ip)


@dsl_user_op
def fence_gpu(*, loc=None, ip=None):
    """fence.acq_rel.gpu (membar.gl): this thread's earlier writes are visible GPU-wide before its later ones."""
    _effect("fence.acq_rel.gpu;", [], "", loc, ip)


@dsl_user_op
def atom_add_gpu(addr: Int64, v: Int32, *, loc=None, ip=None):
    """atomicAdd on a global int32 (GPU scope, acq_rel); returns the old value."""
    return Int32(llvm.inline_asm(T.i32(), [Int64(addr).ir_value(loc=loc, ip=ip), Int32(v).ir_value(loc=loc, ip=ip)],
                                 "atom.acq_rel.gpu.global.add.s32 $0, [$1], $2;", "=r,l,r", has_side_effects=True,
                                 loc=loc, ip=ip))


# ----------------------------------------------------------------------------- cluster split-K reduction
# red 1 (stream.py _split_reduce_cluster): splits 2q, 2q + 1 of an output tile are one cluster of two
# CTAs; each keeps its partial in its own shared memory, the cluster-scope mbarriers (mbar_arrive_cluster /
# mbar_wait with scope "cluster") order them, and each CTA reads its half of both partials through
# distributed shared memory (mapa + ld.shared::cluster).


@dsl_user_op
def sts_v4_f32(addr: Int32, v, *, loc=None, ip=None):
    """One 16-byte shared store of 4 fp32 (addr 16-byte aligned)."""
    _st_v4_f32("st.shared.v4.f32", Int32(addr), "r", v, loc, ip)


@dsl_user_op
def mapa(addr: Int32, cta: Int32, *, loc=None, ip=None) -> Int32:
    """This CTA's shared address `addr` -> the same offset in cluster CTA `cta`'s shared memory (a
    shared::cluster address; offsets add: mapa(a + o) = mapa(a) + o)."""
    return Int32(llvm.inline_asm(T.i32(), [Int32(addr).ir_value(loc=loc, ip=ip), Int32(cta).ir_value(loc=loc, ip=ip)],
                                 "mapa.shared::cluster.u32 $0, $1, $2;", "=r,r,r", has_side_effects=False,
                                 loc=loc, ip=ip))


@dsl_user_op
def ld_dsmem_v4_f32(addr: Int32, *, loc=None, ip=None):
    """4 fp32 from a shared::cluster address (mapa; 16-byte aligned), after the barrier wait."""
    return _ld_v4_f32("ld.shared::cluster.v4.f32", Int32(addr), "r", loc, ip)


@dsl_user_op
def fence_cluster(*, loc=None, ip=None):
    """fence.acq_rel.cluster: this thread's earlier shared accesses are ordered before its later ones
    for every thread of the cluster."""
    _effect("fence.acq_rel.cluster;", [], "", loc, ip)


# ----------------------------------------------------------------------------- epilogue
# The shared-memory epilogue (kernel.py _epilogue_smem): fp32 accumulator pairs -> bf16x2 (ptx.pack_bf16x2), the
# warp's 16 x 16 (weight rows x tokens) block transposed into shared memory by stmatrix, read back
# as 16-byte rows of one token and stored with one 16-byte global store per lane.


@dsl_user_op
def stmatrix_x4_trans(addr: Int32, r0: Int32, r1: Int32, r2: Int32, r3: Int32, *, loc=None, ip=None):
    """Four 8x8 bf16 matrices (lane 4g + c holds row g, columns 2c, 2c + 1 of each: the mma
    accumulator fragment) stored transposed: memory row i of matrix q (address from lane 8q + i)
    = column i of the fragment (8 values, 16 bytes)."""
    _effect("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [$0], {$1, $2, $3, $4};",
            [Int32(addr), Int32(r0), Int32(r1), Int32(r2), Int32(r3)], "r,r,r,r,r", loc, ip)


@dsl_user_op
def stg_v4_if(addr: Int64, a: Int32, b: Int32, c: Int32, d: Int32, pred: Int32, *, loc=None, ip=None):
    """16-byte global store of (a, b, c, d) when pred != 0 (addr 16-byte aligned)."""
    _effect("{.reg .pred p;\n\tsetp.ne.b32 p, $5, 0;\n\t@p st.global.v4.b32 [$0], {$1, $2, $3, $4};}",
            [Int64(addr), Int32(a), Int32(b), Int32(c), Int32(d), Int32(pred)], "l,r,r,r,r,r", loc, ip)
