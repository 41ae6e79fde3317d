"""Register-level PTX (inline asm) of the w4a16 kernels, shared by kernel.py (split "k"/"n")
and wgmma.py (split "wg"), used where the fragment semantics must be exact and visible: the
m16n8k16 bf16 MMA (A: a0a1 = (row g, k 2t..2t+1), a2a3 = (row g+8, same k), a4a5 = (row g,
k 2t+8..), a6a7 = (row g+8, ...); B: b0b1 = (k 2t.., token g), b2b3 = (k 2t+8.., token g);
C: c0c1 = (row g, tokens 2t, 2t+1), c2c3 = (row g+8, ...)), the E2M1 decode, the E4M3 scale
conversion, the cache-hinted loads, shared-memory stores/loads and cp.async.
Every bit-level step here is replayed on the CPU by prepare.emulate_weights.
"""

import cutlass
from cutlass import Float32, Int32, Int64
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op

from nvfp4_aot.runtime.word_order import ROT_PLAN, shift_for

from ..ptx import inline_asm as _asm  # the one pure inline-asm helper of every family
from ..w4a16_device import struct_type as _struct
from . import DECODE_MASK, DECODE_MUL, DECODE_SEL, SCALE_MUL


def _ints(res, n, loc, ip):
    return tuple(Int32(llvm.extractvalue(T.i32(), res, [i], loc=loc, ip=ip)) for i in range(n))


@dsl_user_op
def ld_stream_v4(addr: Int64, *, loc=None, ip=None):
    """16 bytes of weights: read once per token tile, so keep them out of L1 (the activations
    that every warp re-reads live there)."""
    res = _asm(_struct("i32", 4), [Int64(addr)],
               "ld.global.nc.L1::no_allocate.v4.b32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l", loc, ip)
    return _ints(res, 4, loc, ip)


@dsl_user_op
def ld_cached_v4(addr: Int64, *, loc=None, ip=None):
    """16 bytes of activations (read-only for the kernel's lifetime; shared by all warps)."""
    res = _asm(_struct("i32", 4), [Int64(addr)], "ld.global.nc.v4.b32 {$0, $1, $2, $3}, [$4];",
               "=r,=r,=r,=r,l", loc, ip)
    return _ints(res, 4, loc, ip)


@dsl_user_op
def st_shared_v4(addr: Int32, x0: Int32, x1: Int32, x2: Int32, x3: Int32, *, loc=None, ip=None):
    vals = [a.ir_value(loc=loc, ip=ip) for a in (Int32(addr), Int32(x0), Int32(x1), Int32(x2), Int32(x3))]
    llvm.inline_asm(None, vals, "st.shared.v4.b32 [$0], {$1, $2, $3, $4};", "r,r,r,r,r",
                    has_side_effects=True, loc=loc, ip=ip)


@dsl_user_op
def ld_shared_v4(addr: Int32, *, loc=None, ip=None):
    # has_side_effects: the load must stay between the barriers that order it after the stores
    vals = [Int32(addr).ir_value(loc=loc, ip=ip)]
    res = llvm.inline_asm(_struct("i32", 4), vals, "ld.shared.v4.b32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,r",
                          has_side_effects=True, loc=loc, ip=ip)
    return _ints(res, 4, loc, ip)


@dsl_user_op
def scale_pair(half: Int32, hi: bool = False, *, loc=None, ip=None):
    """The two E4M3 scale bytes (row g, row g+8) in the low (hi: high) 16 bits of `half` -> one
    bf16x2 register (S_g, S_g+8), S = float(e4m3) * 2^119: exact (4 significant bits) and finite
    (448 * 2^119 < 2^128) for every finite E4M3 incl. zero, subnormals and negatives (e4m3 ->
    f16 -> f32 -> bf16 are exact; the power-of-two multiply is exact). The scale form of every
    2^-126 decode (decode_block / decode_sel / decode_rot); w4a16_ws's word order "rot" too."""
    asm = (
        "{.reg .b16 l, h;\n\t.reg .b32 x, m;\n\t.reg .f32 f0, f1;\n\t"
        "mov.b32 {l, h}, $1;\n\t"
        f"cvt.rn.f16x2.e4m3x2 x, {'h' if hi else 'l'};\n\t"
        "mov.b32 {l, h}, x;\n\t"
        "cvt.f32.f16 f0, l;\n\tcvt.f32.f16 f1, h;\n\t"
        "cvt.rn.bf16x2.f32 x, f1, f0;\n\t"
        f"mov.b32 m, {SCALE_MUL:#x};\n\t"
        "mul.rn.bf16x2 $0, x, m;}"
    )
    return Int32(_asm(T.i32(), [Int32(half)], asm, "=r,r", loc, ip))


