"""CuTe DSL kernel of the w4a16_ws families (sm_90a): a persistent, warp-specialized W4A16 GEMM.

    out[r, n] = bf16(alpha[e, n] * sum_k act[r, k] * dequant(W_e)[n, k])   r in expert e's rows

swap-AB: weight rows are the WGMMA M side (A from registers, decoded NVFP4), tokens the N side
(B = the activations in 128-byte-swizzled shared memory, by descriptor).

CTA = 1 + wgs warpgroups (wgs = 1, 2 or 4; 2 below). Warpgroup 0 is the producer (registers lowered with setmaxnreg; one thread
issues): per k64 step it waits for an empty stage, arms the stage's full mbarrier with the stage's
byte count and starts the TMA tensor loads of the activation tile [tile_n tokens x 64 K] (SW128;
64-row boxes, sched.act_boxes)
and, per m64 weight block, two 1-D bulk copies: the block's 2048-byte blob tile and 256-byte
scale strip (quack's nvfp4 layout: both contiguous per (m64, k64)). Warpgroups 1 and 2 are
consumers (registers raised): each owns tile_m / 2 weight rows (rb m64 blocks); per k64 step
it waits for the full stage, reads its blob words and scales from shared memory, decodes them
into the A fragments and issues rb x 4 wgmma m64n{tile_n}k16 (pipe 64: one commit group per
step; pipe 16: one per k16 block with depth 2 or 3 groups left in flight), releasing a stage once
its wgmmas retired (one arrive per warp), so the decode overlaps the MMAs in flight. The tile
leaves through the epilogue (epilogue.py: alpha, bf16, 16-byte stores via shared memory).

Persistent grid (sm_count CTAs) over work = (expert, token tile j, weight tile m) in the order
of raster_item (raster 1: m fastest; the work list and the producer: producer.py):
every CTA first builds, from the device-side offsets/counts (clamped into [0, M)), the inclusive
prefix of work items per expert in shared memory; CTA b then takes items b, b + grid, ...
(producer and consumers walk the same sequence). Idle experts own no item; no host sync; the
grid is fixed, so CUDA graphs replay with any routing. Dense split-K (split_k > 1): every output
tile is split_k consecutive items over K ranges, reduced through caller-owned scratch by the
last-arriving split (stream.py _split_reduce; no spin, so no residency requirement). Dense
stream-K (stream = 1, stream.py): CTA b takes the b-th of grid equal ranges of the launch's k64
steps instead of items, as segments of the tiles it crosses (same reduction rule). Dense launches
only CTAs with work (grid = min(ctas x sm_count, items): M is known at launch; ctas 2: two CTAs
per SM, minBlocksPerSM 2, half the register pool each); with pdl the launch is a programmatic
dependent one (the prologue and the first ring of weight loads overlap the previous kernel's
tail; the activation loads, and so every write, wait for it to complete).

Invariants:
  * every global access is in bounds: expert ranges are clamped into [0, M); a token tile is
    loaded as boxes of min(tile_n, 64) rows (sched.act_boxes), only those holding a row of the
    item, the last moved back to end at the expert's last row (or start at row 0): a box may
    cover rows of other experts (their MMA columns are never stored; columns of boxes not loaded
    hold stale shared memory, never stored either: sched.token_col), and passes M only when M
    is below the box (zero-filled);
    weight copies index expert e < E, tile m < N / tile_m, k step < K / 64;
  * nothing is written outside [start_e, start_e + count_e) x [the tile's weight rows] (epi 1's
    16-byte stores hold 8 weight rows of one token each, predicated on token < count);
  * epi 1's staging block (512 bytes after the stage ring) belongs to one consumer warp: never
    read or written by the producer or another warp, ordered by bar.warp.sync;
  * stage s's i-th fill waits for the consumers' i-th release (empty parity), its i-th read for
    the i-th fill (full parity); one running step counter per role keeps them in lockstep.
"""

import cutlass
import cutlass.cute as cute
from cutlass import BFloat16, Float32, Int32, Int64, Uint8, const_expr
from cutlass.cute.nvgpu import cpasync, warpgroup

from nvfp4_aot.runtime.word_order import QUAD_PLACED, ROT_DECODED

from ..hopper import REGS_PER_SM, launch
from ..w4a16.ptx import decode_rot
from ..w4a16.ptx import scale_pair as rot_scale_pair  # the 2^119 form decode_rot's 2^-126 values take
from ..w4a16_device import hold, sw128_desc, wg_commit, wg_fence, wg_wait, wgmma_rs
from . import EPI_BLOCKS, EPI_WARP_BYTES, TILE_MS, TILE_NS, epi_bytes, red_parts
from .epilogue import Epilogue
from .producer import BLOB_BYTES, STRIP_BYTES, Producer
from .stream import Reduce
from .lean import block_desc, consume, desc_lo, prev_stage
from .ptx import (blob_words, decode_k16, lds_v2, lut_regs, mbar_arrive, mbar_arrive_cluster, mbar_test, mbar_wait,
                  scale_pair)
from .sched import (BOX_ROWS, launch_grid, raster_item, reduce_slot, split_item,  # noqa: F401 (re-exported for the tests)
                    ws_index)

