"""Register-level PTX of the warp-specialized W4A16 kernel (kernel.py): the NVFP4 decode into the
WGMMA A fragment, the E4M3 scale pair, 1-D bulk copies into the stage ring, mbarrier waits and
the RS warpgroup MMA. Inline asm where the bit-level semantics must be exact and visible.

Fragment facts (PTX ISA, wgmma m64nNk16 with A in registers, bf16): thread (warp w of the
warpgroup, lane 4l + c) holds a0 = (row 16w + l, k 2c..2c+1), a1 = (row + 8, same k),
a2 = (row, k 2c+8..2c+9), a3 = (row + 8, k 2c+8..), each a bf16x2 with the lower k in the low
half. quack's nvfp4 blob gives this thread one 4-byte word per k16 block whose bytes are
exactly a0..a3 (layout.py: j = 4b + 2e + h), each byte two E2M1 codes, low nibble = lower k.
"""

import cutlass
from cutlass import Float32, Int32, Int64
from cutlass._mlir import ir
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op

from ..ptx import inline_asm as _asm


def _struct(ty: str, n: int):
    return ir.Type.parse("!llvm.struct<(" + ", ".join([ty] * n) + ")>")


def _ints(res, n, loc, ip):
    return tuple(Int32(llvm.extractvalue(T.i32(), res, [i], loc=loc, ip=ip)) for i in range(n))


def _effect(text, vals, cons, loc, ip):
    llvm.inline_asm(None, [v.ir_value(loc=loc, ip=ip) for v in vals], text, cons, has_side_effects=True,
                    loc=loc, ip=ip)


# ----------------------------------------------------------------------------- decode
# E2M1 code s e1 e0 m -> bf16 bits (sign 15, exponent bits 8..7, mantissa msb 6) is the value
# v * 2^-126 exactly (e = 0: the bf16 subnormal m * 2^-127 = (m * 0.5) * 2^-126). Per output
# register R_j (byte j of the word): P = prmt(even nibbles, odd nibbles) puts the low code at
# bits 0..3 and the high code at 16..19 (bytes 1 and 3 are don't-care: the masks drop them), then
# R = ((P << 6) & 0x01C001C0) | ((P << 12) & 0x80008000). Multiplying by the scale pair
# (s * 2^119, s * 2^119) in bf16 gives v * s * 2^-7 exactly (<= 6 significant bits, no over- or
# underflow for any finite E4M3 s); the epilogue multiplies the fp32 sums by alpha * 2^7.


@dsl_user_op
def decode_k16(word: Int32, s_lo: Int32, s_hi: Int32, *, loc=None, ip=None):
    """4 bytes of codes (a0..a3 of one k16 block) -> the 4 bf16x2 A registers, scaled: a0, a2 by
    s_lo (row 16w + l), a1, a3 by s_hi (row + 8)."""
    body = "{.reg .b32 ev, od, p, x, y;\n\t"
    body += "and.b32 ev, $4, 0x0F0F0F0F;\n\tshr.u32 od, $4, 4;\n\tand.b32 od, od, 0x0F0F0F0F;\n\t"
    for j in range(4):
        sel = j | (j << 4) | ((4 + j) << 8) | ((4 + j) << 12)
        scale = "$5" if j % 2 == 0 else "$6"
        body += (
            f"prmt.b32 p, ev, od, {sel:#x};\n\t"
            "shl.b32 x, p, 6;\n\tshl.b32 y, p, 12;\n\t"
            "and.b32 x, x, 0x01C001C0;\n\tand.b32 y, y, 0x80008000;\n\tor.b32 x, x, y;\n\t"
            f"mul.rn.bf16x2 ${j}, x, {scale};\n\t"
        )
    body += "}"
    res = _asm(_struct("i32", 4), [Int32(word), Int32(s_lo), Int32(s_hi)], body, "=r,=r,=r,=r,r,r,r", loc, ip)
    return _ints(res, 4, loc, ip)


@dsl_user_op
def scale_pair(word: Int32, half: cutlass.Constexpr[int], *, loc=None, ip=None):
    """The two E4M3 scale bytes in 16-bit half `half` of `word` (low byte: row 16w + l, high
    byte: row + 8) -> two bf16x2 registers (s * 2^119, same) each. Exact: E4M3 -> f16 is exact,
    2^119 keeps 448 * 2^119 < 2^128 and the smallest subnormal 2^-9 * 2^119 normal in bf16."""
    src = "lo" if half == 0 else "hi"
    body = (
        "{.reg .b16 lo, hi;\n\t.reg .b32 h2;\n\t.reg .f32 f0, f1;\n\t"
        "mov.b32 {lo, hi}, $2;\n\t"
        f"cvt.rn.f16x2.e4m3x2 h2, {src};\n\t"
        "mov.b32 {lo, hi}, h2;\n\t"
        "cvt.f32.f16 f0, lo;\n\tcvt.f32.f16 f1, hi;\n\t"
        "mul.f32 f0, f0, 0f7B000000;\n\tmul.f32 f1, f1, 0f7B000000;\n\t"
        "cvt.rn.bf16x2.f32 $0, f0, f0;\n\tcvt.rn.bf16x2.f32 $1, f1, f1;}"
    )
    return _ints(_asm(_struct("i32", 2), [Int32(word)], body, "=r,=r,r", loc, ip), 2, loc, ip)


