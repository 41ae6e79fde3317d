"""Our warp-specialized Hopper W4A16 NVFP4 GEMM (the prefill kernel of issue 11), grouped and dense:

    out[r, :] = bf16((act[r, :] @ dequant(W_e)^T) * alpha[e, :])   offsets[e] <= r < offsets[e] + counts[e]

Weights in THE Hopper W4A16 layout (quack's nvfp4 layout, kernels/quack_w4a16/layout.py,
prepare_weights per expert, stacked): blob uint8 [E, N/64, K/64, 128, 16] + strip uint8
[E, N/64, K/64, 32, 4, 2]; natural K. alpha fp32 per output row ([E, N]; dense [N]) carries the
global decode scale (two-valued for fused two-scale projections).

w4a16_ws_grouped_gemm  MoE experts in one launch. Expert e owns rows [offsets[e], offsets[e] +
                       counts[e]); rows outside every expert's range are never written; corrupt
                       offsets/counts are clamped into [0, M) (wrong rows at worst, never an
                       out-of-bounds access); an idle expert costs nothing; no route padding.
w4a16_ws_gemm          one weight matrix, M = act rows.

Design (kernel.py): swap-AB, persistent grid of sm_count CTAs with a device-side grouped tile
scheduler, one producer warp (TMA for the activations, 1-D bulk copies for weights and scales)
feeding an S-stage mbarrier ring, two consumer warpgroups decoding NVFP4 into the RS-wgmma A
operand, the decode of the next k16 block (pipe 16) or k64 step (pipe 64) overlapping the
wgmmas in flight. Knobs: tile_m (weight rows per CTA tile: 64 (wgs 1), 128 or 256), tile_n (tokens per tile:
16, 32, 64, 128 or 256 (16 / 32: the decode tiles, DECODE_TILE_NS); accumulators tile_m * tile_n / (128 wgs) per consumer thread), stages, wgs
(consumer warpgroups: 1, 2 or 4), pipe (16 or 64), sm_count, split_k (dense only: K splits per output
tile, reduced by the last-arriving split through caller-owned flags + workspace scratch; kernel.py
_split_reduce), pdl (dense only: programmatic dependent launch, the prologue and the first
weight loads overlap the previous kernel), epi (1: the bf16 tile leaves through shared memory with
16-byte stores; 0: scalar stores from registers), raster (work order: bands of raster token tiles,
or of -raster weight tiles, which decides how many CTAs read one activation / weight tile at once:
kernel.py raster_item), depth (pipe 16: wgmma groups in flight, 2 or 3), ctas (CTAs
per SM, 1 or 2: two CTAs of half the registers and shared memory each, so two tiles' serial k
chains overlap on one SM; dense: tile 128 x 64; grouped: only with the decode tiles, tile_n 16 /
32, where the grid becomes 2 x sm_count persistent CTAs), lean (0 or 1: the consumer k loop's WGMMA
descriptor and released stage computed once per k64 step instead of per k16 block / by a second
division; lean.py; any tiling, default 0), probe (diagnostic, output wrong by design, built only with
NVFP4_AOT_WS_PROBE=1: 1 = no decode, 2 = no wgmma; lean.py), stream (dense, pipe 16, no split_k / pdl: 1 =
stream-K, the launch's k64 steps cut into equal contiguous ranges over the grid, partial tiles reduced
by the last-arriving segment through flags + an M-independent workspace; stream.py), peek (pipe 16: 1 =
one non-blocking test of the next stage's full barrier after block 0, the blocking wait only if it
failed; kernel.py _step16), mc (dense: 2 = clusters of two CTAs on adjacent weight tiles of one token tile,
each TMA-multicasting half of the activation boxes into both, so the activation bytes each SM reads from L2
halve; with stream 1 the pair walks one stream-K range of tile pairs; raster 1, split_k 1, no pdl / ctas 2,
an even number of weight tiles and sm_count; kernel.py, stream.py), red (dense split-K's reduction: 0 = the
last-arriving split reads every partial back from L2; 1 = splits 2q, 2q + 1 of a tile are one cluster of two
CTAs summing through distributed shared memory, the pairs' halves meeting in L2 when split_k > 2; stream.py).
word_order (a problem key: "nibble", or "rot" of runtime/word_order.py: the consumers decode with
w4a16's decode_rot instead of the table decode; the runners' word_order="rot" path; "rotq", dense only: rot's
words placed transposed within each quad of lanes, read as four 4-byte shared loads, Nvfp4Linear's "rotq"). Measured tilings: GROUPED_TILES,
tiles.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from .. import w4a16_common as common
from ..checks import split_flags_errors
from ..family import Arg, Family, Signature
from ..validity import in_range
from ..hopper import SM_COUNT, SMEM_PER_BLOCK, SMEM_PER_SM  # ctas x (a CTA's + 1 KiB reserved) <= SMEM_PER_SM
from nvfp4_aot.runtime.word_order import WORD_ORDERS

# weight rows per CTA tile; 64 (one m64 block: wgs 1 only) is quack's CTA at M = 129..1536 (64 x 256, one
# consumer warpgroup, ~96 CTAs on the DeepSeek-V4 shapes without split-K; session 9)
TILE_MS = (64, 128, 256)
TILE_NS = (16, 32, 64, 128, 256)
# Decode tiles (session 7, `wgdec`; not GPU-run yet): tile_n 16 / 32 tokens run the same kernel with
# the wgmma N = 16 / 32 (m64n16k16 / m64n32k16), for grouped decode at ~8-32 tokens per expert, where
# the weights dominate (docs/PERFORMANCE.md "session 7, wgdec"). No table uses them yet.
DECODE_TILE_NS = (16, 32)
PIPES = (16, 64)
# epilogue: 0 = scalar bf16 stores from registers, 1 = staged through shared memory, 16-byte stores, 2 = as 1 with
# EPI_BLOCKS[2] staging blocks per warp: that many 16-token chunks written, then read back and stored, per warp sync
# (one shared-memory round trip per group instead of per chunk; epilogue.py _epilogue_smem), 3 = the whole tile's
# bf16 image in shared memory, stored by TMA bulk stores that drain while the next tile's k loop runs (whole token
# tiles; a partial one takes 1's path; epilogue.py _epilogue_tma)
EPIS = (0, 1, 2, 3)
RASTERS = (1, 2, 4, 8, -4, -8, -16)  # work order (kernel.py raster_item): > 0 bands of token tiles, < 0 of weight tiles
DEPTHS = (2, 3)  # pipe 16: wgmma groups left in flight by each wait (kernel.py, pipe 16)
MAX_ACC = 128  # fp32 accumulators per consumer thread (tile_m * tile_n / (128 wgs)): registers
SPLIT_KS = (1, 2, 3, 4, 6, 7, 8, 12, 14, 16)  # dense split-K factors (kernel.py _split_reduce)
CTAS = (1, 2)  # dense: CTAs resident per SM (2: each gets half the register file and shared memory)
CTAS2_MAX_ACC = 32  # ctas 2: fp32 accumulators per consumer thread (its 104 registers: tile_n 64 at rb 1)
MIN_SPLIT_STEPS = 4  # k64 steps per split: below that the reduction outweighs the split
PROBES = (0, 1, 2, 3, 4, 5)  # diagnostics (lean.py): 0 = the kernel, 1 = no decode, 2 = no wgmma, 3 / 4 = split-K reduce
# without the partials' read-back / without any reduction (stream.py _split_reduce), 5 = no epilogue (epilogue.py)
PROBE_ENV = "NVFP4_AOT_WS_PROBE"  # probe != 0 builds only with this set to 1 (benchmarks; never served)
LEANS = (0, 1)  # consumer k-loop address arithmetic: 0 = per k16 block (as served), 1 = per k64 step (lean.py)
# consumer warpgroups per CTA: 1 (quack's shape of CTA: a producer and one consumer warpgroup, 256 threads, up to
# 256 registers per consumer thread; session 9 `wg1`), 2 (the default) or 4 (one m64 block each at tile_m 256)
WGS = (1, 2, 4)
PEEKS = (0, 1)  # pipe 16: 1 = test the next stage's full barrier after block 0 (kernel.py _step16)
STREAMS = (0, 1)  # dense work distribution: 0 = whole tiles (or split_k items), 1 = stream-K (stream.py)
# dense: CTAs per cluster sharing each activation tile by TMA multicast (2: adjacent weight tiles of one token tile).
# Session 12 (H200, docs/PERFORMANCE.md "session 12"): halves the activation bytes from L2; whole 64 x 256 tiles run
# no faster (tensor-bound), stream-K 1.05-1.4x faster than without it but still slower than the served tiles: no table
MCS = (1, 2)
# dense split-K reduction (stream.py _split_reduce): 0 = through L2: every split stores its partial, the last to
# arrive on the tile's flag reads all back and stores the tile; 1 = splits 2q, 2q + 1 are one cluster of 2 CTAs,
# each keeping its partial in its own shared memory and summing one token half of both (distributed shared memory);
# split_k 2 stores the halves, split_k > 2 meets the pairs' halves in L2 as 0 does (half the bytes, half the
# partials). A persistent grid (more items than CTAs) takes 0's reduction at run time.
REDS = (0, 1)


EPI_WARP_BYTES = 512  # epi 1: one consumer warp's staging block (16 tokens x 16 weight rows, bf16)
EPI_BLOCKS = {0: 0, 1: 1, 2: 4, 3: 1}  # staging blocks per consumer warp, by epi (3: a partial tile's, in the image)


def epi_bytes(epi: int, wgs: int, tile_m: int, tile_n: int) -> int:
    """The epilogue's shared memory: EPI_BLOCKS[epi] staging blocks per consumer warp (4 per warpgroup) after the
    weight ring, or epi 3's image of the output tile (tile_m x tile_n bf16, 1 KiB-aligned for SW128: + 1 KiB)."""
    if epi == 3:
        return tile_m * tile_n * 2 + 1024
    return EPI_WARP_BYTES * EPI_BLOCKS[epi] * 4 * wgs


