"""Device-side pieces shared by our two Hopper W4A16 kernels (w4a16's split "wg" mainloop,
kernels/w4a16/wgmma.py, and the warp-specialized w4a16_ws kernel): the warpgroup-MMA inline PTX
(fence / commit / wait, the RS wgmma, the SW128 operand descriptor, the accumulator hold) and the
fake compile arguments of their one signature (act, blob, sf, alpha[, offsets, counts], out).

Imports cutlass: only kernel modules (run inside a build worker) import this module.
"""

import cutlass
import cutlass.cute as cute
from cutlass import BFloat16, Float32, Int32, Int64, Uint8
from cutlass._mlir import ir
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op


def struct_type(ty: str, n: int):
    """The LLVM struct of n `ty` values: the result type of a multi-output inline asm."""
    return ir.Type.parse("!llvm.struct<(" + ", ".join([ty] * n) + ")>")


def _sync_asm(text, loc, ip):
    llvm.inline_asm(None, [], text, "", has_side_effects=True, loc=loc, ip=ip)


@dsl_user_op
def wg_fence(*, loc=None, ip=None):
    _sync_asm("wgmma.fence.sync.aligned;", loc, ip)


@dsl_user_op
def wg_commit(*, loc=None, ip=None):
    _sync_asm("wgmma.commit_group.sync.aligned;", loc, ip)


@dsl_user_op
def wg_wait(pending: cutlass.Constexpr[int], *, loc=None, ip=None):
    _sync_asm(f"wgmma.wait_group.sync.aligned {pending};", loc, ip)


@dsl_user_op
def fence_proxy_async(*, loc=None, ip=None):
    """Generic-proxy stores to shared memory become visible to the async proxy (wgmma, TMA)."""
    _sync_asm("fence.proxy.async.shared::cta;", loc, ip)


@dsl_user_op
def hold(vals, *, loc=None, ip=None):
    """Pass fp32 registers through an empty volatile asm so that reads of the accumulators are not
    hoisted above the preceding wgmma.wait_group (the compiler sees no data dependence)."""
    n = len(vals)
    cons = ",".join(["=f"] * n + [str(i) for i in range(n)])
    res = llvm.inline_asm(struct_type("f32", n), [Float32(v).ir_value(loc=loc, ip=ip) for v in vals], "", cons,
                          has_side_effects=True, loc=loc, ip=ip)
    return [Float32(llvm.extractvalue(T.f32(), res, [i], loc=loc, ip=ip)) for i in range(n)]


@dsl_user_op
def wgmma_rs(acc, a, desc: Int64, n: cutlass.Constexpr[int], *, loc=None, ip=None):
    """acc (n / 2 fp32 per thread) += A (64 x 16 bf16, registers a[0..3]: the m16n8k16 A fragment
    of the thread's warp) . B (16 x n, K-major SW128 descriptor); always accumulates (the caller
    zeroes acc once per tile)."""
    m = n // 2
    outs = ", ".join(f"${i}" for i in range(m))
    asm = ("{.reg .pred p;\n\t"
           f"setp.ne.b32 p, ${m + 5}, 0;\n\t"  # scale-d is a predicate operand
           f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.bf16.bf16 {{{outs}}}, "
           f"{{${m}, ${m + 1}, ${m + 2}, ${m + 3}}}, ${m + 4}, p, 1, 1, 0;}}")
    cons = ",".join(["=f"] * m + ["r"] * 4 + ["l", "r"] + [str(i) for i in range(m)])
    args = [Int32(x) for x in a] + [Int64(desc), Int32(1)] + [Float32(v) for v in acc]
    res = llvm.inline_asm(struct_type("f32", m), [x.ir_value(loc=loc, ip=ip) for x in args], asm, cons,
                          has_side_effects=True, loc=loc, ip=ip)
    return [Float32(llvm.extractvalue(T.f32(), res, [i], loc=loc, ip=ip)) for i in range(m)]


def sw128_desc(addr: Int32) -> Int64:
    """WGMMA descriptor of a K-major, 128-byte-swizzled operand at shared address `addr` (rows
    of 128 B, 8-row atoms of 1024 B, atoms 1024-aligned): start >> 4, LBO 1 (unused by K-major
    SW128), SBO 1024 >> 4, layout type SWIZZLE_128B (1) in bits 62-63."""
    return (Int64(addr >> 4) & Int64(0x3FFF)) | Int64(1 << 16) | Int64(64 << 32) | Int64(1 << 62)


def fake_args(p, grouped: bool):
    """Fake compile arguments of both families' signature (kernels/w4a16 and w4a16_ws
    signature()): rows symbolic, everything else static; the stream is the TVM FFI env stream.
    Each tensor's assumed alignment is its signature Arg's (the exported function checks it before
    launch: e.g. w4a16_ws epi 3's 16-byte `out`, which its TMA store view needs)."""
    from .w4a16_common import signature

    al = {a.name: a.align for a in signature(p, grouped).args}
    fake = cute.runtime.make_fake_compact_tensor
    stream = cute.runtime.make_fake_stream(use_tvm_ffi_env_stream=True)
    m = cute.sym_int()
    g, kt = p.n // 64, p.k // 64
    act = fake(BFloat16, (m, p.k), stride_order=(1, 0), assumed_align=al["act"])
    out = fake(BFloat16, (m, p.n), stride_order=(1, 0), assumed_align=al["out"])
    if not grouped:
        blob = fake(Uint8, (g, kt, 128, 16), stride_order=(3, 2, 1, 0), assumed_align=al["blob"])
        sf = fake(Uint8, (g, kt, 32, 4, 2), stride_order=(4, 3, 2, 1, 0), assumed_align=al["sf"])
        alpha = fake(Float32, (p.n,), stride_order=(0,), assumed_align=al["alpha"])
        return act, blob, sf, alpha, out, stream
    e = p.experts
    blob = fake(Uint8, (e, g, kt, 128, 16), stride_order=(4, 3, 2, 1, 0), assumed_align=al["blob"])
    sf = fake(Uint8, (e, g, kt, 32, 4, 2), stride_order=(5, 4, 3, 2, 1, 0), assumed_align=al["sf"])
    alpha = fake(Float32, (e, p.n), stride_order=(1, 0), assumed_align=al["alpha"])
    offsets = fake(Int32, (e + 1,), stride_order=(0,), assumed_align=al["offsets"])
    counts = fake(Int32, (e,), stride_order=(0,), assumed_align=al["counts"])
    return act, blob, sf, alpha, offsets, counts, out, stream
