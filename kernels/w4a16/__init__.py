"""Our Hopper W4A16 NVFP4 GEMM: out[M, N] = act[M, K] . dequant(W)[N, K]^T, grouped or dense.

W is NVFP4 (E2M1 pairs, one E4M3 scale per 16 along K, an fp32 global scale folded into a
per-row alpha), act and out bf16, fp32 accumulation on the tensor cores. Hopper has no FP4
MMA, so weights are decoded to bf16 in registers and fed to bf16 MMAs.

Two families share one kernel (kernel.py) and one weight layout, quack's nvfp4 layout
(kernels/quack_w4a16/layout.py prepare_weights: blob uint8 [(E,) N/64, K/64, 128, 16] + strip
uint8 [(E,) N/64, K/64, 32, 4, 2], natural K order): one prepared copy feeds these families and
quack's quack_w4a16_* alike (prepare.py: how our kernels address it, and the CPU replay):
  w4a16_grouped_gemm  E experts in one launch. Rows of act are grouped by expert (moe_route's
                      layout): expert e owns rows [offsets[e], offsets[e] + counts[e]); rows
                      past counts[e] (padding) are neither read into results nor written. An
                      expert with counts[e] == 0 reads no weights (its CTAs exit at once).
  w4a16_gemm          one weight matrix (shared experts, attention projections), M = act rows.
Per-row alpha [.., N] carries weight_scale_2 (x any activation scale): a fused projection whose
N halves have different global scales (q_a + kv) is one GEMM with a two-valued alpha row.

Design (decode first: at <= 16 tokens per expert the GEMM is bound by weight bytes):
  * swap-AB: the MMA's M side is 16 weight rows, its N side 8 tokens (mma.sync m16n8k16).
  * a 16-row block rbi is warp slice rbi % 4 of 64-row group rbi // 4: per k64 tile its codes
    are 512 contiguous blob bytes, one 16-byte load per lane already in MMA-fragment order (word
    b = k16 block b, byte p = fragment register p), its scales 64 strip bytes (8 per lane: the
    (row g, row g+8) pair of each block), so no shared memory and no shuffles for A.
  * K is natural: the activation B fragment of block b is the 4-byte pairs at K 16b + 2t and
    16b + 2t + 8 of token g (split "k": the warp's rows staged in shared memory by cp.async, then
    ldmatrix.x4; split "n": ldmatrix.x4 from the CTA's staged rows; split "wg": plain 16-byte copies into 128-byte-swizzled rows).
  * act_order = "quad" (split "k" / "n" only; runtime/layout.py): the producer (moe_permute /
    moe_silu_mul with the same order) stores each k64 tile of a row so that lane t's eight
    B-fragment words are the 32 bytes at 32t: split "k" reads a token row's fragments with two
    16-byte loads straight from global memory (L1), no staging; split "n" with two 16-byte
    shared loads. The weights are unchanged (one copy, natural K); only the activation side moves.
  * act_order = "quad8" (MoERunner(word_order="nibble")'s decode path): quad with each block's bf16 pairs crossed (K 2t
    with 2t + 8, 2t + 1 with 2t + 9), the K order of decode_sel below; same loads as quad.
  * decode (ptx.decode_block): per register, prmt gathers the byte's two nibbles at bits 0..3 /
    16..19, one multiply by 2^6 + 2^12 and a mask put the E2M1 bits at bf16's (sign, exponent low
    bits, mantissa msb), i.e. v * 2^-126 exactly (subnormal 0.5 included); one bf16x2 multiply
    by the block's (scale * 2^119) of the register's row (a lane broadcast of one bf16x2 pair per
    block) gives v * scale * 2^-7, exact (<= 6 significant bits, no over/underflow for any finite
    E4M3 scale); the epilogue multiplies by alpha * 2^7 in fp32. quad8 (ptx.decode_sel): the same
    bf16 values with no gather: a register pairs nibbles 16 bits apart, so one shift of the word
    places both magnitudes and one shift of the even / odd nibbles' sign bits both signs, and a
    lop3 bitselect merges them (17 instead of 19 SASS per block, 6 + 2 instead of 11 ALU-pipe ops).
    word_order "rot" (a problem key; runtime/word_order.py, ptx.decode_rot; act orders natural /
    quad): the blob's bits permuted inside each word so that each register is one shift and one
    mask (one register two): 13 SASS per block, decode_block's registers; the runners' word_order="rot".
    word_order "rotq" (dense split "k" on natural K only; Nvfp4Linear's word_order="rotq"): rot's words placed
    transposed within each quad of lanes, so that lane (g, t)'s 16 bytes cover K 16t .. 16t + 15 of the k64 tile:
    its activations are two 16-byte loads of each natural token row (as quad's), no staging, one scale pair.
  * split = "k" (decode): split-K across the CTA's warps (a CTA = 16 * rb weight rows),
    reduced through shared memory: decode has 16-row slices of N x K to spread over 132 SMs.
    In natural K each warp stages its token rows for ldmatrix, a K step at a time (sk = 0) or
    k64 tiles in two buffers (sk = 1); wpf = 1 keeps the next step's weights in flight.
  * split = "n" (small batches): warps split N, activations staged once per CTA in shared
    memory; split = "wg" (prefill, wgmma.py): one or two warpgroups, the decoded fragments are
    the A operand of HGMMA m64nNk16 from registers (a warpgroup's 4 warps = one 64-row group),
    activations come from 128-byte-swizzled shared memory by descriptor.
    stages = 2 | 3 (split "wg") or 2..4 (split "n"), ring.py: the activations and each warp's
    weight slices of the next K steps flow through a cp.async ring in shared memory while the
    current one is multiplied; weights are read from it one k64 tile at a time, which keeps the
    wgmmas pipelined (wgmma.py) and, for split "n", takes the raw codes out of registers so
    that 2 row blocks per warp (each staged activation fragment feeding 8 MMAs) fit in 71-114
    registers (docs/PERFORMANCE.md 2026-12-02, "dec16").
A CTA loops over its expert's token tiles (8 * nt tokens each) inside the launch: the grid is
fixed (N / (16 rb), E), so capture never depends on routing. The split "n" ring with tail > 0 launches
the same CTAs as one row (N / (16 rb) x E, plus half a wave of slots) and each CTA finds its unit on
the device (tail_item): the last partial wave's units run as two half CTAs each. The split "n" ring skips the 8-token
fragments of a tile wholly past the expert's count (and stages no row past it), so a 32-token tile
costs what the tokens it holds cost: GroupedFamily's tables pick tiles by token-slots per expert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from nvfp4_aot.runtime.layout import ACT_ORDERS, QUAD_ORDERS
from nvfp4_aot.runtime.word_order import QUAD_PLACED, WORD_ORDERS

from .. import w4a16_common as common
from ..family import Family
from ..hopper import SMEM_PER_BLOCK, SMEM_PER_SM

K_STEP = 256  # K per mainloop step (4 k64 tiles of the weight layout): K must be a multiple
BLOB_TILE = 128 * 16  # blob bytes per (64-row group, k64 tile); a 16-row slice owns 512 of them
STRIP_TILE = 32 * 4 * 2  # strip bytes per (64-row group, k64 tile); a 16-row slice owns 64
W_STEP_BYTES = 4 * (BLOB_TILE // 4 + STRIP_TILE // 4)  # one 16-row slice's codes + scales per K_STEP
# decode constants (ptx.decode_block / scale_pair; prepare.emulate_weights replays them):
# prmt selectors: byte 0 = low-nibble byte p, byte 2 = high-nibble byte p, bytes 1 and 3 = the
# sign-replicated byte 0 of the low-nibble word (bit 7 is 0 there, so they are 0x00)
DECODE_SEL = tuple(p | 0x80 | (4 + p) << 8 | 0x8000 for p in range(4))
DECODE_MUL = (1 << 6) | (1 << 12)  # u * MUL = (u << 6) | (u << 12): the two fields never overlap
DECODE_MASK = 0x81C081C0  # bf16x2 sign (15|31), exponent low bits (8..7|24..23), mantissa msb (6|22)
SCALE_MUL = 0x7B007B00  # bf16x2 (2^119, 2^119)
EPI_SCALE = 128.0  # 2^7 = 2^126 / 2^119: every 2^-126 decode times a SCALE_MUL scale is v * scale * 2^-7; the
# epilogue (w4a16, and w4a16_ws in word order "rot") multiplies alpha by it in fp32 (exact)
L2PF_MAX = 4  # W4A16Params.l2pf's deepest prefetch (K steps): a decode warp walks only a few steps
WARPS = (1, 2, 4, 8)
ROW_BLOCKS = (1, 2, 4)
N_TILES = (1, 2, 4, 8, 16)
STAGES = (1, 2, 3, 4)
RING_CTAS = 2  # split "n" ring: the CTAs per SM its launch bounds registers for when ctas = 0 (the served tilings')
MAX_TAIL_SMS = 1024  # W4A16Params.tail's bound (an SM count)
TAIL_SMS = 132  # the tail the tables serve: the H100 SXM's / H200's SMs (a part with fewer runs it correctly, less evenly)
CTAS = (0, 1, 2, 3, 4)  # W4A16Params.ctas: 0 = the mode's default (ring_ctas); x 8 warps <= 2048 threads per SM


ACT_ROW_BYTES = {"wg": 512, "n": 528}  # one staged token row of a K step: SW128 atoms | 512 B + 16 B pad
# split "k", sk = 1: one staged token row of a k64 tile, 128 B + 16 B pad (ldmatrix's 8 rows hit 8 bank quads)
SK_ROW_BYTES = 144


def stage_bytes(bt: int, warps: int, rb: int, split: str = "wg") -> int:
    """Shared memory of one cp.async ring stage (stages > 1, split "wg" or "n"): the activations
    (bt tokens x 256 K: SW128 atoms for "wg", 528-byte padded rows for "n") and each warp's rb
    weight slices (W_STEP_BYTES each), rounded up to the 1024-byte atom."""
    return -(-(bt * ACT_ROW_BYTES[split] + warps * rb * W_STEP_BYTES) // 1024) * 1024


@dataclass(frozen=True)
class W4A16Params:
    n: int  # output features (weight rows)
    k: int  # input features
    experts: int = 1  # grouped: experts in one launch (dense: 1)
    warps: int = 4  # warps per CTA; they split K (tuning)
    rb: int = 1  # 16-row blocks per CTA (tuning: activation reuse vs parallelism)
    nt: int = 1  # token tile = 8 * nt tokens (tuning: decode 1-2, prefill 4-8)
    split: str = "k"  # warps split K (decode) or N with activations staged in smem (prefill)
    stages: int = 1  # split "wg" / "n": 1 = synchronous staging; 2-4 = cp.async ring of K chunks (ring.py)
    act_order: str = "natural"  # act's K order (runtime/layout.py ACT_ORDERS): "quad" / "quad8" for split k / n
    # split "n" ring only: CTAs per SM the launch bounds ptxas's registers for (min_blocks_per_mp: REGS_PER_SM /
    # (ctas x threads) each); 0 = RING_CTAS. Smaller CTAs at 3 per SM cut the grid's last-wave waste (ring_ctas).
    ctas: int = 0
    # the blob's bit order inside each 4-byte word (runtime/word_order.py): "rot" = decode_rot's
    # (act_order natural / quad; a problem key: the weights' layout, runtime/weights.py BLOB_LAYOUT)
    word_order: str = "nibble"
    # split "n" ring only: the SM count the launch's last partial wave is computed for (0 = none). The
    # device then runs the last r work units (r = units mod slots, slots = tail x ring_ctas, when 2 r <=
    # slots) as two half CTAs each (rb / 2 row blocks per warp), so that wave takes half a CTA's time
    # (tail_item; docs/PERFORMANCE.md "session 25").
    tail: int = 0
    # split "k", natural K only: how a warp stages its token rows for ldmatrix. 0 = a whole K step (256 K, 528-byte
    # rows) per wait; 1 = k64 tiles (144-byte rows) in two buffers, tile i + 1 in flight while tile i is consumed
    # (about half the shared memory: more L1 left for the activation rows the SM's CTAs share).
    sk: int = 0
    # split "k", natural K only: 1 = the next K step's weights (and scales) go in flight into registers before this
    # step is consumed, so a warp's steps do not each wait a full weight-load latency (0 = loaded at the step's top).
    wpf: int = 0
    # split "k" (one stage): each warp prefetches its weights (blob tiles and scale strips) l2pf K steps ahead into
    # L2 (sm_90's bulk prefetch, no registers), so a step's own loads wait an L2 latency, not a DRAM one (0 = off).
    l2pf: int = 0


def sk_stage_bytes(p) -> int:
    """Shared memory of a split "k" natural-K warp's staging (W4A16Params.sk)."""
    return 8 * p.nt * (ACT_ROW_BYTES["n"] if p.sk == 0 else 2 * SK_ROW_BYTES)  # sk = 0 rows as split "n" lays them out