# ----------------------------------------------------------------------------- shared memory


@dsl_user_op
def lds_v4(addr: Int32, *, loc=None, ip=None):
    # side effects: the load must stay after the mbarrier wait that publishes the stage
    res = llvm.inline_asm(_struct("i32", 4), [Int32(addr).ir_value(loc=loc, ip=ip)],
                          "ld.shared.v4.b32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,r",
                          has_side_effects=True, loc=loc, ip=ip)
    return _ints(res, 4, loc, ip)


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


@dsl_user_op
def mbar_wait(mbar: Int32, phase: Int32, *, loc=None, ip=None):
    """Spin until the mbarrier's phase with parity `phase` has completed."""
    _effect("{.reg .pred done;\n\tWAIT:\n\t"
            "mbarrier.try_wait.parity.shared::cta.b64 done, [$0], $1;\n\t"
            "@!done bra WAIT;}", [Int32(mbar), Int32(phase)], "r,r", loc, ip)


@dsl_user_op
def mbar_arrive(mbar: Int32, *, loc=None, ip=None):
    _effect("mbarrier.arrive.shared::cta.b64 _, [$0];", [Int32(mbar)], "r", loc, ip)


# ----------------------------------------------------------------------------- warpgroup MMA


@dsl_user_op
def wg_fence(*, loc=None, ip=None):
    _effect("wgmma.fence.sync.aligned;", [], "", loc, ip)


@dsl_user_op
def wg_commit(*, loc=None, ip=None):
    _effect("wgmma.commit_group.sync.aligned;", [], "", loc, ip)


@dsl_user_op
def wg_wait(pending: cutlass.Constexpr[int], *, loc=None, ip=None):
    _effect(f"wgmma.wait_group.sync.aligned {pending};", [], "", loc, ip)


@dsl_user_op
def hold(vals, *, loc=None, ip=None):
    """Pass fp32 registers through an empty volatile asm so that reads of the accumulators are not
    hoisted above the preceding wgmma.wait_group (the compiler sees no data dependence)."""
    n = len(vals)
    cons = ",".join(["=f"] * n + [str(i) for i in range(n)])
    res = llvm.inline_asm(_struct("f32", n), [Float32(v).ir_value(loc=loc, ip=ip) for v in vals], "", cons,
                          has_side_effects=True, loc=loc, ip=ip)
    return [Float32(llvm.extractvalue(T.f32(), res, [i], loc=loc, ip=ip)) for i in range(n)]


@dsl_user_op
def wgmma_rs(acc, a, desc: Int64, n: cutlass.Constexpr[int], *, loc=None, ip=None):
    """acc (n / 2 fp32 per thread) += A (64 x 16 bf16, registers a[0..3]) . B (16 x n, K-major
    SW128 descriptor); always accumulates (the caller zeroes acc once per tile)."""
    m = n // 2
    outs = ", ".join(f"${i}" for i in range(m))
    asm = ("{.reg .pred p;\n\t"
           f"setp.ne.b32 p, ${m + 5}, 0;\n\t"  # scale-d is a predicate operand
           f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.bf16.bf16 {{{outs}}}, "
           f"{{${m}, ${m + 1}, ${m + 2}, ${m + 3}}}, ${m + 4}, p, 1, 1, 0;}}")
    cons = ",".join(["=f"] * m + ["r"] * 4 + ["l", "r"] + [str(i) for i in range(m)])
    args = [Int32(x) for x in a] + [Int64(desc), Int32(1)] + [Float32(v) for v in acc]
    res = llvm.inline_asm(_struct("f32", m), [x.ir_value(loc=loc, ip=ip) for x in args], asm, cons,
                          has_side_effects=True, loc=loc, ip=ip)
    return [Float32(llvm.extractvalue(T.f32(), res, [i], loc=loc, ip=ip)) for i in range(m)]


def sw128_desc(addr: Int32) -> Int64:
    """WGMMA descriptor of a K-major, 128-byte-swizzled operand at shared address `addr` (rows
    of 128 B, 8-row atoms of 1024 B, atoms 1024-aligned): start >> 4, LBO 1 (unused by K-major
    SW128), SBO 1024 >> 4, layout type SWIZZLE_128B (1) in bits 62-63."""
    return (Int64(addr >> 4) & Int64(0x3FFF)) | Int64(1 << 16) | Int64(64 << 32) | Int64(1 << 62)
