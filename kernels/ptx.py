"""Inline-PTX helpers shared by our CuTe DSL kernels (nvfp4_quantize, moe_glue): one definition
each, public. All pure (has_side_effects=False, so LLVM may CSE and schedule them).

Imports cutlass: only kernel modules (run inside a build worker) import this module.
"""

from __future__ import annotations

import cutlass.cute as cute
from cutlass import Float32, Uint32
from cutlass._mlir import ir
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op


def inline_asm(ret_ty, args, asm, constraints, loc=None, ip=None):
    """One pure inline-asm op over DSL values `args` returning `ret_ty`."""
    vals = [a.ir_value(loc=loc, ip=ip) for a in args]
    return llvm.inline_asm(ret_ty, vals, asm, constraints, has_side_effects=False, loc=loc, ip=ip)


def inline_asm_struct(n, ty, args, asm, constraints, loc=None, ip=None):
    """inline_asm with n results of type `ty`, returned as a list."""
    st = ir.Type.parse("!llvm.struct<(" + ", ".join([str(ty)] * n) + ")>")
    res = inline_asm(st, args, asm, constraints, loc=loc, ip=ip)
    return [llvm.extractvalue(ty, res, [i], loc=loc, ip=ip) for i in range(n)]


@dsl_user_op
def div_rn(a: Float32, b: Float32, *, loc=None, ip=None) -> Float32:
    """IEEE fp32 division (div.rn.f32), never the approximate variants."""
    return Float32(inline_asm(T.f32(), [Float32(a), Float32(b)], "div.rn.f32 $0, $1, $2;", "=f,f,f", loc, ip))


@dsl_user_op
def mul_rn(a: Float32, b: Float32, *, loc=None, ip=None) -> Float32:
    return Float32(inline_asm(T.f32(), [Float32(a), Float32(b)], "mul.rn.f32 $0, $1, $2;", "=f,f,f", loc, ip))


@dsl_user_op
def add_rn(a: Float32, b: Float32, *, loc=None, ip=None) -> Float32:
    return Float32(inline_asm(T.f32(), [Float32(a), Float32(b)], "add.rn.f32 $0, $1, $2;", "=f,f,f", loc, ip))


@dsl_user_op
def unpack_bf16x2(w, *, loc=None, ip=None):
    """bf16x2 word -> (fp32 of the low half, fp32 of the high half); exact."""
    lo, hi = inline_asm_struct(2, T.f32(), [Uint32(w)], "shl.b32 $0, $2, 16;\n\tand.b32 $1, $2, -65536;",
                               "=f,=f,r", loc, ip)
    return Float32(lo), Float32(hi)


@dsl_user_op
def pack_bf16x2(lo: Float32, hi: Float32, *, loc=None, ip=None) -> Uint32:
    """(lo, hi) fp32 -> bf16x2 word, lo in the low half, each rounded to nearest even."""
    return Uint32(inline_asm(T.i32(), [Float32(lo), Float32(hi)], "cvt.rn.bf16x2.f32 $0, $2, $1;", "=r,f,f", loc, ip))


@dsl_user_op
def absmax(a: Float32, b: Float32, *, loc=None, ip=None) -> Float32:
    """max(|a|, |b|); ptxas folds the abs into FMNMX operand modifiers."""
    asm = "{.reg .f32 p, q;\n\tabs.f32 p, $1;\n\tabs.f32 q, $2;\n\tmax.f32 $0, p, q;}"
    return Float32(inline_asm(T.f32(), [Float32(a), Float32(b)], asm, "=f,f,f", loc, ip))


@dsl_user_op
def fmax(a: Float32, b: Float32, *, loc=None, ip=None) -> Float32:
    return Float32(inline_asm(T.f32(), [Float32(a), Float32(b)], "max.f32 $0, $1, $2;", "=f,f,f", loc, ip))


def tree_max(vals):
    """max of a power-of-two count of values, as a balanced tree of max.f32."""
    while len(vals) > 1:
        vals = [fmax(vals[2 * i], vals[2 * i + 1]) for i in range(len(vals) // 2)]
    return vals[0]


def aligned(ptr, off, divby):
    """ptr + off with off known to the compiler to be a multiple of divby (vectorized access)."""
    return ptr + cute.assume(off, divby=divby)


__all__ = ["absmax", "add_rn", "aligned", "div_rn", "fmax", "inline_asm", "inline_asm_struct", "mul_rn",
           "pack_bf16x2", "tree_max", "unpack_bf16x2"]