REGS = REGS_PER_SM  # the producer warpgroup keeps PRODUCER_REGS, the consumers share the rest
PRODUCER_REGS = 24
MAX_REGS = 256  # setmaxnreg's ceiling


class W4A16WsKernel(Producer, Reduce, Epilogue):
    def __init__(self, n: int, k: int, experts: int, grouped: bool, tile_m: int, tile_n: int, stages: int,
                 sm_count: int, wgs: int = 2, pipe: int = 16, split_k: int = 1, pdl: bool = False, epi: int = 0,
                 depth: int = 2, raster: int = 1, ctas: int = 1, lean: int = 0, probe: int = 0, stream: int = 0,
                 peek: int = 0, mc: int = 1, red: int = 0, parts: int = 1, rot: bool = False, kq: bool = False):
        assert n % tile_m == 0 and k % 64 == 0 and tile_m in TILE_MS and tile_n in TILE_NS
        self.rot = rot  # word order "rot" (runtime/word_order.py): w4a16's decode_rot instead of decode_k16
        assert not kq or rot
        self.kq = kq  # word order "rotq": block b's word of lane (g, t) at 16 (8 b + g) + 4 t of its slice (blob_words)
        assert not peek or pipe == 16
        self.peek = peek  # pipe 16: test the next stage's full barrier early (_step16)
        assert not red or (split_k > 1 and not grouped)
        self.red, self.parts = red, parts  # split-K reduction (stream.py _split_reduce), parts = red_parts(p)
        # CTAs per cluster: mc (multicast pairs) or, red 1, 2 (splits 2q, 2q + 1 of an output tile)
        self.cluster = 2 if red == 1 else mc
        assert red != 1 or (mc == 1 and ctas == 1 and split_k % 2 == 0 and tile_m * tile_n * 4 <= stages * tile_n * 128)
        assert split_k == 1 or (not grouped and (k // 64) % split_k == 0)
        assert not grouped or not pdl
        # dense launch knob (scheduler side): pdl = programmatic dependent launch (the prologue and
        # the first ring of weight loads overlap the previous kernel; everything that reads the
        # activations or writes out / scratch waits for it: griddepcontrol.wait)
        self.pdl = pdl
        # stream-K (stream.py): dense, unsplit, pipe 16, no pdl (kernels/w4a16_ws/__init__.py _reasons)
        assert not stream or (not grouped and split_k == 1 and pipe == 16 and not pdl)
        self.stream = stream
        assert ctas in (1, 2) and (ctas == 1 or not grouped or tile_n in (16, 32))
        # CTAs per SM (launch bound minBlocksPerSM; register pool, grid follow); grouped: decode tiles only
        # (the persistent grid is then ctas x sm_count; no CTA ever waits on another, so no residency need)
        self.ctas = ctas
        self.lean = lean  # 1: per-step descriptor and release-stage arithmetic of lean.py (0: as before)
        self.probe = probe  # diagnostic, wrong results by design (lean.py): 1 no decode, 2 no wgmma, 5 no epilogue
        self.n, self.k, self.experts, self.grouped = n, k, experts, grouped
        self.tile_m, self.tile_n, self.stages, self.sm_count = tile_m, tile_n, stages, sm_count
        self.mt = n // tile_m  # weight tiles per expert
        self.kt = k // 64  # k64 steps
        self.split_k = split_k  # dense split-K: K splits per output tile (1: no split, no scratch)
        self.ks = self.kt // split_k  # k64 steps per work item
        self.blocks = tile_m // 64  # m64 blocks per CTA tile
        self.wgs = wgs  # consumer warpgroups
        self.pipe = pipe  # commit-group granularity of the k loop: 16 or 64 (k elements)
        self.raster = raster  # token tiles per band of the item order (raster_item)
        self.epi = epi  # 1 / 2: epilogue through shared memory (_epilogue_smem), 0: scalar stores (_epilogue_regs)
        self.depth = depth  # pipe 16: wgmma groups left in flight by each wait (2 or 3)
        # depth 3 releases step t - 1 only after loading step t + 1: a 2-stage ring would deadlock
        assert depth in (2, 3) and (pipe == 16 or depth == 2) and (depth == 2 or stages >= 3)
        # epi 0-2: staging blocks after the weight ring (EPI_BLOCKS[epi] per consumer warp); epi 3's tile image is an
        # allocation of its own (_body: 1 KiB-aligned for SW128), its first 512 B per warp doubling as those blocks
        self.epi_bytes = 0 if epi == 3 else epi_bytes(epi, wgs, tile_m, tile_n)
        assert self.blocks % wgs == 0
        self.rb = self.blocks // wgs  # m64 blocks per consumer warpgroup
        self.threads = 128 * (wgs + 1)
        # setmaxnreg moves registers inside the pool the CTA was launched with (ptxas gives a
        # setmaxnreg kernel the launch-bound maximum, REGS / threads rounded down to 8): the
        # consumers' increase must fit what the producer frees, or setmaxnreg.inc waits forever
        # (a GPU hang: 4 consumer warpgroups asking 120 of a 96-register launch did exactly that).
        # wgs 1 (256 threads, launched at 255 registers, allocated 256) is capped by setmaxnreg's own
        # ceiling, 256; wgs 2 comes to 240 (CUTLASS's 168 / 240 split), wgs 4 to 112.
        launch = REGS // (self.threads * ctas) // 8 * 8
        self.consumer_regs = min(MAX_REGS, (launch * self.threads - PRODUCER_REGS * 128) // (128 * wgs) // 8 * 8)
        assert self.consumer_regs * 128 * wgs + PRODUCER_REGS * 128 <= launch * self.threads
        self.act_bytes = tile_n * 128  # one activation stage
        self.w_bytes = self.blocks * (BLOB_BYTES + STRIP_BYTES)  # one weight stage
        self.bx = min(tile_n, BOX_ROWS)  # rows of one activation TMA box (sched.act_boxes)
        self.acc_n = tile_n // 2  # fp32 accumulators per thread per m64 block
        # mc 2 (dense): clusters of 2 CTAs. Items (or stream-K tiles) 2P and 2P + 1 are weight tiles
        # 2p, 2p + 1 of one token tile (raster 1, an even number of weight tiles); with an even grid
        # CTA b = 2u + r takes items b + i grid = 2 (u + i grid / 2) + r (stream-K: unit u's range of
        # tile pairs, stream.py), so the pair walks the same token tiles and k steps in lockstep. Each
        # CTA's producer TMA-multicasts the activation boxes b = r mod 2 into both CTAs' stage (the
        # full barrier of each counts all boxes); a stage is refilled only when both CTAs' consumers
        # released it (empty barriers count 2 x 4 wgs warps; lane r of a releasing warp arrives on CTA
        # r's); the producer's tail (_body) keeps the CTA alive until the peer's last arrivals.
        assert mc in (1, 2) and (mc == 1 or (not grouped and split_k == 1 and raster == 1 and not pdl and ctas == 1
                                             and pipe == 16 and self.mt % 2 == 0 and sm_count % 2 == 0))
        self.mc = mc

    # ------------------------------------------------------------------ host side
    @cute.jit
    def grouped_call(self, act: cute.Tensor, blob: cute.Tensor, sf: cute.Tensor, alpha: cute.Tensor,
                     offsets: cute.Tensor, counts: cute.Tensor, out: cute.Tensor, stream):
        self._launch(act, blob, sf, alpha, offsets, counts, out, stream)

    @cute.jit
    def dense_call(self, act: cute.Tensor, blob: cute.Tensor, sf: cute.Tensor, alpha: cute.Tensor,
                   out: cute.Tensor, stream):
        # no offsets/counts: alpha stands in for them (const-folded away in dense mode)
        self._launch(act, blob, sf, alpha, alpha, alpha, out, stream)

    @cute.jit
    def dense_split_call(self, act: cute.Tensor, blob: cute.Tensor, sf: cute.Tensor, alpha: cute.Tensor,
                         out: cute.Tensor, flags: cute.Tensor, workspace: cute.Tensor, stream):
        self._launch(act, blob, sf, alpha, alpha, alpha, out, stream, flags, workspace)

    @cute.jit
    def _launch(self, act, blob, sf, alpha, offsets, counts, out, stream, flags=None, workspace=None):
        # two TMA views of the stage ring: whole tiles (tile_n x 64 per stage, one box: every full
        # token tile inside the tensor) and boxes of bx rows (NB = tile_n / bx per stage, box b of
        # stage s at NB s + b: the same bytes, as SW128 K-major rows are 128 contiguous bytes swizzled
        # in 8-row atoms and a box is a whole number of atoms), for partial tiles (sched.act_boxes);
        # the consumers' descriptors read either the same way
        atom_l = warpgroup.make_smem_layout_atom(warpgroup.SmemLayoutAtomKind.K_SW128, BFloat16)
        staged = cute.tile_to_shape(atom_l, (self.tile_n, 64, self.stages), order=(0, 1, 2))
        boxed = cute.tile_to_shape(atom_l, (self.bx, 64, (self.tile_n // self.bx) * self.stages), order=(0, 1, 2))
        op = cpasync.CopyBulkTensorTileG2SOp()
        tma_atom, tma_act = cpasync.make_tiled_tma_atom(op, act, cute.slice_(staged, (None, None, 0)), (self.tile_n, 64))
        tma_box, tma_act_box = cpasync.make_tiled_tma_atom(op, act, cute.slice_(boxed, (None, None, 0)), (self.bx, 64))
        if const_expr(self.mc == 2):  # every box multicast into both CTAs of the pair (kernel.py __init__)
            tma_box, tma_act_box = cpasync.make_tiled_tma_atom(cpasync.CopyBulkTensorTileG2SMulticastOp(), act,
                                                               cute.slice_(boxed, (None, None, 0)), (self.bx, 64),
                                                               num_multicast=1)
        tma = (tma_atom, tma_act, tma_box, tma_act_box)
        grid = self.sm_count * self.ctas
        if const_expr(not self.grouped):
            # dense: M is known at launch, so launch no CTA without work (at most ctas per SM)
            tiles = (act.shape[0] + (self.tile_n - 1)) // self.tile_n * self.mt
            # (Int64 for stream-K: tiles x kt may pass 2^31)
            grid = Int32(launch_grid(Int64(tiles) if const_expr(self.stream) else tiles, self.kt, self.split_k,
                                     self.stream, self.cluster, self.sm_count * self.ctas, cutlass.min, cutlass.max))
        kw = {"grid": [grid, 1, 1], "block": [self.threads, 1, 1], "stream": stream, "min_blocks_per_mp": self.ctas}
        if const_expr(self.pdl):
            kw["use_pdl"] = True
        if const_expr(self.cluster > 1):
            kw["cluster"] = [self.cluster, 1, 1]
        if const_expr(self.epi == 3):  # (split_k 1, stream 0: the predicate) the tile image, one m64 block per slot
            epi_l = cute.tile_to_shape(atom_l, (self.tile_n, 64, self.blocks), order=(0, 1, 2))
            tma_o_atom, tma_o = cpasync.make_tiled_tma_atom(cpasync.CopyBulkTensorTileS2GOp(), out,
                                                            cute.slice_(epi_l, (None, None, 0)), (self.tile_n, 64))
            launch(self.kernel_tma(*tma, tma_o_atom, tma_o, staged, boxed, epi_l, blob, sf, alpha, offsets, counts, out,
                                   act.shape[0]), kw, "w4a16_ws")
        elif const_expr(self.split_k == 1 and not self.stream):
            launch(self.kernel(*tma, staged, boxed, blob, sf, alpha, offsets, counts, out, act.shape[0]), kw, "w4a16_ws")
        else:
            launch(self.kernel_split(*tma, staged, boxed, blob, sf, alpha, out, act.shape[0], flags, workspace), kw,
                   "w4a16_ws")

    # ------------------------------------------------------------------ device side
    @cute.kernel
    def kernel(self, tma_atom: cute.CopyAtom, tma_act: cute.Tensor, tma_box: cute.CopyAtom, tma_act_box: cute.Tensor,
               staged: cute.ComposedLayout, boxed: cute.ComposedLayout, blob: cute.Tensor, sf: cute.Tensor,
               alpha: cute.Tensor, offsets: cute.Tensor, counts: cute.Tensor, out: cute.Tensor, m_rows: Int32):
        # split_k == 1: flags / workspace stand-ins, never touched (the kernel's parameters and code
        # are those of the unsplit kernel)
        self._body((tma_atom, tma_act, tma_box, tma_act_box), staged, boxed, blob, sf, alpha, offsets, counts, out,
                   m_rows, alpha, alpha)

    @cute.kernel
    def kernel_tma(self, tma_atom: cute.CopyAtom, tma_act: cute.Tensor, tma_box: cute.CopyAtom, tma_act_box: cute.Tensor,
                   tma_o_atom: cute.CopyAtom, tma_o: cute.Tensor, staged: cute.ComposedLayout,
                   boxed: cute.ComposedLayout, epi_l: cute.ComposedLayout, blob: cute.Tensor, sf: cute.Tensor,
                   alpha: cute.Tensor, offsets: cute.Tensor, counts: cute.Tensor, out: cute.Tensor, m_rows: Int32):
        # epi 3: kernel's, plus the output's TMA store view and the tile image's layout
        self._body((tma_atom, tma_act, tma_box, tma_act_box), staged, boxed, blob, sf, alpha, offsets, counts, out,
                   m_rows, alpha, alpha, (tma_o_atom, tma_o, epi_l))

    @cute.kernel
    def kernel_split(self, tma_atom: cute.CopyAtom, tma_act: cute.Tensor, tma_box: cute.CopyAtom,
                     tma_act_box: cute.Tensor, staged: cute.ComposedLayout, boxed: cute.ComposedLayout,
                     blob: cute.Tensor, sf: cute.Tensor, alpha: cute.Tensor, out: cute.Tensor, m_rows: Int32,
                     flags: cute.Tensor, workspace: cute.Tensor):
        self._body((tma_atom, tma_act, tma_box, tma_act_box), staged, boxed, blob, sf, alpha, alpha, alpha, out,
                   m_rows, flags, workspace)

    @cute.jit
    def _body(self, tma, staged: cute.ComposedLayout, boxed: cute.ComposedLayout, blob: cute.Tensor, sf: cute.Tensor,
              alpha: cute.Tensor, offsets: cute.Tensor, counts: cute.Tensor, out: cute.Tensor, m_rows: Int32,
              flags: cute.Tensor, workspace: cute.Tensor, epo=None):
        tidx, _, _ = cute.arch.thread_idx()
        bid, _, _ = cute.arch.block_idx()
        grid, _, _ = cute.arch.grid_dim()
        wg = tidx // 128
        warp = tidx // 32
        lane = tidx % 32
        S, E = self.stages, self.experts

        smem = cutlass.utils.SmemAllocator()
        s_act = smem.allocate_tensor(BFloat16, staged.outer, byte_alignment=1024, swizzle=staged.inner)
        s_box = cute.make_tensor(s_act.iterator, boxed.outer)  # the same ring as boxes (the pointer holds the swizzle)
        s_w = smem.allocate_tensor(Uint8, cute.make_layout(S * self.w_bytes + self.epi_bytes), byte_alignment=128)
        if const_expr(self.epi == 3):  # (atom, output view, the tile image: m64 block b in slot b)
            epo = (epo[0], epo[1], smem.allocate_tensor(BFloat16, epo[2].outer, byte_alignment=1024,
                                                        swizzle=epo[2].inner))
        # full[0, S), empty[S, 2S); red 1: ready 2S, done 2S + 1 (stream.py _split_reduce_cluster)
        bars = smem.allocate_array(Int64, 2 * S + (2 if self.red == 1 else 0), byte_alignment=8)
        s_pre = smem.allocate_tensor(Int32, cute.make_layout(E), byte_alignment=4)  # inclusive work prefix
        s_start = smem.allocate_tensor(Int32, cute.make_layout(E), byte_alignment=4)
        s_cnt = smem.allocate_tensor(Int32, cute.make_layout(E), byte_alignment=4)
        act_base = s_act.iterator.toint()
        w_base = s_w.iterator.toint()
        bar_base = bars.toint()

        if tidx == 0:
            for s in cutlass.range_constexpr(S):
                cute.arch.mbarrier_init(bars + s, 1)  # the producer's arrive (+ tx bytes)
                # one arrive per consumer warp (mc 2: of both CTAs, as the stage is refilled in both)
                cute.arch.mbarrier_init(bars + (S + s), 4 * self.wgs * self.mc)
            if const_expr(self.red == 1):  # every consumer warp of both CTAs of the cluster arrives on each
                cute.arch.mbarrier_init(bars + 2 * S, 4 * self.wgs * 2)
                cute.arch.mbarrier_init(bars + (2 * S + 1), 4 * self.wgs * 2)
            cute.arch.mbarrier_init_fence()
        if warp == 1:
            cpasync.prefetch_descriptor(tma[0])
            cpasync.prefetch_descriptor(tma[2])
        if warp == 0:
            self._build_prefix(offsets, counts, m_rows, lane, s_pre, s_start, s_cnt)
        if const_expr(self.cluster == 1):
            cute.arch.sync_threads()
        else:  # the peers' barriers are initialized before any multicast or remote arrive reaches them
            cute.arch.cluster_arrive()
            cute.arch.cluster_wait()
        if const_expr(self.pdl):  # the next kernel may start its prologue (it waits for us to finish)
            cute.arch.griddepcontrol_launch_dependents()

        total = s_pre[E - 1] * self.split_k  # split-K: item w = split_k * (output tile) + split
        mine = cutlass.max((total - bid + grid - 1) // grid, Int32(0))
        if wg == 0:
            cute.arch.setmaxregister_decrease(PRODUCER_REGS)
            if tidx == 0:
                it = Int32(0)
                if const_expr(self.stream):  # stream-K segments (stream.py)
                    it = self._produce_stream(grid, s_pre, s_start, s_cnt, tma, s_act, s_box, bars, bar_base,
                                              w_base, blob, sf)
                else:
                    pre = Int32(0)  # steps of the first item whose weights were loaded before the wait
                    if const_expr(self.pdl):
                        if mine > 0:
                            pre = self._prefetch_weights(bid, s_pre, s_start, s_cnt, bars, bar_base, w_base, blob,
                                                         sf)
                        cute.arch.griddepcontrol_wait()  # the activations are the previous kernel's output
                    for i in cutlass.range(mine, unroll=1):
                        w = bid + i * grid
                        k0 = Int32(0)
                        if const_expr(self.split_k > 1):
                            w, k0 = split_item(w, self.split_k, self.ks)
                        e, j, m = self._locate(w, s_pre)
                        it = self._produce(it, pre, e, j, m, k0, self.ks, s_start, s_cnt, tma, s_act, s_box, bars,
                                           bar_base, w_base, blob, sf)
                if const_expr(self.mc == 2):
                    # tail (CUTLASS's load_tail; a cluster barrier at exit hung on the H200, session 8):
                    # wait as if to fill S more stages, i.e. until both CTAs' consumers released every
                    # stage this CTA filled; after that no remote arrive or multicast reaches this CTA
                    for q in cutlass.range_constexpr(S):
                        f = it + q
                        mbar_wait(bar_base + (S + f % S) * 8, ((f // S) & 1) ^ 1)
        else:
            cute.arch.setmaxregister_increase(self.consumer_regs)
            if const_expr(self.pdl):  # (the producer's wait already orders everything; kept explicit)
                cute.arch.griddepcontrol_wait()
            self._consume(wg - 1, tidx % 128, lane, mine, bid, grid, s_pre, s_start, s_cnt, act_base, w_base,
                          bar_base, alpha, out, flags, workspace, epo)

    @cute.jit
    def _consume(self, cw, tw, lane, mine, bid, grid, s_pre, s_start, s_cnt, act_base, w_base, bar_base, alpha,
                 out, flags, workspace, epo=None):
        """Consumer warpgroup cw: per work item, zero the accumulators, run the k loop (pipe 16 or
        64, below), drain, release the last stage, store."""
        rb, an = self.rb, self.acc_n
        wq = tw // 32
        luts = (Int32(0), Int32(0)) if self.rot else lut_regs()  # decode_rot needs no tables
        acc = cute.make_rmem_tensor(cute.make_layout((an, rb)), Float32)
        al = cute.make_rmem_tensor(cute.make_layout((2, rb)), Float32)
        if const_expr(self.epi == 3):  # this warp's staging block (a partial tile's stores) inside the tile image
            ebuf = epo[2].iterator.toint() + (cw * 4 + wq) * EPI_WARP_BYTES
        else:  # this warp's staging blocks
            ebuf = w_base + self.stages * self.w_bytes + (cw * 4 + wq) * EPI_WARP_BYTES * EPI_BLOCKS[self.epi]
        if const_expr(self.stream):  # stream-K segments (stream.py)
            self._consume_stream(acc, al, ebuf, cw, tw, wq, lane, luts, grid, s_pre, s_start, s_cnt, act_base,
                                 w_base, bar_base, alpha, out, flags, workspace)
        else:
            it = Int32(0)
            # red 1: every CTA has at most one item (stream.py _split_reduce takes the cluster reduction)
            single = s_pre[self.experts - 1] * self.split_k <= grid if const_expr(self.red == 1) else False
            for i in cutlass.range(mine, unroll=1):
                w = bid + i * grid
                split = Int32(0)
                if const_expr(self.split_k > 1):
                    w, k0 = split_item(w, self.split_k, self.ks)
                    split = k0 // self.ks
                e, j, m = self._locate(w, s_pre)
                if const_expr(self.split_k == 1):
                    self._load_alpha(al, cw, wq, lane, e, m, alpha)  # its latency hides behind the k loop
                acc.fill(0.0)
                if const_expr(self.pipe == 16):
                    self._kloop16(acc, it, cw, tw, lane, act_base, w_base, bar_base, luts)
                else:
                    self._kloop64(acc, it, cw, tw, lane, act_base, w_base, bar_base, luts)
                it += self.ks
                self._drain(acc, bar_base, it, lane)
                if const_expr(self.epi == 3):
                    self._epilogue_tma(acc, al, ebuf, epo, cw, wq, tw, lane, e, j, m, s_start, s_cnt, out)
                elif const_expr(self.split_k == 1):
                    self._epilogue(acc, al, ebuf, cw, wq, lane, e, j, m, s_start, s_cnt, out)
                else:
                    self._split_reduce(acc, cw, wq, lane, j, m, split, flags, workspace, s_start, s_cnt, alpha, out,
                                       al, ebuf, act_base, bar_base, single)
            if const_expr(self.epi == 3):  # the last tile's bulk stores complete before the CTA exits
                if tw == 0:
                    cute.arch.cp_async_bulk_wait_group(0)

    @cute.jit
    def _drain(self, acc, bar_base, it, lane):
        """After an item's (or segment's) k loop ending before step it: wait for its last wgmmas,
        release the last stage, and pin the accumulators (hold: the epilogue's reads are not
        hoisted above the wait)."""
        wg_wait(0)
        self._release(bar_base, it - 1, lane)
        for r in cutlass.range_constexpr(self.rb):
            vals = hold([acc[q, r] for q in range(self.acc_n)])
            for q in cutlass.range_constexpr(self.acc_n):
                acc[q, r] = vals[q]

    @cute.jit
    def _release(self, bar_base, step, lane):
        """The stage of pipeline step `step` is no longer read by this warp: one arrive per warp
        (mc 2: lane r arrives on CTA r's empty barrier, the stage being refilled in both)."""
        self._arrive_empty(bar_base + (self.stages + step % self.stages) * 8, lane)

    @cute.jit
    def _arrive_empty(self, mbar, lane):
        if const_expr(self.mc == 1):
            if lane == 0:
                mbar_arrive(mbar)
        elif lane < 2:
            mbar_arrive_cluster(mbar, lane)

    @cute.jit
    def _release_prev(self, bar_base, step, lane):
        """Release step - 1's stage; lean 1 takes its index from step's (no second division)."""
        if const_expr(self.lean):
            self._arrive_empty(bar_base + (self.stages + prev_stage(step % self.stages, self.stages)) * 8, lane)
        else:
            self._release(bar_base, step - 1, lane)

    # ---------------------------------------------------------------- pipe 16 (k16 commit groups)
    # One commit group per k16 block (rb wgmmas), wait_group(D) after each issue (D = depth), the
    # decode of block X + 1 issued before block X (D = 2: between the wgmmas of X - 1 and X) or
    # after X's wait (D = 3). The A fragment has 4 slots (one per k16 block of a k64 step).
    # Register invariant (PTX: writing an in-flight wgmma's A registers is undefined): slot
    # X + 1 mod 4 is rewritten only when its previous reader, block X - 3, has retired: D = 2
    # decodes after the wait that followed X - 1 (pending at most X - 2, X - 1), D = 3 after the
    # wait that followed X (pending at most X - 2 .. X). So one traced k64 step per loop iteration
    # is safe even though the loop reuses the slots' PTX registers. (8 slots with D = 4, two steps
    # traced per iteration, was tried: ptxas serializes every wgmma, C7513.) Stage invariant: after
    # block b of step t is issued and waited for, every block up to 4 t + b - D has retired, i.e.
    # all of step t - 1 once b >= D - 1: step t - 1's stage (blob words, scales, activation tile)
    # is released at block D - 1 of step t.
    @cute.jit
    def _load16(self, frag_x, frag_s, step, cw, tw, w_base, bar_base, ready=None):
        """Wait for step's stage (peek 1: not when `ready`, _step16's earlier test, saw it full),
        load this thread's blob words and scale words of its rb blocks."""
        S, rb = self.stages, self.rb
        s = step % S
        if const_expr(ready is None):
            mbar_wait(bar_base + s * 8, (step // S) & 1)
        else:
            if ready == 0:  # peek 1: _step16's earlier test did not see the stage full
                mbar_wait(bar_base + s * 8, (step // S) & 1)
        wsm = w_base + s * self.w_bytes
        for r in cutlass.range_constexpr(rb):
            blk = cw * rb + r
            x = blob_words(wsm + blk * BLOB_BYTES, tw, self.kq)
            sc = lds_v2(wsm + self.blocks * BLOB_BYTES + blk * STRIP_BYTES + (tw // 4) * 8)
            for w in cutlass.range_constexpr(4):
                frag_x[w, r] = x[w]
            for w in cutlass.range_constexpr(2):
                frag_s[w, r] = sc[w]

    # Plain Python helper, traced inline: k16 block b's code word and its scale word (bytes 2 (b % 2),
    # + 1 = rows (l, l + 8)) -> the 4 A registers
    def _decode_word(self, word, sc, b, luts):
        if self.rot:  # word order "rot": decode_rot (13 ops) with the pair in the 2^119 form
            return decode_rot(word, rot_scale_pair(sc, b % 2 == 1))
        return decode_k16(word, luts[0], luts[1], scale_pair(sc, 2 * (b % 2)))

    @cute.jit
    def _decode16(self, frag, frag_x, frag_s, b: cutlass.Constexpr[int], luts):
        """k16 block b of the loaded words -> slot b of the A fragment (rb x 4 registers)."""
        for r in cutlass.range_constexpr(self.rb):
            if const_expr(self.probe == 1):  # diagnostic: the raw words as the A fragment, no decode
                vals = [frag_x[b, r]] * 4
            else:
                vals = self._decode_word(frag_x[b, r], frag_s[b // 2, r], b, luts)
            for q in cutlass.range_constexpr(4):
                frag[q, b, r] = vals[q]

    @cute.jit
    def _issue16(self, acc, frag, step, b: cutlass.Constexpr[int], act_base):
        """The rb wgmmas of k16 block b of step `step` as one commit group."""
        an = self.acc_n
        if const_expr(self.lean):  # one descriptor per step (CSE'd across the 4 blocks), + 2 per block
            desc = block_desc(desc_lo(act_base + (step % self.stages) * self.act_bytes), b)
        else:
            desc = sw128_desc(act_base + (step % self.stages) * self.act_bytes + b * 32)
        wg_fence()
        for r in cutlass.range_constexpr(self.rb):
            if const_expr(self.probe == 2):  # diagnostic: no wgmma; the decoded fragment is consumed
                consume([frag[q, b, r] for q in range(4)])
            else:
                new = wgmma_rs([acc[q, r] for q in range(an)], [frag[q, b, r] for q in range(4)], desc, self.tile_n)
                for q in cutlass.range_constexpr(an):
                    acc[q, r] = new[q]
        wg_commit()

    @cute.jit
    def _step16(self, acc, frag, frag_x, frag_s, step, first, last: cutlass.Constexpr[bool], cw, tw, lane, act_base,
                w_base, bar_base, luts):
        """The 4 k16 blocks of step `step`; unless `last`, block 3 also loads the next step's words
        and decodes its block 0. `first` (traced or a Python bool): the item's step 0, whose
        predecessor belongs to the previous item (released by it). peek 1: after block 0's wait, one
        non-blocking test of the next step's full barrier, so block 3's load spins only if the
        stage was not full then (quack's consumer_try_wait; the blocking wait leaves the path
        between two wgmma issues)."""
        D = self.depth
        ready = None
        for b in cutlass.range_constexpr(4):
            if const_expr(D == 2):
                self._decode_next(frag, frag_x, frag_s, step, b, last, cw, tw, w_base, bar_base, luts, ready)
            self._issue16(acc, frag, step, b, act_base)
            if const_expr(b < 3 or not last):
                wg_wait(D)
            if const_expr(b == 0 and self.peek and not last):
                nxt = step + 1
                ready = mbar_test(bar_base + (nxt % self.stages) * 8, (nxt // self.stages) & 1)
            if const_expr(D == 3):
                self._decode_next(frag, frag_x, frag_s, step, b, last, cw, tw, w_base, bar_base, luts, ready)
            if const_expr(b == D - 1):
                if const_expr(isinstance(first, bool)):
                    if const_expr(not first):
                        self._release_prev(bar_base, step, lane)
                elif not first:
                    self._release_prev(bar_base, step, lane)

    @cute.jit
    def _decode_next(self, frag, frag_x, frag_s, step, b: cutlass.Constexpr[int], last: cutlass.Constexpr[bool], cw, tw,
                     w_base, bar_base, luts, ready=None):
        """Decode the block after block b of step `step` (block b + 1, or at b = 3 the next step's
        block 0 after loading its words; nothing after the item's last block)."""
        if const_expr(b < 3):
            self._decode16(frag, frag_x, frag_s, b + 1, luts)
        elif const_expr(not last):
            self._load16(frag_x, frag_s, step + 1, cw, tw, w_base, bar_base, ready)
            self._decode16(frag, frag_x, frag_s, 0, luts)

    @cute.jit
    def _kloop16(self, acc, it, cw, tw, lane, act_base, w_base, bar_base, luts, n=None):
        """The item's k steps it .. it + ks - 1 (stream-K: a segment's n, traced)."""
        rb = self.rb
        ks = self.ks
        if const_expr(n is not None):
            ks = n
        frag = cute.make_rmem_tensor(cute.make_layout((4, 4, rb)), Int32)
        frag_x = cute.make_rmem_tensor(cute.make_layout((4, rb)), Int32)
        frag_s = cute.make_rmem_tensor(cute.make_layout((2, rb)), Int32)
        self._load16(frag_x, frag_s, it, cw, tw, w_base, bar_base)
        self._decode16(frag, frag_x, frag_s, 0, luts)
        args = (cw, tw, lane, act_base, w_base, bar_base, luts)
        for t in cutlass.range(ks - 1, unroll=1):  # every step but the last: preload the next
            self._step16(acc, frag, frag_x, frag_s, it + t, t == 0, False, *args)
        self._step16(acc, frag, frag_x, frag_s, it + ks - 1, ks == 1, True, *args)

    # ---------------------------------------------------------------- pipe 64 (session 4's loop)
    @cute.jit
    def _kloop64(self, acc, it, cw, tw, lane, act_base, w_base, bar_base, luts):
        """One commit group per k64 step. The loop runs two steps per iteration, traced
        separately: each step's decoded A fragments are then distinct PTX registers from the
        previous step's, which its wgmmas may still be reading (with one traced step the loop back
        edge reuses them, and the GPU tests caught wrong rows)."""
        for kk in cutlass.range(self.ks // 2, unroll=1):
            self._kstep(acc, it, cw, tw, act_base, w_base, bar_base, luts)
            if kk > 0:
                self._release_prev(bar_base, it, lane)
            self._kstep(acc, it + 1, cw, tw, act_base, w_base, bar_base, luts)
            self._release(bar_base, it, lane)
            it += 2
        if const_expr(self.ks % 2 == 1):
            self._kstep(acc, it, cw, tw, act_base, w_base, bar_base, luts)
            if const_expr(self.ks > 1):
                self._release_prev(bar_base, it, lane)

    @cute.jit
    def _kstep(self, acc, step, cw, tw, act_base, w_base, bar_base, luts):
        """Pipeline step `step` (one k64 slice): wait for its stage, decode this warpgroup's rb m64
        blocks, issue rb x 4 wgmmas as one group, then wait until only that group is in flight."""
        S, rb, an = self.stages, self.rb, self.acc_n
        s = step % S
        mbar_wait(bar_base + s * 8, (step // S) & 1)
        wsm = w_base + s * self.w_bytes
        frags = []
        for r in cutlass.range_constexpr(rb):
            blk = cw * rb + r
            x = blob_words(wsm + blk * BLOB_BYTES, tw, self.kq)
            sc = lds_v2(wsm + self.blocks * BLOB_BYTES + blk * STRIP_BYTES + (tw // 4) * 8)
            for b in cutlass.range_constexpr(4):
                frags.append(self._decode_word(x[b], sc[b // 2], b, luts))
        abase = act_base + s * self.act_bytes
        wg_fence()
        for r in cutlass.range_constexpr(rb):
            for b in cutlass.range_constexpr(4):
                new = wgmma_rs([acc[q, r] for q in range(an)], frags[r * 4 + b],
                               block_desc(desc_lo(abase), b) if const_expr(self.lean) else sw128_desc(abase + b * 32),
                               self.tile_n)
                for q in cutlass.range_constexpr(an):
                    acc[q, r] = new[q]
        wg_commit()
        wg_wait(1)  # the previous step's group is done: the caller releases its stage


def make_kernel(p, grouped: bool):
    split = getattr(p, "split_k", 1)
    order = getattr(p, "word_order", "nibble")
    k = W4A16WsKernel(p.n, p.k, p.experts, grouped, p.tile_m, p.tile_n, p.stages, p.sm_count, p.wgs, p.pipe, split,
                      bool(getattr(p, "pdl", False)), getattr(p, "epi", 0), getattr(p, "depth", 2),
                      getattr(p, "raster", 1), getattr(p, "ctas", 1), getattr(p, "lean", 0), getattr(p, "probe", 0),
                      getattr(p, "stream", 0), getattr(p, "peek", 0), getattr(p, "mc", 1), getattr(p, "red", 0),
                      red_parts(p), order in ROT_DECODED, order in QUAD_PLACED)
    return k.grouped_call if grouped else (k.dense_split_call if split > 1 or k.stream else k.dense_call)