@dsl_user_op
def quad_scales(half: Int32, *, loc=None, ip=None):
    """Lane t of each quad holds the scale pair of k16 block t (strip bytes 2t, 2t + 1 of the
    quad's 8): convert it once (scale_pair) and hand block b's result to every lane of the quad
    (shfl.idx within 4-lane segments), 4x less conversion work than each lane converting all 4."""
    s = scale_pair(half, loc=loc, ip=ip)
    out = []
    for b in range(4):
        # side effects: a warp-synchronous op must not be moved (every lane reaches it: uniform flow)
        out.append(Int32(llvm.inline_asm(T.i32(), [s.ir_value(loc=loc, ip=ip)],
                                         f"shfl.sync.idx.b32 $0, $1, {b}, 0x1C03, 0xffffffff;", "=r,r",
                                         has_side_effects=True, loc=loc, ip=ip)))
    return tuple(out)


@dsl_user_op
def ld_stream_u16(addr: Int64, *, loc=None, ip=None):
    """2 bytes (one lane's scale pair), zero-extended."""
    return Int32(_asm(T.i32(), [Int64(addr)], "ld.global.nc.L1::no_allocate.u16 $0, [$1];", "=r,l", loc, ip))


@dsl_user_op
def ld_shared_u16(addr: Int32, *, loc=None, ip=None):
    vals = [Int32(addr).ir_value(loc=loc, ip=ip)]
    return Int32(llvm.inline_asm(T.i32(), vals, "ld.shared.u16 $0, [$1];", "=r,r", has_side_effects=True, loc=loc,
                                 ip=ip))


@dsl_user_op
def decode_block(word: Int32, spair: Int32, *, loc=None, ip=None):
    """One blob word (k16 block b of lane (g, t): byte p = fragment register p, low nibble = even
    K) -> the 4 A-fragment registers, each v * scale * 2^-7 in bf16 (exact). Per register: prmt
    puts the two nibbles at bits 0..3 and 16..19, one multiply by 2^6 + 2^12 moves magnitude bits
    to bf16 (exponent low bits, mantissa msb) and the sign to 15|31, a mask keeps those: the pair
    reads v * 2^-126 (0.5 as a subnormal included); times S (scale_pair, row g for registers 0
    and 2, g+8 for 1 and 3, picked by a lane broadcast) it is v * scale * 2^-7."""
    body = ""
    for p in range(4):
        lane = "sl" if p % 2 == 0 else "sh"
        body += (f"prmt.b32 u, lo, hi, {DECODE_SEL[p]:#x};\n\tmul.lo.u32 u, u, {DECODE_MUL};\n\t"
                 f"and.b32 u, u, {DECODE_MASK:#x};\n\tmul.rn.bf16x2 ${p}, u, {lane};\n\t")
    asm = (
        "{.reg .b32 lo, hi, u, sl, sh;\n\t.reg .b16 l, h;\n\t"
        "and.b32 lo, $4, 0x0F0F0F0F;\n\tshr.u32 hi, $4, 4;\n\tand.b32 hi, hi, 0x0F0F0F0F;\n\t"
        "mov.b32 {l, h}, $5;\n\tmov.b32 sl, {l, l};\n\tmov.b32 sh, {h, h};\n\t"
        + body + "}"
    )
    res = _asm(_struct("i32", 4), [Int32(word), Int32(spair)], asm, "=r,=r,=r,=r,r,r", loc, ip)
    return _ints(res, 4, loc, ip)


@dsl_user_op
def ldmatrix_x4(addr: Int32, *, loc=None, ip=None):
    """Four 8x8 b16 matrices from shared memory (lane l gives row l % 8 of matrix l // 8): lane
    (g, t) gets (row g, cols 2t, 2t+1) of each, i.e. natural-K B fragments of 8 token rows."""
    vals = [Int32(addr).ir_value(loc=loc, ip=ip)]
    res = llvm.inline_asm(_struct("i32", 4), vals, "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {$0, $1, $2, $3}, [$4];",
                          "=r,=r,=r,=r,r", has_side_effects=True, loc=loc, ip=ip)
    return _ints(res, 4, loc, ip)


@dsl_user_op
def mma_bf16(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3, *, loc=None, ip=None):
    """D = A(16x16 bf16) B(16x8 bf16) + C, fp32."""
    asm = ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
           "{$0, $1, $2, $3}, {$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};")
    args = [Int32(a0), Int32(a1), Int32(a2), Int32(a3), Int32(b0), Int32(b1),
            Float32(c0), Float32(c1), Float32(c2), Float32(c3)]
    res = _asm(_struct("f32", 4), args, asm, "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f", loc, ip)
    return tuple(Float32(llvm.extractvalue(T.f32(), res, [i], loc=loc, ip=ip)) for i in range(4))