def is_ring(p: W4A16Params) -> bool:
    """The split "n" cp.async ring (ring.py): the only mode whose launch takes a register bound."""
    return p.split == "n" and p.stages > 1


def tail_units(units, slots: int, lo, hi):
    """How many of `units` whole-CTA units W4A16Params.tail halves on `slots` slots: the last wave's r = units mod
    slots when 2 r <= slots (then they fit one wave as halves), else 0. lo / hi: min / max (tail_item)."""
    r = units % slots
    return r * (1 - lo(hi(2 * r - slots, 0), 1))


def tail_item(cta, units, slots: int, lo, hi):
    """The tail split of the split "n" ring's launch (W4A16Params.tail): CTA `cta` (the launch's 1-D
    grid, in issue order) -> (unit, part). A unit is one whole CTA's work (the kernel: weight tile u % T
    of the (u // T)-th expert with rows, T tiles per expert); `units` = those with rows. Whole CTAs fill slots
    (CTAs resident at once) wave by wave, so the last wave holds r = units mod slots of them and
    takes as long as a full one; when 2 r <= slots those r units run as two half CTAs each instead
    (part 1: the first half of the unit's row blocks, part 2: the second; part 0: the whole unit),
    all in one wave of half the time. CTAs past the halves get unit >= units (no work). The grid
    holds units_max + slots // 2 CTAs (r <= slots / 2 extra). lo / hi are min / max (cutlass.min
    / cutlass.max when traced): plain arithmetic, traced with DSL integers by the kernel, replayed
    with Python integers by tests/kernels/test_w4a16.py and benchmarks/w4a16_sweep.py (here, not in ring.py:
    cutlass-free, so the device-side benchmarks can import it)."""
    whole = units - tail_units(units, slots, lo, hi)
    half = lo(hi(cta - whole + 1, 0), 1)  # 1 from the first half CTA on
    extra = hi(cta - whole, 0)
    unit = cta * (1 - half) + (whole + extra // 2) * half
    part = (extra % 2 + 1) * half
    return unit, part


def ring_ctas(p: W4A16Params) -> int:
    """The launch's min_blocks_per_mp: p.ctas (RING_CTAS when 0) for the split "n" ring, 1 (no
    bound) for every other mode. Why a knob: at 16 tokens / expert the served 256-row ring CTAs at
    two per SM make 4.36 (L1) / 5.09 (L2) waves on an H200's 264 slots, the last one 36% / 9%
    full; 128-row CTAs (warps 8, rb 1, or warps 4, rb 2) at three per SM make 5.82 / 6.79
    (docs/PERFORMANCE.md "session 21", "Not measured"). Shared memory must hold that many CTAs
    (_reasons), or the bound would only cost registers."""
    return (p.ctas or RING_CTAS) if is_ring(p) else 1


def _reasons(p: W4A16Params) -> list[str]:
    r = []
    if p.k < K_STEP or p.k % K_STEP:
        r.append(f"k={p.k} must be a positive multiple of {K_STEP} (the mainloop's K step)")
    if p.n < 64 or p.n % 64:
        r.append(f"n={p.n} must be a positive multiple of 64 (the weight layout's row group)")
    elif p.n % (16 * p.rb):
        r.append(f"n={p.n} must be a positive multiple of 16 * rb = {16 * p.rb}")
    if p.warps not in WARPS:
        r.append(f"warps={p.warps} must be one of {WARPS}")
    if p.rb not in ROW_BLOCKS:
        r.append(f"rb={p.rb} must be one of {ROW_BLOCKS}")
    if p.nt not in N_TILES:
        r.append(f"nt={p.nt} must be one of {N_TILES}")
    if p.stages not in STAGES:
        r.append(f"stages={p.stages} must be one of {STAGES}")
    elif p.stages > 1 and p.split not in ACT_ROW_BYTES:
        r.append(f"stages={p.stages}: the cp.async ring is a split 'wg' / 'n' mainloop (got split={p.split!r}); use stages=1")
    elif p.split == "wg" and p.stages > 3:
        r.append(f"stages={p.stages}: split 'wg' rings have 2 or 3 stages (4 is a split 'n' depth)")
    elif p.stages > 1 and p.stages * stage_bytes(8 * p.nt, p.warps, p.rb, p.split) > SMEM_PER_BLOCK:
        r.append(f"stages={p.stages} x (activations + weights) = {p.stages * stage_bytes(8 * p.nt, p.warps, p.rb, p.split)} B "
                 f"of shared memory > {SMEM_PER_BLOCK}: lower stages, nt or rb")
    if p.ctas not in CTAS:
        r.append(f"ctas={p.ctas} must be one of {CTAS} (0: the mode's default)")
    elif p.ctas and not is_ring(p):
        r.append(f"ctas={p.ctas} bounds the registers of the split 'n' ring (split='n', stages > 1) only; "
                 f"leave it 0 with split={p.split!r}, stages={p.stages}")
    elif is_ring(p) and p.stages in STAGES:
        c, sm = ring_ctas(p), p.stages * stage_bytes(8 * p.nt, p.warps, p.rb, "n") + 1024
        if c * sm > SMEM_PER_SM:
            r.append(f"ctas={c}: {c} x (stages={p.stages} x a stage + 1 KiB reserved) = {c * sm} B > {SMEM_PER_SM} B of "
                     "shared memory per SM: lower stages, nt or rb, or set ctas=1")
    if p.tail and (p.tail < 0 or p.tail > MAX_TAIL_SMS or not is_ring(p) or p.rb % 2):
        r.append(f"tail={p.tail}: the split 'n' ring's (split='n', stages > 1) SM count for its last wave, in [1, "
                 f"{MAX_TAIL_SMS}], with an even rb (a half CTA takes rb / 2 row blocks per warp); got split={p.split!r}, "
                 f"stages={p.stages}, rb={p.rb}; or 0 (no tail)")
    if p.word_order not in WORD_ORDERS:
        r.append(f"word_order={p.word_order!r} must be one of {WORD_ORDERS}")
    elif p.word_order in QUAD_PLACED and (p.split, p.act_order, p.sk, p.stages) != ("k", "natural", 0, 1):
        r.append(f"word_order={p.word_order!r} places a lane's words on its own K range, read by split 'k' straight from "
                 f"natural rows (nothing staged): split='k', act_order='natural', sk=0, stages=1; got split={p.split!r}, "
                 f"act_order={p.act_order!r}, sk={p.sk}, stages={p.stages}")
    elif p.word_order != "nibble" and p.act_order == "quad8":
        r.append(f"word_order={p.word_order!r} decodes into the weights' own K pairs (decode_block's registers): act_order 'natural' "
                 "or 'quad', not 'quad8' (whose crossed pairs are decode_sel's)")
    if p.act_order not in ACT_ORDERS:
        r.append(f"act_order={p.act_order!r} must be one of {ACT_ORDERS}")
    elif p.act_order in QUAD_ORDERS and p.split not in ("k", "n"):
        r.append(f"act_order={p.act_order!r} is read by split 'k' and 'n' only (split={p.split!r} stages natural K for wgmma); "
                 "use split 'k' or 'n', or act_order 'natural'")
    for knob in ("sk", "wpf"):
        v = getattr(p, knob)
        if v not in (0, 1) or (v and not (p.split == "k" and p.act_order == "natural")):
            r.append(f"{knob}={v}: 0, or 1 with split='k' on natural K; got split={p.split!r}, act_order={p.act_order!r}")
    if p.l2pf not in range(L2PF_MAX + 1) or (p.l2pf and (p.split, p.stages) != ("k", 1)):
        r.append(f"l2pf={p.l2pf}: 0 .. {L2PF_MAX} K steps ahead, with split='k' (stages=1); got split={p.split!r}, "
                 f"stages={p.stages}")
    if p.split == "k" and p.act_order == "natural" and p.warps * sk_stage_bytes(p) + 512 * p.nt * p.rb * p.warps > SMEM_PER_BLOCK:
        r.append(f"split='k' stages each warp's 8 * nt token rows ({sk_stage_bytes(p)} B at sk={p.sk}, + the reduction): "
                 f"warps={p.warps} x nt={p.nt} needs more than {SMEM_PER_BLOCK} B of shared memory; lower warps or nt"
                 + ("" if p.sk else ", or set sk=1"))
    if p.split not in ("k", "n", "wg"):
        r.append(f"split={p.split!r} must be 'k' (warps split K), 'n' (warps split N) or 'wg' (warpgroup MMA)")
    elif p.split == "wg":
        if p.warps not in (4, 8) or p.nt not in (8, 16):
            r.append(f"split='wg' is one or two warpgroups (warps 4 or 8) with 64 or 128 tokens per tile (nt 8 or 16), got warps={p.warps}, nt={p.nt}")
        elif p.n % (16 * p.rb * p.warps):
            r.append(f"n={p.n} must be a multiple of 16 * rb * warps = {16 * p.rb * p.warps} with split='wg'")
    elif p.split == "n":
        rows = 16 * p.rb * p.warps
        if p.n % rows:
            r.append(f"n={p.n} must be a multiple of 16 * rb * warps = {rows} with split='n'")
        if (8 * p.nt * 32) % (32 * p.warps):
            r.append(f"split='n' stages 8 * nt * 32 vectors with {32 * p.warps} threads: nt={p.nt} must be a multiple of warps / 8")
    return r + common.bound_errors(p, 65535, "grid y")


class _Base(common.W4A16Hooks, Family):
    """can_implement, compile_args, signature, inputs, reference and check: kernels/w4a16_common.py
    (shared with w4a16_ws); this family adds its params, validity rules and kernel."""

    params_type = W4A16Params
    archs = ("sm_90a",)  # mma.sync + bf16x2 multiply; Blackwell has FP4 tensor cores instead
    modules = ("nvfp4_aot.kernels.w4a16", "nvfp4_aot.kernels.w4a16.kernel", "nvfp4_aot.kernels.w4a16.wgmma",
               "nvfp4_aot.kernels.w4a16.ring",
               "nvfp4_aot.kernels.w4a16.ptx", "nvfp4_aot.kernels.w4a16.prepare")
    kernel_module = "nvfp4_aot.kernels.w4a16.kernel"
    grouped_name = "w4a16_grouped_gemm"
    reasons = staticmethod(_reasons)

    def act_order(self, p: W4A16Params) -> str:  # the K order make_inputs writes and reference reads
        return p.act_order

    def word_order(self, p: W4A16Params) -> str:  # the blob word order make_inputs writes
        return p.word_order


def _without(table, knobs):
    """A tile table with `knobs` dropped from every tuning."""
    return tuple((edge, {k: v for k, v in t.items() if k not in knobs}) for edge, t in table)


class DenseFamily(_Base):
    name = "w4a16_gemm"
    # N < K (e.g. 2048 / 6144 x 7168) has few 16-row slices for a long K, so 8 warps split K;
    # otherwise 4 warps, 2 row blocks from 17 tokens (benchmarks/w4a16_sweep.py on an H100).
    # 9-16 tokens (16 staged rows): k64-tile staging in two buffers and the next step's weights in flight (sk, wpf):
    # H100, docs/PERFORMANCE.md "session 29", 10-16% faster at M = 16 on gate+up / down / o_b, hot and cold.
    # thin (N / 16 <= one CTA per SM, e.g. q_a+kv 2048 x 7168): nothing else on the SM hides a step's latency, so
    # sk / wpf from one token (q_a+kv M <= 8: 6-15% faster, same runs).
    _SKW = {"sk": 1, "wpf": 1}
    narrow = ((8, {"warps": 8, "rb": 1, "nt": 1}), (16, {"warps": 8, "rb": 1, "nt": 2, **_SKW}),
              (None, {"warps": 8, "rb": 1, "nt": 4}))
    thin = ((8, {**narrow[0][1], **_SKW}), *narrow[1:])
    wide = ((8, {"warps": 4, "rb": 1, "nt": 1}), (16, {"warps": 4, "rb": 1, "nt": 2, **_SKW}),
            (None, {"warps": 4, "rb": 2, "nt": 4}))
    # N >= K with K >= DEEP_K (down 7168 x 3072): at M <= 8 a warp's K walk is long enough (6 k64 tiles at 8 warps) for
    # 8 warps to split it, which doubles the weight loads in flight per CTA. H100, docs/PERFORMANCE.md "session 32"
    # (w4a16_dense_ab.py over warps 4 / 8 x rb 1 / 2 / 4): down cold M = 1 / 8: 7.55 / 7.53 us vs 8.36 / 8.33 at 4 warps
    # (rotq 8.06 / 8.02 vs 9.28 / 9.23); o_b (K 2048: 4 tiles per warp at 8 warps) loses with 8 (6.93 vs 6.09), so
    # it keeps 4; rb 2 / 4 lost everywhere.
    DEEP_K = 3072
    deep = ((8, {"warps": 8, "rb": 1, "nt": 1}), *wide[1:])
    tiles = wide
    # word order "rotq" (QUAD_PLACED: activations read straight from natural rows, nothing staged, so no sk):
    # narrow / wide without the staging knobs, i.e. cfea70a's tilings of the same layout idea; thin keeps wpf.
    kq_narrow, kq_wide, kq_thin = _without(narrow, _SKW), _without(wide, _SKW), _without(thin, ("sk",))
    kq_deep = _without(deep, _SKW)

    @staticmethod
    def reasons(p: W4A16Params) -> list[str]:
        # tail's units are (expert with rows, weight tile): a grouped launch's (tail_item)
        return _reasons(p) + ([f"tail={p.tail}: the last-wave split is a grouped launch's (w4a16_grouped_gemm); "
                               "use tail=0 here"] if p.tail else [])

    def tile_table(self, problem: Mapping[str, Any]):
        """The shape's table (deep / wide / thin / narrow, above), its kq_ twin in a QUAD_PLACED word order."""
        n, k = problem["n"], problem["k"]
        if n >= k:
            shape = "deep" if k >= self.DEEP_K else "wide"
        else:
            shape = "thin" if n // 16 <= TAIL_SMS else "narrow"
        return getattr(self, ("kq_" if problem.get("word_order") in QUAD_PLACED else "") + shape)
    problem_keys = ("n", "k", "act_order", "word_order")

class GroupedFamily(_Base):
    name = "w4a16_grouped_gemm"
    # Tunings by token-slots per local expert, t = M / experts (tile_table scales the edges by the
    # problem's expert count: a tiling's cost is set by the tokens each expert's CTAs see, and an
    # expert with more rows than the token tile pays another pass over its weights). The edges are
    # chosen on MoERunner's counts, which vary around t (top-k routing; benchmarks/w4a16_sweep.py
    # ROUTING=local), not on t exactly. Natural K order: t <= 4 split 'k' 8-token tiles, one warp
    # per CTA (16 rows for the whole K, no reduction; H200 routed t = 2: L1 | L2 283 | 144 us vs
    # 318 | 160 with 4 warps splitting K, docs/PERFORMANCE.md "session 19"), <= 16
    # split 'n' (one staging per CTA, beat every split 'k' tiling on the shared nvfp4 layout: H200,
    # docs/PERFORMANCE.md 2026-12-02 "one weight layout"), above the warpgroup-MMA mode with a
    # 2-stage cp.async ring (faster than split 'n' and the 1-stage 'wg' at every t > 16).
    slot_tiles = (
        (4, {"warps": 1, "rb": 1, "nt": 1}),
        (16, {"warps": 4, "rb": 1, "nt": 2, "split": "n"}),
        (None, {"warps": 8, "rb": 2, "nt": 8, "split": "wg", "stages": 2}),
    )
    # act_order "quad" / "quad8" (MoERunner's decode path: quad in word order rot, quad8 in nibble): t <= 5 split 'k' 8-token tiles
    # of one warp per CTA (at the copy floor: exact t = 1 / 4 L1 96.8 / 96.7%, routed t = 5 332 | 163
    # us vs the 16-token tiling's 343 | 179; 4 warps splitting K lost 5-12% at t = 1-4, session 19);
    # above, split 'n' with the 2-stage cp.async ring and 2 row blocks per warp
    # (each staged activation fragment feeds 8 MMAs), 256 weight rows per CTA, token fragments past
    # the expert's count skipped (ring.py n_chunk): 16-token tiles up to t = 8, 32-token tiles above,
    # so every count up to 32 (where the prefill tiers take over) is one pass over an expert's
    # weights. H200, 48 experts, quad8, docs/PERFORMANCE.md "session 18": local routing, L1 | L2 us,
    # t = 8: 380 | 202 (16-token) vs 404 | 201; t = 16: 577 | 295 vs 480 | 236; t = 24: 884 | 433 vs
    # 574 | 284 (the 32-token tiling of 128 rows per CTA it replaces: 613 | 310). Split 'wg' reads
    # natural K only.
    # tail = TAIL_SMS up to t = 24: the launch's last partial wave as half CTAs (tail_item; 256-row CTAs at 2
    # per SM on 132 SMs: 48 experts' L1 / L2 make 4.36 / 5.09 waves). H100, exact t = 8 / 16 / 24 / 32, L1 % of
    # copy: 95.8 / 91.6 / 89.7 / 79.7-87.5 without, 99.3 / 96.3 / 88.8 / 76.5 with (docs/PERFORMANCE.md "session
    # 25"): the halves pay while the ring streams weights, not once it is bound by its MMAs (t = 32).
    quad_slot_tiles = (
        (5, slot_tiles[0][1]),
        (8, {"warps": 8, "rb": 2, "nt": 2, "split": "n", "stages": 2, "tail": TAIL_SMS}),
        (24, {"warps": 8, "rb": 2, "nt": 4, "split": "n", "stages": 2, "tail": TAIL_SMS}),
        (None, {"warps": 8, "rb": 2, "nt": 4, "split": "n", "stages": 2}),
    )
    # act_order "quad" (word order rot, MoERunner's default) with N < K (L1, 6144 x 7168): the t <= 5 row at 8 warps
    # splitting K, as DenseFamily.narrow (few 16-row slices for a long K). MoE layer at 4 / 16 tokens (moe_layer.py
    # --decode-only, three H100 calls, docs/PERFORMANCE.md "session 29"): 281-282 / 557-558 us against 295-296 /
    # 563-566 with one warp; 1 and 64 tokens unchanged. Not measured on an H200 nor in quad8 (session 19, quad8 on an
    # H200 and an older kernel: 4 warps lost 5-12% at t = 1-4), which keep the row above.
    quad_narrow_slot_tiles = ((5, {"warps": 8, "rb": 1, "nt": 1}), *quad_slot_tiles[1:])
    problem_keys = ("n", "k", "experts", "act_order", "word_order")

    @staticmethod
    def reasons(p: W4A16Params) -> list[str]:
        return _reasons(p) + common.grouped_order_errors(p, DenseFamily.name)

    def tile_table(self, problem: Mapping[str, Any]):
        """The slot table of the problem's act order (and, in quad, its shape) with its edges in rows: t * experts."""
        order = problem.get("act_order")
        if order == "quad" and problem.get("n", 0) < problem.get("k", 0):
            table = self.quad_narrow_slot_tiles
        else:
            table = self.quad_slot_tiles if order in QUAD_ORDERS else self.slot_tiles
        return common.slot_rows(table, int(problem["experts"]))
    grouped = True

DENSE_FAMILY = DenseFamily()
GROUPED_FAMILY = GroupedFamily()
