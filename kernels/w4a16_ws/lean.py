"""WsParams.lean (default 0): cheaper per-step address arithmetic in the consumer k loop of the
w4a16_ws kernels (kernel.py; session 7, `wsdec`, docs/PERFORMANCE.md).

Why: at M <= 64 the kernel's time is ~0.31 us per k64 step per CTA, and the consumer's loop body
of the down 128 x 64 split-2 tiling is 153 SASS instructions per k64 step per warp (88 of them the
NVFP4 decode and its scales, which is the LUT decode quack surveyed as tight for this weight layout;
31 uniform-datapath ops, 18 of them WGMMA descriptors: scripts/sass_loops.py). Both
consumer warps of an SM sub-partition issue from one scheduler, so a cut of n instructions per
warp and step is up to 2 n issue cycles per step.

What lean 1 changes (and nothing else; lean 0 traces exactly the code before the knob existed):
  * the activation tile's WGMMA descriptor is built once per k64 step (desc_lo) and each k16
    block's is that low word + 2 b (block_desc) instead of sw128_desc(base + 32 b) per block.
    Exact: the base is 16-aligned (1024 in fact), so (base + 32 b) >> 4 = (base >> 4) + 2 b, and
    the 14-bit start field cannot wrap (base + 96 < 2^18: every sm_90 shared address is below
    228 KiB), so the + 2 b never carries into the bits above it (tests/kernels/test_w4a16_ws_lean.py);
  * the stage released after step t's wait is (t mod S) - 1, wrapped (prev_stage), instead of a
    second division (t - 1) mod S.
The arithmetic below runs on DSL integers in the kernel and on Python ints in the CPU tests (their
reference: the PTX ISA's descriptor encoding, of which w4a16_device.sw128_desc is the per-block form).
"""

from cutlass import Int32, Int64, select_
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import dsl_user_op

DESC_HI = (64 << 32) | (1 << 62)  # sw128_desc's upper word: SBO 1024 >> 4, layout SWIZZLE_128B


def _select(c, a, b):
    return Int32(select_(c, Int32(a), b))


def desc_lo(base):
    """The low word of sw128_desc(base): start address >> 4 in bits 0-13, LBO 1 at bit 16."""
    return ((base >> 4) & 0x3FFF) | (1 << 16)


def block_desc(lo, b: int, wide=Int64):
    """The descriptor of k16 block b (32 bytes further along K) of the tile whose
    desc_lo is lo (base + 96 < 2^18): equals sw128_desc(base + 32 b). wide: Int64 in the kernel, int in
    the tests."""
    return wide(lo + 2 * b) | wide(DESC_HI)


def prev_stage(s, stages: int, select=_select):
    """The ring stage before stage s (s in [0, stages)), without a division. select: the DSL's
    in the kernel, a Python conditional in the tests."""
    return select(s == 0, stages - 1, s - 1)


# ----------------------------------------------------------------------------- probe (diagnostic)
# WsParams.probe (pipe 16 only; the build refuses it unless NVFP4_AOT_WS_PROBE=1, see __init__.py):
# variants that time the consumer loop with one half of its per-step work removed, so that one
# device run can say whether the decode's ALU issue and the MMAs overlap (t(full) ~ max of the two)
# or serialize (t(full) ~ their sum). Their output is wrong by design; nothing may serve them.
#   probe 1: the A fragment is the raw blob word (no decode, no scale: 22 of 153 instructions per
#            word left out), every load, barrier and wgmma kept;
#   probe 2: the decode kept (its registers consumed by `consume`: +5 instructions per k16 block),
#            no wgmma issued (the accumulators stay zero; ptxas keeps an empty HGMMA 64x8 per commit).


@dsl_user_op
def consume(vals, *, loc=None, ip=None):
    """Keep the 4 int32 registers vals (one k16 block's A fragment) computed: ptxas deletes unused
    values, even an empty volatile asm's inputs, so they are XOR-ed and stored to shared address 8
    under a predicate that holds only if the XOR equals 0x5A5A5A5A (2^-32 per block on random codes;
    a probe's output and timing tolerate that). 5 instructions per block (probe 2's overhead)."""
    llvm.inline_asm(None, [Int32(v).ir_value(loc=loc, ip=ip) for v in vals],
                    "{.reg .b32 t, a;\n\t.reg .pred p;\n\txor.b32 t, $0, $1;\n\txor.b32 t, t, $2;\n\t"
                    "xor.b32 t, t, $3;\n\tsetp.eq.u32 p, t, 0x5A5A5A5A;\n\tand.b32 a, t, 12;\n\t@p st.shared.u32 [a], t;}",
                    "r,r,r,r", has_side_effects=True, loc=loc, ip=ip)