@dsl_user_op
def cp_async_16_ca(dst: Int32, src: Int64, pred=None, *, loc=None, ip=None):
    """16 bytes global -> shared, asynchronously, through L1 (the activations are re-read by the
    CTAs of the other weight rows). With pred (Int32): only when pred != 0, as one predicated
    instruction (no branch around it)."""
    if pred is None:
        vals = [a.ir_value(loc=loc, ip=ip) for a in (Int32(dst), Int64(src))]
        llvm.inline_asm(None, vals, "cp.async.ca.shared.global [$0], [$1], 16;", "r,l", has_side_effects=True,
                        loc=loc, ip=ip)
        return
    vals = [a.ir_value(loc=loc, ip=ip) for a in (Int32(dst), Int64(src), Int32(pred))]
    llvm.inline_asm(None, vals, "{.reg .pred p;\n\tsetp.ne.b32 p, $2, 0;\n\t@p cp.async.ca.shared.global [$0], [$1], 16;}",
                    "r,l,r", has_side_effects=True, loc=loc, ip=ip)


@dsl_user_op
def prefetch_l2(src: Int64, nbytes: int, pred, *, loc=None, ip=None):
    """nbytes (a multiple of 16, src 16-byte aligned) global -> L2 only, fire and forget (sm_90's bulk prefetch: no
    register, no barrier, nothing to wait for), when pred (Int32) != 0, as one predicated instruction."""
    vals = [a.ir_value(loc=loc, ip=ip) for a in (Int64(src), Int32(pred))]
    llvm.inline_asm(None, vals, "{.reg .pred p;\n\tsetp.ne.b32 p, $1, 0;\n\t"
                    f"@p cp.async.bulk.prefetch.L2.global [$0], {int(nbytes)};}}", "l,r", has_side_effects=True,
                    loc=loc, ip=ip)


@dsl_user_op
def cp_async_16(dst: Int32, src: Int64, *, loc=None, ip=None):
    """16 bytes global -> shared, asynchronously, L2 only (streamed weights are read once)."""
    vals = [a.ir_value(loc=loc, ip=ip) for a in (Int32(dst), Int64(src))]
    llvm.inline_asm(None, vals, "cp.async.cg.shared.global [$0], [$1], 16;", "r,l", has_side_effects=True, loc=loc,
                    ip=ip)


@dsl_user_op
def cp_async_commit(*, loc=None, ip=None):
    llvm.inline_asm(None, [], "cp.async.commit_group;", "", has_side_effects=True, loc=loc, ip=ip)


@dsl_user_op
def cp_async_wait(pending: cutlass.Constexpr[int], *, loc=None, ip=None):
    """Wait until at most `pending` of this thread's newest cp.async groups are in flight."""
    llvm.inline_asm(None, [], f"cp.async.wait_group {pending};", "", has_side_effects=True, loc=loc, ip=ip)


# act_order "quad8" (runtime/layout.py): the bitselect decode. Registers pair the nibbles 16 bits
# apart in the blob word (k 2t with 2t + 8, and 2t + 1 with 2t + 9 of one row), so one shift of
# the whole word puts both magnitudes at bf16 bits 6..8 / 22..24 and one shift of the word's
# sign bits (even or odd nibbles, 8 bits apart: the extra ones land on bits the select ignores)
# puts both signs at 15 / 31; lop3 picks magnitude bits at SEL_MASK and sign bits elsewhere.
SEL_MASK = 0x01C001C0  # bf16x2 exponent low bits (8..7 | 24..23) and mantissa msb (6 | 22)
SEL_EVEN, SEL_ODD = 0x08080808, 0x80808080  # the signs of the low / high nibbles of each byte
# (magnitude shift, sign source, sign shift) per register q of decode_sel; shift < 0 is right.
# q = 0 / 1: row g, k (2t, 2t+8) / (2t+1, 2t+9); q = 2 / 3: row g+8, same. Nibble i of the word
# (bits 4i..4i+3) is (row g + 8 ((i >> 1) & 1), K 2t + (i & 1) + 8 (i >> 2)).
SEL_PLAN = ((6, "e", 12), (2, "o", 8), (-2, "e", 4), (-6, "o", 0))
SEL_REGS = (0, 2, 1, 3)  # mma A registers (a0a1, a2a3, a4a5, a6a7) = decode_sel results q