def smem_bytes(tile_m: int, tile_n: int, stages: int, experts: int, wgs: int = 2, epi: int = 0, red: int = 0) -> int:
    """Shared memory of one CTA: the stage ring (activations tile_n x 128 B, weights tile_m / 64
    blob tiles + strips), epi 1's staging blocks (one per consumer warp), the mbarriers (red 1: two
    more) and the scheduler's three int32 arrays, with alignment."""
    ring = stages * (tile_n * 128 + (tile_m // 64) * (2048 + 256))
    bars = 16 * stages + (16 if red == 1 else 0)
    return 1024 + ring + epi_bytes(epi, wgs, tile_m, tile_n) + bars + 12 * experts + 64


def red_parts(p) -> int:
    """Token parts of a split-K tile under red 1, part r summed over the pair and stored (or passed on) by the
    cluster's rank-r CTA: 2, or 1 when the tile is a single 16-token epilogue chunk (a part is whole chunks;
    rank 1 then stores nothing); 1 without red 1."""
    if not (getattr(p, "red", 0) == 1 and p.split_k > 1):
        return 1
    return min(2, p.tile_n // 16)


def split_flags(p) -> int:
    """int32 flags per output tile of the split-K scratch: one per consumer warp (red 0's last-arriver count), per
    token half with red 1 (the pairs' halves meeting in L2, stream.py _pairs_reduce)."""
    return 4 * p.wgs * red_parts(p)


def scratch_shapes(p, tiles: tuple) -> tuple[tuple, tuple]:
    """Shapes of the split-K / stream-K scratch (flags, workspace) for tiles = (token tiles, weight tiles): the
    signature's symbolic strings, make_inputs' ints and the fake args' symbolic int all come through here.
    flags [*tiles, split_flags(p)]; workspace split-K [*tiles, split_k x tile_m x tile_n] (each split's fp32
    partial of its output tile), stream-K stream_ws_shape(p) (independent of M)."""
    ws = stream_ws_shape(p) if p.stream else (*tiles, p.split_k * p.tile_m * p.tile_n)
    return (*tiles, split_flags(p)), ws


def stream_ws_shape(p) -> tuple[int, int]:
    """Stream-K workspace: 2 partial slots per CTA of the largest grid (sm_count x ctas; each CTA
    writes at most the partial of its first and of its last tile, sched.sk_slot) x tile_m x tile_n."""
    return 2 * p.sm_count * p.ctas, p.tile_m * p.tile_n


@dataclass(frozen=True)
class WsParams:
    n: int  # output features per expert (weight rows)
    k: int  # input features
    experts: int = 1  # grouped: experts in one launch (dense: 1)
    tile_m: int = 128  # weight rows per CTA tile (2 consumer warpgroups x tile_m / 128 m64 blocks)
    tile_n: int = 128  # tokens per CTA tile (the wgmma N)
    stages: int = 6  # shared-memory ring depth (k64 steps in flight)
    sm_count: int = SM_COUNT  # persistent grid (H100 SXM / H200: 132 SMs)
    wgs: int = 2  # consumer warpgroups (1: quack's 2-warpgroup CTA; 4: one m64 block each at tile_m 256)
    pipe: int = 16  # k elements per wgmma commit group: 16 (decode interleaved per k16 block) or 64
    split_k: int = 1  # dense only: K splits per output tile (> 1: flags + workspace scratch arguments)
    pdl: bool = False  # dense only: programmatic dependent launch (griddepcontrol; weights prefetched first)
    epi: int = 1  # epilogue: 1 = through shared memory (stmatrix, 16-byte stores), 0 = scalar stores from registers,
    # 2 = as 1, EPI_BLOCKS[2] chunks per shared-memory round trip, 3 = TMA stores of the tile's bf16 image (EPIS)
    raster: int = 1  # work order: > 0 token tiles per band (1: weight tile fastest), < 0 weight tiles per band
    depth: int = 2  # pipe 16: wgmma groups in flight after each wait (3: decode after the wait, one more in flight)
    ctas: int = 1  # CTAs per SM (2: two tiles' serial k chains share an SM; half the registers each; grouped: decode tiles only)
    lean: int = 0  # 1: the consumer k loop's descriptor / release-stage arithmetic once per step (lean.py)
    probe: int = 0  # diagnostic, wrong output by design: 1 = no decode, 2 = no wgmma (lean.py), 3 / 4 = split-K without
    # reading the partials back / without any reduction (stream.py), 5 = no epilogue; build needs PROBE_ENV
    stream: int = 0  # dense only: 1 = stream-K, the launch's k64 steps cut evenly over the grid (stream.py)
    peek: int = 0  # pipe 16: 1 = test the next stage's full barrier early, spin at its load only if it was not full
    mc: int = 1  # dense only: 2 = 2-CTA clusters on adjacent weight tiles share the activation tile (TMA multicast)
    red: int = 0  # dense split-K reduction: 1 = pairs of splits in clusters of 2 (REDS; stream.py _split_reduce)
    # the blob's bit order inside each 4-byte word (runtime/word_order.py): "rot" = w4a16's decode_rot (13 ops per
    # word + the 2^119 scale form) instead of the table decode (19 + 3); a problem key (the weights' layout)
    word_order: str = "nibble"


def _reasons(p: WsParams) -> list[str]:
    r = []
    if p.tile_m not in TILE_MS:
        r.append(f"tile_m={p.tile_m} must be one of {TILE_MS}")
    if p.tile_n not in TILE_NS:
        r.append(f"tile_n={p.tile_n} must be one of {TILE_NS}")
    if p.tile_m in TILE_MS and p.tile_n in TILE_NS and p.wgs in WGS and p.tile_m * p.tile_n // (128 * p.wgs) > MAX_ACC:
        r.append(f"tile_m x tile_n = {p.tile_m} x {p.tile_n} needs {p.tile_m * p.tile_n // (128 * p.wgs)} accumulators "
                 f"per thread > {MAX_ACC}: lower one")
    if p.tile_m in TILE_MS and (p.n < p.tile_m or p.n % p.tile_m):
        r.append(f"n={p.n} must be a positive multiple of tile_m={p.tile_m} (a weight tile never straddles experts)")
    if p.k < 64 or p.k % 64:
        r.append(f"k={p.k} must be a positive multiple of 64 (the layout's k64 tile)")
    if not 2 <= p.stages <= 12:
        r.append(f"stages={p.stages} must be in [2, 12]")
    elif p.tile_m in TILE_MS and p.tile_n in TILE_NS and p.wgs in WGS and p.epi in EPIS and (
            smem := smem_bytes(p.tile_m, p.tile_n, p.stages, p.experts, p.wgs, p.epi, p.red)) > SMEM_PER_BLOCK:
        r.append(f"stages={p.stages}: {smem} B of shared memory > {SMEM_PER_BLOCK}: lower stages or the tile")
    if p.wgs not in WGS:
        r.append(f"wgs={p.wgs} must be one of {WGS} (consumer warpgroups)")
    elif p.tile_m in TILE_MS and (p.tile_m // 64) % p.wgs:
        r.append(f"tile_m={p.tile_m} is {p.tile_m // 64} m64 blocks: not a multiple of wgs={p.wgs}")
    elif p.tile_n in TILE_NS and p.wgs == 4 and p.tile_n > 64:
        r.append(f"wgs=4 leaves 112 registers per consumer thread: tile_n={p.tile_n} > 64 makes ptxas serialize "
                 "the wgmmas (C7512)")
    if p.pipe not in PIPES:
        r.append(f"pipe={p.pipe} must be one of {PIPES} (k elements per wgmma commit group)")
    if p.raster not in RASTERS:
        r.append(f"raster={p.raster} must be one of {RASTERS} (token (> 0) or weight (< 0) tiles per band of the "
                 "work order)")
    if p.epi not in EPIS:
        r.append(f"epi={p.epi} must be one of {EPIS} (0: register stores, 1: through shared memory, 2: as 1, "
                 f"{EPI_BLOCKS[2]} chunks per round trip, 3: TMA stores of the tile)")
    elif p.epi == 3 and (p.split_k > 1 or p.stream or p.mc != 1):
        r.append(f"epi={p.epi} stores whole unsplit tiles: it needs split_k 1, stream 0 and mc 1 (got split_k="
                 f"{p.split_k}, stream={p.stream}, mc={p.mc})")
    if p.depth not in DEPTHS:
        r.append(f"depth={p.depth} must be one of {DEPTHS} (wgmma groups in flight in the pipe-16 loop)")
    elif p.depth != 2 and p.pipe != 16:
        r.append(f"depth={p.depth} applies to the pipe-16 loop only (pipe={p.pipe}): use depth=2")
    elif p.depth > 2 and p.stages < 3:
        r.append(f"depth={p.depth} releases a stage one step later: stages={p.stages} must be >= 3")
    if p.split_k not in SPLIT_KS:
        r.append(f"split_k={p.split_k} must be one of {SPLIT_KS}")
    elif p.split_k > 1 and p.k % 64 == 0 and (p.k // 64 % p.split_k or p.k // 64 // p.split_k < MIN_SPLIT_STEPS):
        r.append(f"split_k={p.split_k} must divide the k={p.k} // 64 k64 steps into splits of at least "
                 f"{MIN_SPLIT_STEPS}")
    if p.ctas not in CTAS:
        r.append(f"ctas={p.ctas} must be one of {CTAS} (CTAs resident per SM)")
    elif p.ctas > 1:
        if p.wgs != 2:
            r.append(f"ctas={p.ctas} needs wgs=2 (a 4-warpgroup CTA leaves too few registers for two per SM)")
        elif p.tile_m in TILE_MS and p.tile_n in TILE_NS and p.tile_m * p.tile_n // 256 > CTAS2_MAX_ACC:
            r.append(f"ctas={p.ctas}: tile_m x tile_n = {p.tile_m} x {p.tile_n} needs {p.tile_m * p.tile_n // 256} "
                     f"accumulators per thread > {CTAS2_MAX_ACC} (half the register file per CTA): use 128 x 64")
        if p.pipe == 64 and p.tile_m in TILE_MS and p.wgs == 2 and p.tile_m // 64 // p.wgs > 1:
            r.append(f"ctas={p.ctas} with pipe=64 needs one m64 block per consumer warpgroup (tile_m 128): at "
                     f"tile_m={p.tile_m} ptxas serializes every wgmma in its 104 registers (SASS: a wait to 0 after each)")
        if p.tile_m in TILE_MS and p.tile_n in TILE_NS and p.wgs in WGS and p.epi in EPIS and 2 <= p.stages <= 12 \
                and p.ctas * (smem_bytes(p.tile_m, p.tile_n, p.stages, p.experts, p.wgs, p.epi, p.red) + 1024) \
                > SMEM_PER_SM:
            r.append(f"ctas={p.ctas}: {p.ctas} x (shared memory of stages={p.stages} + 1 KiB) > {SMEM_PER_SM} B per SM: "
                     "lower stages")
    if p.lean not in LEANS:
        r.append(f"lean={p.lean} must be one of {LEANS} (1: per-step descriptor arithmetic, kernels/w4a16_ws/lean.py)")
    if p.probe not in PROBES:
        r.append(f"probe={p.probe} must be one of {PROBES}")
    elif p.probe and os.environ.get(PROBE_ENV) != "1":
        r.append(f"probe={p.probe} is a diagnostic whose output is wrong by design: set {PROBE_ENV}=1 to build it")
    elif p.probe in (1, 2) and p.pipe != 16:
        r.append(f"probe={p.probe} applies to the pipe-16 loop only (pipe={p.pipe})")
    elif p.probe in (3, 4) and (p.split_k == 1 or p.stream):
        r.append(f"probe={p.probe} times the split-K reduction: it needs split_k > 1 and stream 0")
    elif p.probe == 5 and (p.split_k > 1 or p.stream or p.epi == 3):
        r.append(f"probe={p.probe} times the whole-tile epilogue of epi 0-2: it needs split_k 1, stream 0 and epi < 3")
    if p.peek not in PEEKS:
        r.append(f"peek={p.peek} must be one of {PEEKS} (1: early test of the next stage, kernel.py _step16)")
    elif p.peek and p.pipe != 16:
        r.append(f"peek={p.peek} applies to the pipe-16 loop only (pipe={p.pipe})")
    if p.stream not in STREAMS:
        r.append(f"stream={p.stream} must be one of {STREAMS} (1: stream-K, kernels/w4a16_ws/stream.py)")
    elif p.stream:
        if p.split_k != 1:
            r.append(f"stream={p.stream} cuts K itself: split_k={p.split_k} must be 1")
        if p.pipe != 16:
            r.append(f"stream={p.stream} runs the pipe-16 k loop only (pipe={p.pipe}): use pipe=16")
        if p.pdl:
            r.append(f"stream={p.stream} with pdl: not supported (pdl's weight prefetch walks whole items): "
                     "use pdl=false")
    if p.red not in REDS:
        r.append(f"red={p.red} must be one of {REDS} (split-K reduction, kernels/w4a16_ws/stream.py)")
    elif p.red and (p.split_k == 1 or p.stream):
        r.append(f"red={p.red} is split-K's reduction: it needs split_k > 1 and stream 0")
    elif p.red == 1:
        if p.split_k % 2:
            r.append(f"red=1 pairs the splits in clusters of 2 CTAs: split_k={p.split_k} must be even")
        if p.mc != 1 or p.ctas != 1:
            r.append(f"red=1 (clusters of the splits) needs mc=1 and ctas=1 (mc={p.mc}, ctas={p.ctas})")
        if p.tile_m * 4 > p.stages * 128:
            r.append(f"red=1 keeps the fp32 partial (tile_m x tile_n x 4 bytes) in the activation ring (stages x "
                     f"tile_n x 128 bytes): tile_m={p.tile_m} needs stages >= {p.tile_m * 4 // 128}")
        if p.sm_count % 2:
            r.append(f"red=1 launches clusters of 2 CTAs: sm_count={p.sm_count} must be even")
    if p.mc not in MCS:
        r.append(f"mc={p.mc} must be one of {MCS} (CTAs of a cluster sharing the activation tile by multicast)")
    elif p.mc == 2:
        if p.split_k != 1 or p.raster != 1 or p.pdl or p.ctas != 1 or p.pipe != 16:
            r.append(f"mc=2 pairs the items (or stream-K tiles) of one token tile in the raster-1 order: split_k="
                     f"{p.split_k}, raster={p.raster}, pdl={p.pdl}, ctas={p.ctas}, pipe={p.pipe} must be 1, 1, false, 1, 16")
        if p.tile_m in TILE_MS and p.n >= p.tile_m and p.n % p.tile_m == 0 and (p.n // p.tile_m) % 2:
            r.append(f"mc=2 pairs adjacent weight tiles: n={p.n} is {p.n // p.tile_m} tiles of tile_m={p.tile_m}, "
                     "not an even number")
        if p.sm_count % 2:
            r.append(f"mc=2 launches clusters of 2 CTAs: sm_count={p.sm_count} must be even")
    r += in_range("sm_count", p.sm_count, 1, 1024)
    if p.word_order not in WORD_ORDERS:
        r.append(f"word_order={p.word_order!r} must be one of {WORD_ORDERS}")
    return r + common.bound_errors(p, 1024, "the scheduler's per-expert arrays in shared memory")


class _Base(common.W4A16Hooks, Family):
    """can_implement, compile_args, signature, inputs, reference and check: kernels/w4a16_common.py
    (shared with w4a16); this family adds its params, validity rules and kernel."""

    params_type = WsParams
    archs = ("sm_90a",)  # wgmma + setmaxnreg; Blackwell has FP4 tensor cores instead
    modules = ("nvfp4_aot.kernels.w4a16_ws", "nvfp4_aot.kernels.w4a16_ws.kernel", "nvfp4_aot.kernels.w4a16_ws.ptx",
               "nvfp4_aot.kernels.w4a16_ws.epilogue", "nvfp4_aot.kernels.w4a16_ws.device",
               "nvfp4_aot.kernels.w4a16_ws.lean", "nvfp4_aot.kernels.w4a16_ws.sched",
               "nvfp4_aot.kernels.w4a16_ws.stream", "nvfp4_aot.kernels.w4a16_ws.producer",
               "nvfp4_aot.kernels.quack_w4a16.layout")
    kernel_module = "nvfp4_aot.kernels.w4a16_ws.kernel"
    grouped_name = "w4a16_ws_grouped_gemm"
    reasons = staticmethod(_reasons)

    def word_order(self, p: WsParams) -> str:  # the blob word order make_inputs writes
        return p.word_order

    def can_implement(self, p: WsParams, arch: str) -> list[str]:
        r = super().can_implement(p, arch)
        if self.grouped and p.split_k != 1:
            r.append(f"split_k={p.split_k}: the grouped family does not split K (split_k must be 1)")
        if self.grouped and p.stream:
            r.append(f"stream={p.stream} is a dense-only knob (the grouped family does not take it): use stream=0")
        if self.grouped and p.mc != 1:
            r.append(f"mc={p.mc} is a dense-only knob (the grouped family does not take it): use mc=1")
        if self.grouped:
            r += common.grouped_order_errors(p, DenseFamily.name)
        if self.grouped and p.pdl:
            r.append("pdl is a dense-only knob (the grouped family does not take it)")
        if self.grouped and p.ctas != 1 and p.tile_n not in DECODE_TILE_NS:
            r.append(f"ctas={p.ctas}: the grouped family runs two CTAs per SM only with a decode tile (tile_n in "
                     f"{DECODE_TILE_NS}); tile_n={p.tile_n} needs ctas=1")
        return r


class DenseFamily(_Base):
    name = "w4a16_ws_gemm"
    problem_keys = ("n", "k", "word_order")

    def tile_table(self, problem: Mapping[str, Any]):
        """Measured per (n, k) and token bucket: tiles.py (Nvfp4Linear's tables)."""
        from .tiles import dense_table

        return dense_table(problem)

    def scratch_args(self, p: WsParams) -> tuple[Arg, ...]:
        """Split-K / stream-K scratch (stream.py), flags per output tile (token tile, weight tile):
        int32 [4 x wgs consumer warps], zero before the first call and left zero by every call.
        Workspace fp32, never read before written: split-K per output tile [split_k x tile_m x
        tile_n]; stream-K per CTA of the largest grid [2 slots x tile_m x tile_n] (independent of
        M: stream_ws_shape). None for whole tiles."""
        if p.split_k == 1 and not p.stream:
            return ()
        flags, ws = scratch_shapes(p, (f"cdiv(M, {p.tile_n})", f"N // {p.tile_m}"))
        return (
            Arg("flags", "int32", flags, align=4, scratch=True),
            Arg("workspace", "float32", ws, align=16, scratch=True),
        )

    def signature(self, p: WsParams) -> Signature:
        sig = super().signature(p)
        return Signature((*sig.args, *self.scratch_args(p)), static=sig.static)

    def compile_args(self, p: WsParams, arch: str):
        fn, args = super().compile_args(p, arch)
        if p.split_k == 1 and not p.stream:
            return fn, args
        from .device import split_fake_args

        return fn, (*args[:-1], *split_fake_args(p), args[-1])  # (..., out, flags, workspace, stream)

    def make_inputs(self, p: WsParams, m: int, device: Any, seed: int, poison: float = float("nan"),
                    dist: str = "uniform"):
        """Split-K / stream-K: flags zeroed (the contract), workspace poisoned (never read before written)."""
        import torch

        inputs = super().make_inputs(p, m, device, seed, poison, dist)
        if p.split_k > 1 or p.stream:
            flags, ws = scratch_shapes(p, (-(-m // p.tile_n), p.n // p.tile_m))
            inputs["flags"] = torch.zeros(flags, dtype=torch.int32, device=device)
            inputs["workspace"] = torch.full(ws, poison, dtype=torch.float32, device=device)
        return inputs

    def check(self, p: WsParams, got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
        return split_flags_errors(got) or super().check(p, got, want)


# Grouped tilings by average tokens per expert t = rows / experts (H200 sweep, docs/PERFORMANCE.md
# 2026-12-02 "session 5 ... w4a16_ws"): 256 x 64 (L2: 4 consumer warpgroups) up to t = 60, 256 x 128
# with the pipe-64 loop up to 128, 128 x 256 (pipe 16) above. With uniform groups 256 x 64 wins up to
# t = 64 (L1 674 vs 858 us), but routed groups vary around their mean: at t = 64 about half the
# experts get more than 64 rows, i.e. two 256 x 64 token tiles each, and one 256 x 128 tile covers
# them. The edge is set on the whole MoE layer with routed counts (benchmarks/moe_layer.py, 48
# experts, H200, docs/PERFORMANCE.md "session 18"; runner us, 256 x 64 vs 256 x 128 at the token
# count): t = 36-48 (288-384 tokens) 992-1052 vs 1332-1413, t = 52 1017-1024 vs 1343-1349, t = 56
# 1115-1180 vs 1374-1433, t = 60 1253-1258 vs 1350-1408, t = 64 1469-1495 vs 1373-1425. Other
# shapes: same rule.
_T64 = {"tile_m": 256, "tile_n": 64, "stages": 8}
# Session 16 (benchmarks/w4a16_ws.py, H200, docs/PERFORMANCE.md "session 16"): epi 3 (the tile image stored by TMA
# while the next tile runs; 2 / 2 stages fewer for its shared memory) on both prefill tiles, bitwise equal outputs:
# t = 128 L1 867 vs 896 us (1.36 vs 1.31x torch _grouped_mm), L2 449 vs 477 (1.40 vs 1.32x); t = 512 L1 3101 vs
# 3235, L2 1581 vs 1606.
_T128 = {"tile_m": 256, "tile_n": 128, "stages": 6, "pipe": 64, "epi": 3}
_T256 = {"tile_m": 128, "tile_n": 256, "stages": 4, "epi": 3}
GROUPED_TILES = {  # (n, k) -> per-t table ((t upper edge | None, tuning), ...)
    (7168, 3072): ((60, {**_T64, "wgs": 4}), (128, _T128), (None, _T256)),
}
GROUPED_DEFAULT = ((60, _T64), (128, _T128), (None, _T256))


class GroupedFamily(_Base):
    name = "w4a16_ws_grouped_gemm"
    problem_keys = ("n", "k", "experts", "word_order")
    grouped = True

    def tile_table(self, problem: Mapping[str, Any]):
        """Token buckets by rows = t * experts (the runner's unpadded routed rows)."""
        per_t = GROUPED_TILES.get((problem["n"], problem["k"]), GROUPED_DEFAULT)
        return common.slot_rows(per_t, int(problem["experts"]))


DENSE_FAMILY = DenseFamily()
GROUPED_FAMILY = GroupedFamily()