def _shift(dst: str, src: str, s: int) -> str:
    if s == 0:
        return f"mov.b32 {dst}, {src};\n\t"
    return f"shl.b32 {dst}, {src}, {s};\n\t" if s > 0 else f"shr.u32 {dst}, {src}, {-s};\n\t"


@dsl_user_op
def decode_sel(word: Int32, spair: Int32, *, loc=None, ip=None):
    """act_order "quad8": one blob word -> the 4 A-fragment registers of a k16 block whose K is
    permuted within the block (slot 2t+1 holds K 2t+8, slot 2t+8 holds K 2t+1: quad8's B words),
    each v * scale * 2^-7 in bf16, bit-identical values to decode_block. Per register: two shifts (one may be shared), one lop3 (bitselect), one bf16x2
    multiply; per word: two ands (the sign words)."""
    body = ("and.b32 se, $4, %d;\n\tand.b32 so, $4, %d;\n\t" % (SEL_EVEN, SEL_ODD)
            + "mov.b32 {l, h}, $5;\n\tmov.b32 sl, {l, l};\n\tmov.b32 sh, {h, h};\n\t"
            + f"mov.b32 m, {SEL_MASK};\n\t")
    for q, (ms, src, ss) in enumerate(SEL_PLAN):
        body += _shift("a", "$4", ms) + _shift("b", "se" if src == "e" else "so", ss)
        # lop3 0xE4 = (a & c) | (b & ~c): magnitude bits from a at SEL_MASK, sign bits from b
        body += "lop3.b32 a, a, b, m, 0xE4;\n\t"
        body += f"mul.rn.bf16x2 ${SEL_REGS[q]}, a, {'sl' if q < 2 else 'sh'};\n\t"
    asm = "{.reg .b32 se, so, a, b, m, sl, sh;\n\t.reg .b16 l, h;\n\t" + body + "}"
    res = _asm(_struct("i32", 4), [Int32(word), Int32(spair)], asm, "=r,=r,=r,=r,r,r", loc, ip)
    return _ints(res, 4, loc, ip)


# word order "rot" (runtime/word_order.py): decode_block's registers from the permuted word, one
# rotation (or shift) and one mask per register (ROT_PLAN).
def _term(dst: str, r: int, mask: int) -> str:
    """rotl($4, r) on mask's bits, as word_order.shift_for picks it."""
    op, n = shift_for(r, mask)
    if op == "mov":
        return f"mov.b32 {dst}, $4;\n\t"
    if op == "rotl":
        return f"shf.l.wrap.b32 {dst}, $4, $4, {n};\n\t"
    return f"{'shl.b32' if op == 'shl' else 'shr.u32'} {dst}, $4, {n};\n\t"


def rot_asm() -> str:
    """decode_rot's PTX: $4 = the word, $5 = the scale pair (row g, row g + 8), $0..$3 = the A
    registers, register q of row g + 8 (q & 1) (plain text: tests/kernels/test_w4a16.py interprets
    its integer part against ROT_PLAN)."""
    body = "mov.b32 {l, h}, $5;\n\tmov.b32 sl, {l, l};\n\tmov.b32 sh, {h, h};\n\t"
    for q, terms in enumerate(ROT_PLAN):
        (r0, m0), rest = terms[0], terms[1:]
        body += _term("a", r0, m0)
        if not rest:
            body += f"and.b32 a, a, {m0:#x};\n\t"
        else:
            ((r1, m1),) = rest
            body += _term("b", r1, m1) + f"and.b32 b, b, {m1:#x};\n\t"
            body += f"lop3.b32 a, a, b, {m0:#x}, 0xEC;\n\t"  # 0xEC = (a & c) | b
        body += f"mul.rn.bf16x2 ${q}, a, {'sh' if q & 1 else 'sl'};\n\t"
    return "{.reg .b32 a, b, sl, sh;\n\t.reg .b16 l, h;\n\t" + body + "}"


@dsl_user_op
def decode_rot(word: Int32, spair: Int32, *, loc=None, ip=None):
    """decode_block's four A registers (bit for bit) from a blob word in word order "rot"
    (runtime/word_order.py): register q = rotl(word, r) & mask for its one term, or (first term) |
    (second term, masked) by one lop3 for the two-term register; then the bf16x2 scale multiply.
    13 instructions per word (decode_block: 19, decode_sel: 17)."""
    res = _asm(_struct("i32", 4), [Int32(word), Int32(spair)], rot_asm(), "=r,=r,=r,=r,r,r", loc, ip)
    return _ints(res, 4, loc, ip)
