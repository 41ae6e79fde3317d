"""CuTe DSL kernel of the w4a16 families (sm_90a). Layout and numerics: see __init__ and
prepare.py; every bit-level step here is replayed on the CPU by prepare.emulate_weights.

The register-level PTX (fragment semantics, decode, loads) lives in ptx.py.

Invariants:
  * every load address is in bounds: token rows are clamped into the expert's counted range
    (a clamped row feeds only MMA columns that are never stored: columns are independent);
  * a CTA's control flow is uniform up to lane-level predicates on the final stores, so the
    barriers around the shared-memory reduction are reached by every thread;
  * nothing is written outside [offsets[e], offsets[e] + counts[e]) x [N rows of this CTA],
    and that range is clamped into [0, M) first.
"""

import copy

import cutlass
import cutlass.cute as cute
from cutlass import BFloat16, Float32, Int32, Int64, const_expr

from nvfp4_aot.runtime.layout import QUAD_ORDERS
from nvfp4_aot.runtime.word_order import QUAD_PLACED, ROT_DECODED

from ..hopper import launch
from . import ACT_ROW_BYTES, BLOB_TILE, EPI_SCALE, K_STEP, SK_ROW_BYTES, STRIP_TILE, ring_ctas, tail_item
from .ptx import (cp_async_16_ca, cp_async_commit, cp_async_wait, decode_block, decode_rot, decode_sel, ld_cached_v4,
                  ld_shared_v4, ld_stream_u16, ld_stream_v4, ldmatrix_x4, mma_bf16, prefetch_l2, quad_scales,
                  scale_pair, st_shared_v4)
from .ring import RingMainloop
from .wgmma import WgmmaMainloop

SB_ROW_WORDS = ACT_ROW_BYTES["n"] // 4  # split "n" (and split "k", sk = 0): words per staged token row
SK_ROW_WORDS = SK_ROW_BYTES // 4  # split "k", sk = 1: words per staged k64 row



class W4A16Kernel(RingMainloop, WgmmaMainloop):
    """split "k" (decode): one CTA = 16 * rb weight rows of one expert; its `warps` warps split K
    chunk-wise (warp w takes chunks w, w + warps, ...), each staging its own activation rows
    (L1-resident) for ldmatrix, and reduce through shared memory. sk = 1 stages k64 tiles in two
    buffers (the next in flight while one is consumed), wpf = 1 loads the next chunk's weights
    into registers before this one is consumed (W4A16Params).
    split "n" (prefill): one CTA = 16 * rb * warps rows; each warp owns 16 * rb of them for the
    whole K, and the CTA stages each activation chunk (8 * nt tokens x 256 K) in shared memory
    once for all warps: activation traffic from L2 falls by the CTA's row count. stages > 1:
    activations and weights flow through a cp.async ring (ring.py), S - 1 K steps in flight.
    Both loop over the expert's token tiles (8 * nt tokens) inside the launch.
    quad = act in quad order (runtime/layout.py; split "k" / "n"): lane (g, t) finds its eight
    B-fragment words of a k64 tile of token row g at bytes 32t .. 32t + 31 of the tile, in
    register order (word 2b + e = register e of k16 block b): split "k" loads them from global
    memory with two 16-byte loads (no staging, no warp barriers), split "n" from the staged rows
    with two 16-byte shared loads instead of ldmatrix.
    kq = the blob in word order "rotq" (runtime/word_order.py; split "k", natural K, dense): lane (g, t)'s
    16 blob bytes sit at 16 (8 t + g) of the slice's tile and hold K 16 t .. 16 t + 15 only, so the lane
    loads that range of each token row as two 16-byte global loads (word j and j + 4: block j's B
    registers), no staging, and multiplies all four blocks by its own scale pair (no quad shuffles)."""

    def __init__(self, n: int, k: int, experts: int, grouped: bool, warps: int, rb: int, nt: int, split: str = "k",
                 stages: int = 1, quad: bool = False, sel: bool = False, ctas: int = 1, rot: bool = False,
                 tail: int = 0, sk: int = 0, wpf: int = 0, kq: bool = False, l2pf: int = 0):
        assert not (sk or wpf) or (split == "k" and not quad)  # wpf with kq: its B fragments from global memory
        assert not kq or (split == "k" and not quad and not sk and rot and not grouped)
        self.kq = kq  # word order "rotq": lane t's blob words and activations both K 16t .. 16t + 15 of a k64 tile
        self.gmem_b = split == "k" and (quad or kq)  # split "k" reading its B fragments straight from global memory
        self.sk = sk  # W4A16Params.sk: split "k" natural-K staging (0: per K step; 1: k64 tiles, two buffers)
        self.wpf = wpf  # W4A16Params.wpf: the next K step's weights in flight while this one is consumed
        assert not l2pf or (split == "k" and stages == 1)
        self.l2pf = l2pf  # W4A16Params.l2pf: a warp's weights this many K steps ahead prefetched into L2
        assert not quad or split in ("k", "n")
        assert not sel or quad
        self.quad = quad  # act_order "quad" or "quad8": lane t's B-fragment words contiguous
        self.sel = sel  # act_order "quad8": its K order within each k16 block is decode_sel's
        assert not (rot and sel)
        self.rot = rot  # word_order "rot" (runtime/word_order.py): decode_rot, decode_block's registers
        assert n % 64 == 0 and n % (16 * rb) == 0 and k % K_STEP == 0 and split in ("k", "n", "wg")
        assert stages == 1 or split in ("wg", "n")
        self.stages = stages
        self.ctas = ctas  # the launch's min_blocks_per_mp (ring_ctas: > 1 for the split "n" ring only)
        assert ctas == 1 or (split == "n" and stages > 1)
        # W4A16Params.tail: the last partial wave's units as half CTAs (tail_item), over tail x ctas slots
        assert not tail or (grouped and split == "n" and stages > 1 and rb % 2 == 0)
        self.tail = tail
        self.n, self.k, self.experts, self.grouped = n, k, experts, grouped
        self.warps, self.rb, self.nt, self.split_n = warps, rb, nt, split == "n"
        self.wg = split == "wg"
        assert not self.wg or (warps in (4, 8) and nt in (8, 16))
        self.rstride = 4 if self.wg else 1  # row-block stride between a warp's rb blocks
        self.chunks = k // K_STEP
        self.ktiles = k // 64  # k64 tiles of the weight layout
        self.blocks = n // 16  # 16-row blocks per expert
        self.cta_blocks = rb * (warps if (self.split_n or self.wg) else 1)
        assert self.blocks % self.cta_blocks == 0
        self.bt = 8 * nt
        self.threads = 32 * warps
        self.red_len = 32 * 4 * nt * rb  # fp32 accumulators per warp
        self.warp_sb_words = self.bt * (2 * SK_ROW_WORDS if sk else SB_ROW_WORDS)  # split "k" natural: a warp's staging
        assert not (self.split_n or self.wg) or (self.bt * 32) % self.threads == 0

    @cute.jit
    def grouped_call(self, act: cute.Tensor, blob: cute.Tensor, sf: cute.Tensor, alpha: cute.Tensor,
                     offsets: cute.Tensor, counts: cute.Tensor, out: cute.Tensor, stream):
        self._launch(act, blob, sf, alpha, offsets, counts, out, stream)

    @cute.jit
    def dense_call(self, act: cute.Tensor, blob: cute.Tensor, sf: cute.Tensor, alpha: cute.Tensor, out: cute.Tensor,
                   stream):
        # offsets/counts are unused in dense mode (const-folded away); alpha stands in for them
        self._launch(act, blob, sf, alpha, alpha, alpha, out, stream)

    @cute.jit
    def _launch(self, act, blob, sf, alpha, offsets, counts, out, stream):
        # grouped: grid row y serves the y-th expert with rows (_nth_active); at most M experts
        # have rows, so min(E, M) rows of CTAs: a decode step of a few tokens launches the CTAs
        # of the few experts it routes to, not E experts' worth that would find nothing to do
        ys = cutlass.max(cutlass.min(act.shape[0], self.experts), 1) if const_expr(self.grouped) else self.experts
        grid = [self.blocks // self.cta_blocks, ys, 1]
        if const_expr(self.tail):
            # one row of CTAs in issue order: the whole units (tile, expert rank) x-fastest as the 2-D
            # grid orders them, then at most slots / 2 more for the halves (tail_item)
            grid = [self.blocks // self.cta_blocks * ys + self.tail * self.ctas // 2, 1, 1]
        kw = {"grid": grid, "block": [self.threads, 1, 1], "stream": stream}
        if const_expr(self.ctas > 1):
            # the split "n" ring's stages are sized for ctas CTAs per SM: hold ptxas to their
            # register share (8 warps: 128 per thread at 2, 80 at 3; ring_mainloop's per-count K
            # loops need the bound: without it the nt 4 kernel took 130 registers, one CTA per SM)
            kw["min_blocks_per_mp"] = self.ctas
        launch(self.kernel(act, blob, sf, alpha, offsets, counts, out, act.shape[0]), kw, "w4a16")

    @cute.kernel
    def kernel(self, act: cute.Tensor, blob: cute.Tensor, sf: cute.Tensor, alpha: cute.Tensor, offsets: cute.Tensor,
               counts: cute.Tensor, out: cute.Tensor, m_rows: Int32):
        tidx, _, _ = cute.arch.thread_idx()
        bx, by, _ = cute.arch.block_idx()
        lane = tidx % 32
        warp = tidx // 32
        g = lane // 4
        t = lane % 4
        rb, nt, bt = self.rb, self.nt, self.bt

        smem = cutlass.utils.SmemAllocator()
        if const_expr(self.stages > 1):
            sb = smem.allocate_tensor(Int32, cute.make_layout(self.stages * self.stage_words), byte_alignment=1024)
            red = sb
        elif const_expr(self.wg):
            sb = smem.allocate_tensor(Int32, cute.make_layout(bt * 128), byte_alignment=1024)
            red = sb
        elif const_expr(self.split_n):
            sb = smem.allocate_tensor(Int32, cute.make_layout(bt * SB_ROW_WORDS), byte_alignment=16)
            red = sb
        elif const_expr(self.gmem_b):
            red = smem.allocate_tensor(Float32, cute.make_layout((self.red_len, self.warps)), byte_alignment=16)
            sb = red  # unused: split "k" on quad order (or kq) reads its B fragments from global memory
        else:
            red = smem.allocate_tensor(Float32, cute.make_layout((self.red_len, self.warps)), byte_alignment=16)
            # each warp's own staging rows (8 * nt tokens x one K step, or two k64 tiles) for ldmatrix
            sb = smem.allocate_tensor(Int32, cute.make_layout(self.warps * self.warp_sb_words), byte_alignment=16)

        part = Int32(0)  # tail: 0 = the whole unit, 1 / 2 = its first / second half (tail_item)
        if const_expr(self.tail):
            per = self.blocks // self.cta_blocks  # weight tiles (whole CTAs) per expert
            units = per * self._active_count(offsets, counts, m_rows, lane)
            unit, part = tail_item(bx, units, self.tail * self.ctas, cutlass.min, cutlass.max)
            bx, by = unit % per, unit // per  # by >= the active count past the halves: no rows
        start = Int32(0)
        cnt = m_rows
        if const_expr(self.grouped):
            # clamp the group into [0, M): a corrupt offsets/counts pair can then only produce
            # wrong rows, never an out-of-bounds access (validity is checked before launch by
            # the runner in check="full" mode; the hot path cannot read device data)
            # e = E (no expert left for this grid row) comes with start = cnt = 0
            e, start, cnt = self._nth_active(offsets, counts, m_rows, lane, by)
            by = cutlass.min(e, self.experts - 1)
        n_tiles = (cnt + (bt - 1)) // bt

        # first 16-row block of this warp, and the chunks it walks
        rb0 = bx * rb
        c_first, c_step = warp, self.warps
        if const_expr(self.split_n):
            rb0 = (bx * self.warps + warp) * rb
            if const_expr(self.tail):
                # a half CTA: its warps take rb / 2 blocks each, in the unit's first or second half
                hb = rb // 2
                rb0 = rb0 * (1 - cutlass.min(part, 1)) + (bx * self.warps * rb + (part - 1) * self.warps * hb
                                                           + warp * hb) * cutlass.min(part, 1)
            c_first, c_step = 0, 1
        if const_expr(self.wg):
            # warpgroup wg = warp // 4 owns rb m64 blocks; warp w % 4 owns rows 16 (w % 4) .. of each
            rb0 = (bx * (self.warps // 4) + warp // 4) * 4 * rb + warp % 4
            c_first, c_step = 0, 1
        row_bytes = Int64(self.k * 2)
        abase = act.iterator.toint() + Int64(start) * row_bytes
        # 16-row block rbi = (64-row group rbi // 4, warp slice rbi % 4): its k64 tile kt is
        # blob[G, kt, 32 w : 32 w + 32] (512 B) and strip[G, kt, 8 w : 8 w + 8] (64 B)
        wb = cute.make_rmem_tensor(cute.make_layout(rb), Int64)
        sbw = cute.make_rmem_tensor(cute.make_layout(rb), Int64)
        for r in cutlass.range_constexpr(rb):
            rbi = rb0 + r * self.rstride
            gt = Int64(by * (self.blocks // 4) + rbi // 4) * self.ktiles
            wb[r] = blob.iterator.toint() + gt * BLOB_TILE + Int64((rbi % 4) * 512)
            sbw[r] = sf.iterator.toint() + gt * STRIP_TILE + Int64((rbi % 4) * 64)

        acc = cute.make_rmem_tensor(cute.make_layout((4, nt, rb)), Float32)
        if const_expr(self.wg):
            acc = cute.make_rmem_tensor(cute.make_layout((bt // 2, rb)), Float32)
        aw = cute.make_rmem_tensor(cute.make_layout((4, 4, rb)), Int32)  # raw codes (block, k64 tile, row block)
        sw = cute.make_rmem_tensor(cute.make_layout((4, rb)), Int32)  # lane t's scale pair (block t) per k64 tile
        af = cute.make_rmem_tensor(cute.make_layout((4, 4, rb)), Int32)  # decoded fragment (reg, block, row block)
        bw = cute.make_rmem_tensor(cute.make_layout(8), Int32)
        bwk = cute.make_rmem_tensor(cute.make_layout((8, nt)), Int32)
        arow = cute.make_rmem_tensor(cute.make_layout(nt), Int64)  # split "k", quad: lane's bytes of row g

        if const_expr(self.tail):
            if part == 0:  # CTA-uniform
                self.ring_mainloop(acc, sb, abase, row_bytes, wb, sbw, tidx, warp, lane, n_tiles, cnt,
                                   red, alpha, out, rb0, by, start)
            else:
                self.halved().ring_mainloop(acc, sb, abase, row_bytes, wb, sbw, tidx, warp, lane, n_tiles, cnt,
                                            red, alpha, out, rb0, by, start)
        elif const_expr(self.stages > 1):
            self.ring_mainloop(acc, sb, abase, row_bytes, wb, sbw, tidx, warp, lane, n_tiles, cnt,
                               red, alpha, out, rb0, by, start)
        else:
            for tt in cutlass.range(n_tiles):
                tok0 = tt * bt
                acc.fill(0.0)
                if const_expr(self.gmem_b):
                    # token row g of fragment j, clamped into the count (a clamped row feeds only
                    # MMA columns that are never stored), at lane t's 32 bytes of each k64 tile
                    for j in cutlass.range_constexpr(nt):
                        arow[j] = abase + Int64(cutlass.min(tok0 + 8 * j + g, cnt - 1)) * row_bytes + Int64(t * 32)
                wsb = sb.iterator.toint() + warp * (self.warp_sb_words * 4)
                for i in cutlass.range_constexpr(self.l2pf):  # the walk's first l2pf steps (the loop adds the rest)
                    self._l2_prefetch(wb, sbw, lane, c_first + i * c_step)
                if const_expr(self.sk):
                    # the warp's first k64 tile into buffer 0 (_sk_tiles: each tile puts the next one in flight)
                    self._stage_tile(wsb, abase, row_bytes, lane, 4 * c_first, tok0, cnt, Int32(c_first < self.chunks))
                if const_expr(self.wpf):
                    self._load_weights(aw, sw, wb, sbw, lane, g, t, cutlass.min(c_first, self.chunks - 1))
                for c in cutlass.range(c_first, self.chunks, c_step):
                    if const_expr(self.l2pf):
                        self._l2_prefetch(wb, sbw, lane, c + self.l2pf * c_step)
                    if const_expr(not self.wpf):
                        self._load_weights(aw, sw, wb, sbw, lane, g, t, c)
                    if const_expr(self.wpf):
                        self._wpf_step(acc, aw, sw, bwk, wsb, wb, sbw, abase, row_bytes, lane, g, t, c, c_step, tok0,
                                       cnt, arow)
                    elif const_expr(self.wg):
                        self.wg_stage(sb, abase, row_bytes, tidx, c, tok0, cnt)
                        self.wg_chunk(acc, aw, sw, sb.iterator.toint())
                    elif const_expr(self.split_n):
                        self._stage_activations(sb, abase, row_bytes, tidx, c, tok0, cnt)
                        for kt in cutlass.range_constexpr(4):
                            self._mma_tile_smem(acc, aw, sw, af, bw, sb, kt, lane)
                    elif const_expr(self.gmem_b):
                        for kt in cutlass.range_constexpr(4):
                            self._mma_tile_gmem(acc, aw, sw, bwk, arow, c, kt)
                    else:
                        self._staged_step(acc, aw, sw, bwk, wsb, abase, row_bytes, lane, c, c_step, tok0, cnt)
                if const_expr(self.sk):
                    cp_async_wait(0)  # the last tile's (empty) group: nothing in flight into the buffers
                self._epilogue(acc, red, alpha, out, lane, warp, tidx, rb0, by, start, cnt, tok0)

    def halved(self) -> "W4A16Kernel":
        """The tail's half CTA (split "n" ring): this kernel with rb / 2 row blocks per warp, traced as the
        second copy of the mainloop in the same kernel. Everything the ring derives from rb follows (stage
        layout, weight slots, the blocks it copies, decodes, multiplies and stores); the shared memory
        allocated for the whole CTA's stages holds the smaller ones, and the accumulators' first rb / 2
        blocks are the ones used. Each output row takes the same loads, decodes and MMAs in the same
        order as in a whole CTA, so the halves' rows are bitwise those of the whole unit."""
        h = copy.copy(self)
        h.rb = self.rb // 2
        h.cta_blocks = self.cta_blocks // 2
        h.red_len = self.red_len // 2
        h.tail = 0
        return h

    @cute.jit
    def _group(self, offsets, counts, m_rows, i):
        """Expert i's group [st, st + c) clamped into [0, M) (the _nth_active rule); (0, 0) for i >= E."""
        st, c = Int32(0), Int32(0)
        if i < self.experts:
            st = cutlass.min(cutlass.max(offsets[i], 0), m_rows)
            c = cutlass.min(cutlass.max(counts[i], 0), m_rows - st)
        return st, c

    @cute.jit
    def _active_count(self, offsets, counts, m_rows, lane):
        """How many experts hold rows after the clamp (warp-uniform: one ballot per 32 experts)."""
        n = Int32(0)
        for base in cutlass.range_constexpr(0, self.experts, 32):
            st, c = self._group(offsets, counts, m_rows, base + lane)
            n = n + cute.arch.popc(cute.arch.vote_ballot_sync(c > 0))
        return n

    @cute.jit
    def _nth_active(self, offsets, counts, m_rows, lane, rank):
        """(e, start, cnt): the rank-th expert (from 0, in expert order) whose clamped group
        [start, start + cnt) = [offsets, offsets + counts) n [0, M) holds rows, or (E, 0, 0) when
        fewer than rank + 1 do. Every warp scans the E groups 32 at a time (lane i clamps expert
        base + i's group; ballot, then the lane whose live bits below it number what is left of
        rank hands its clamped group to the warp by shuffle), so the result is warp-uniform with
        no barrier and no second read of offsets / counts. Valid groups are disjoint, so at most M
        experts hold rows and the launch's min(E, M) grid rows cover them all; corrupt overlapping
        groups can hold more, and those past the grid get no CTA (wrong rows, never an
        out-of-bounds access, as the clamp promises)."""
        e, start, cnt = Int32(self.experts), Int32(0), Int32(0)
        left = rank
        for base in cutlass.range_constexpr(0, self.experts, 32):
            st, c = self._group(offsets, counts, m_rows, base + lane)
            live = c > 0
            bal = cute.arch.vote_ballot_sync(live)
            below = cute.arch.popc(bal & ((Int32(1) << lane) - 1))
            hit = cute.arch.vote_ballot_sync(live & (below == left))
            if hit != 0:  # warp-uniform (a ballot): every lane takes part in the shuffles
                src = 31 - Int32(cute.arch.clz(hit))
                e = base + src
                start = cute.arch.shuffle_sync(st, src)
                cnt = cute.arch.shuffle_sync(c, src)
            left = left - cute.arch.popc(bal)
        return e, start, cnt

    @cute.jit
    def _stage_warp(self, wsb, abase, row_bytes, lane, c, tok0, cnt):
        """split "k": the warp copies K step c of its token tile's rows into its own shared rows
        (SB_ROW_WORDS apart, as split "n" lays them out), 16-byte vectors, only rows inside the
        expert's count (the others feed MMA columns that are never stored). K is natural, so a
        lane's B-fragment pairs are 16 B apart: direct 4-byte global loads would cost one L1
        wavefront per token row each; ldmatrix from these rows gives the fragments instead.
        The rows go by cp.async, one predicated copy each, so all of them are in flight at once
        behind one wait (session 28: through registers, ptxas kept ~3 rows in flight and issued the
        step's weight loads only after the staged stores had waited on them; docs/PERFORMANCE.md
        "session 28": w4a16_gemm's served M <= 16 tilings 1-18% faster cold on an H200, same call)."""
        cute.arch.sync_warp()  # every lane's ldmatrix of the previous step is done
        src = abase + Int64(tok0) * row_bytes + Int64(c * 512 + lane * 16)
        for row in cutlass.range_constexpr(self.bt):
            cp_async_16_ca(wsb + (row * SB_ROW_WORDS + lane * 4) * 4, src + Int64(row) * row_bytes,
                           Int32(tok0 + row < cnt))
        cp_async_commit()
        cp_async_wait(0)
        cute.arch.sync_warp()

    # Plain Python helper, traced inline: K step c's weights of the warp's rb row blocks (4 k64 tiles) and scales
    # (lane t: the scale pair of block t, kq: of its own K 16t .. 16t + 15; the lane's 16 blob bytes at 16 lane, kq:
    # at 16 (8 t + g)).
    def _load_weights(self, aw, sw, wb, sbw, lane, g, t, c):
        at = (8 * t + g) * 16 if self.kq else lane * 16
        for r in range(self.rb):
            for kt in range(4):
                x0, x1, x2, x3 = ld_stream_v4(wb[r] + Int64((4 * c + kt) * BLOB_TILE + at))
                aw[0, kt, r] = x0
                aw[1, kt, r] = x1
                aw[2, kt, r] = x2
                aw[3, kt, r] = x3
                sw[kt, r] = ld_stream_u16(sbw[r] + Int64((4 * c + kt) * STRIP_TILE + g * 8 + t * 2))

    @cute.jit
    def _l2_prefetch(self, wb, sbw, lane, c):
        """l2pf: K step c's weights into L2 (lanes 0 .. 3: k64 tile kt = lane of each of the warp's rb slices, 512 B
        of blob and its 64 B scale strip); nothing past K. Fire and forget: the step's own loads (_load_weights, later)
        then find their lines in L2 or in flight, so a warp's steps stop waiting one DRAM latency each."""
        kt = lane % 4
        on = Int32(lane < 4) * Int32(c < self.chunks)
        for r in cutlass.range_constexpr(self.rb):
            prefetch_l2(wb[r] + Int64((4 * c + kt) * BLOB_TILE), 512, on)
            prefetch_l2(sbw[r] + Int64((4 * c + kt) * STRIP_TILE), 64, on)

    @cute.jit
    def _stage_tile(self, buf, abase, row_bytes, lane, tile, tok0, cnt, valid):
        """split "k", sk > 0: the warp copies k64 tile `tile` (global index) of its token rows into buf (SK_ROW_WORDS
        apart): 8 lanes per row (16 B each), 4 rows per instruction, one cp.async group; rows past the count and
        an invalid tile (valid = 0: the warp's walk is over) are not copied."""
        cute.arch.sync_warp()  # every lane's ldmatrix of this buffer's previous tile is done
        r0 = lane // 8
        vec = lane % 8
        src = abase + Int64(tok0 + r0) * row_bytes + Int64(tile * 128 + vec * 16)
        for i in cutlass.range_constexpr(self.bt // 4):
            cp_async_16_ca(buf + ((r0 + 4 * i) * SK_ROW_WORDS + vec * 4) * 4, src + Int64(4 * i) * row_bytes,
                           Int32(tok0 + r0 + 4 * i < cnt) * valid)
        cp_async_commit()

    @cute.jit
    def _sk_tiles(self, acc, aw, sw, bwk, wsb, abase, row_bytes, lane, c, c_step, tok0, cnt):
        """split "k", sk > 0: K step c's four k64 tiles, tile kt in buffer kt % 2; before consuming tile kt the
        warp puts the next one in flight (kt + 1, or the next step's first: its buffer 0), then waits for tile kt
        only (wait_group 1)."""
        tb = self.bt * SK_ROW_WORDS * 4  # bytes of one tile buffer
        for kt in cutlass.range_constexpr(4):
            if const_expr(kt < 3):
                self._stage_tile(wsb + ((kt + 1) % 2) * tb, abase, row_bytes, lane, 4 * c + kt + 1, tok0, cnt, Int32(1))
            else:
                self._stage_tile(wsb, abase, row_bytes, lane, 4 * (c + c_step), tok0, cnt,
                                 Int32(c + c_step < self.chunks))
            cp_async_wait(1)
            cute.arch.sync_warp()
            self._mma_tile_staged(acc, aw, sw, bwk, wsb + (kt % 2) * tb, SK_ROW_WORDS, 0, lane, kt)

    @cute.jit
    def _staged_step(self, acc, aw, sw, bwk, wsb, abase, row_bytes, lane, c, c_step, tok0, cnt):
        """split "k", natural K: K step c with its weights in aw / sw, the warp's token rows staged per W4A16Params.sk
        (0: the whole step, one wait; 1: k64 tiles in two buffers, _sk_tiles)."""
        if const_expr(self.sk):
            self._sk_tiles(acc, aw, sw, bwk, wsb, abase, row_bytes, lane, c, c_step, tok0, cnt)
        else:
            self._stage_warp(wsb, abase, row_bytes, lane, c, tok0, cnt)
            for kt in cutlass.range_constexpr(4):
                self._mma_tile_staged(acc, aw, sw, bwk, wsb, SB_ROW_WORDS, kt * 32, lane, kt)

    @cute.jit
    def _wpf_step(self, acc, aw, sw, bwk, wsb, wb, sbw, abase, row_bytes, lane, g, t, c, c_step, tok0, cnt, arow):
        """wpf = 1: K step c with its weights already in aw / sw; the next step's (clamped into K: a redundant load
        past the walk's end) go in flight first, into registers that become aw / sw after this step. The step's
        B fragments: from global memory (kq) or the warp's staged rows."""
        awn = cute.make_rmem_tensor(cute.make_layout((4, 4, self.rb)), Int32)
        swn = cute.make_rmem_tensor(cute.make_layout((4, self.rb)), Int32)
        self._load_weights(awn, swn, wb, sbw, lane, g, t, cutlass.min(c + c_step, self.chunks - 1))
        if const_expr(self.gmem_b):
            for kt in cutlass.range_constexpr(4):
                self._mma_tile_gmem(acc, aw, sw, bwk, arow, c, kt)
        else:
            self._staged_step(acc, aw, sw, bwk, wsb, abase, row_bytes, lane, c, c_step, tok0, cnt)
        for r in cutlass.range_constexpr(self.rb):
            for kt in cutlass.range_constexpr(4):
                sw[kt, r] = swn[kt, r]
                for b in cutlass.range_constexpr(4):
                    aw[b, kt, r] = awn[b, kt, r]

    @cute.jit
    def _mma_tile_gmem(self, acc, aw, sw, bwk, arow, c, kt):
        """split "k", quad order (or kq on natural K): the nt B fragments of k64 tile kt straight from global
        memory (L1): two 16-byte loads per token row at lane t's 32 bytes (bwk[2b + e] = register e of
        k16 block b: quad's word 2b + e, kq's natural word b + 4e), then each decoded block feeds nt MMAs at once."""
        koff = Int64((c * 4 + kt) * 128)  # bytes: 64 bf16 per k64 tile
        for j in cutlass.range_constexpr(self.nt):
            y0, y1, y2, y3 = ld_cached_v4(arow[j] + koff)
            y4, y5, y6, y7 = ld_cached_v4(arow[j] + koff + Int64(16))
            if const_expr(self.kq):  # natural K 16t + 2b (+ 1) and 16t + 2b + 8 (+ 9): words b and b + 4
                bwk[0, j], bwk[1, j], bwk[2, j], bwk[3, j] = y0, y4, y1, y5
                bwk[4, j], bwk[5, j], bwk[6, j], bwk[7, j] = y2, y6, y3, y7
            else:
                bwk[0, j], bwk[1, j], bwk[2, j], bwk[3, j] = y0, y1, y2, y3
                bwk[4, j], bwk[5, j], bwk[6, j], bwk[7, j] = y4, y5, y6, y7
        self._mma_blocks(acc, aw, sw, bwk, kt)

    @cute.jit
    def _mma_tile_staged(self, acc, aw, sw, bwk, base, row_words, col_words, lane, kt):
        """split "k": the nt B fragments of k64 tile kt from the warp's staged rows (two ldmatrix.x4 each; rows
        row_words apart from base, the tile col_words into each), then each decoded block feeds nt MMAs at once."""
        for j in cutlass.range_constexpr(self.nt):
            sa = base + ((8 * j + lane % 8) * row_words + col_words + (lane // 8) * 4) * 4
            y0, y1, y2, y3 = ldmatrix_x4(sa)
            y4, y5, y6, y7 = ldmatrix_x4(sa + 64)
            bwk[0, j], bwk[1, j], bwk[2, j], bwk[3, j] = y0, y1, y2, y3
            bwk[4, j], bwk[5, j], bwk[6, j], bwk[7, j] = y4, y5, y6, y7
        self._mma_blocks(acc, aw, sw, bwk, kt)

    # Plain Python helper, traced inline: the decode of one blob word in the act order's K order
    # (quad8: decode_sel, whose A registers pair K 2t with 2t + 8, as quad8's B words do; word
    # order "rot": decode_rot, decode_block's registers from the permuted word).
    def decode(self, word, spair):
        if self.rot:
            return decode_rot(word, spair)
        return decode_sel(word, spair) if self.sel else decode_block(word, spair)

    # Plain Python helper, unrolled while the two split "k" tile bodies above are traced (they
    # differ only in where the B fragments bwk come from).
    def _mma_blocks(self, acc, aw, sw, bwk, kt):
        """Each of the rb x 4 blocks of k64 tile kt decoded once, then nt MMAs with bwk's fragments."""
        for r in range(self.rb):
            sp = (scale_pair(sw[kt, r]),) * 4 if self.kq else quad_scales(sw[kt, r])  # kq: one group per lane
            for b in range(4):
                r0, r1, r2, r3 = self.decode(aw[b, kt, r], sp[b])
                for j in range(self.nt):
                    d0, d1, d2, d3 = mma_bf16(r0, r1, r2, r3, bwk[2 * b, j], bwk[2 * b + 1, j],
                                              acc[0, j, r], acc[1, j, r], acc[2, j, r], acc[3, j, r])
                    acc[0, j, r], acc[1, j, r], acc[2, j, r], acc[3, j, r] = d0, d1, d2, d3

    @cute.jit
    def _mma_tile_smem(self, acc, aw, sw, af, bw, sb, kt, lane):
        """split "n": decode the warp's whole k64 tile once, then stream the nt activation
        fragments from shared memory (two ldmatrix.x4 each: matrix i = K 8i .. 8i + 7 of the 8
        token rows, i.e. b0b1 / b2b3 of blocks 2h, 2h + 1), rb * 4 MMAs per fragment."""
        for r in cutlass.range_constexpr(self.rb):
            sp = quad_scales(sw[kt, r])
            for b in cutlass.range_constexpr(4):
                r0, r1, r2, r3 = self.decode(aw[b, kt, r], sp[b])
                af[0, b, r], af[1, b, r], af[2, b, r], af[3, b, r] = r0, r1, r2, r3
        for j in cutlass.range_constexpr(self.nt):
            if const_expr(self.quad):  # token row g's lane-t words: 32 bytes at 32 t of tile kt
                sa = sb.iterator.toint() + ((8 * j + lane // 4) * SB_ROW_WORDS + kt * 32 + (lane % 4) * 8) * 4
                y0, y1, y2, y3 = ld_shared_v4(sa)
                y4, y5, y6, y7 = ld_shared_v4(sa + 16)
            else:
                sa = sb.iterator.toint() + ((8 * j + lane % 8) * SB_ROW_WORDS + kt * 32 + (lane // 8) * 4) * 4
                y0, y1, y2, y3 = ldmatrix_x4(sa)
                y4, y5, y6, y7 = ldmatrix_x4(sa + 64)
            bw[0], bw[1], bw[2], bw[3], bw[4], bw[5], bw[6], bw[7] = y0, y1, y2, y3, y4, y5, y6, y7
            for r in cutlass.range_constexpr(self.rb):
                for b in cutlass.range_constexpr(4):
                    d0, d1, d2, d3 = mma_bf16(af[0, b, r], af[1, b, r], af[2, b, r], af[3, b, r],
                                              bw[2 * b], bw[2 * b + 1],
                                              acc[0, j, r], acc[1, j, r], acc[2, j, r], acc[3, j, r])
                    acc[0, j, r], acc[1, j, r], acc[2, j, r], acc[3, j, r] = d0, d1, d2, d3

    @cute.jit
    def _stage_activations(self, sb, abase, row_bytes, tidx, c, tok0, cnt):
        """Tokens tok0 .. tok0 + bt of chunk c (256 K) -> shared memory, one 16-byte vector per
        thread per step. Token rows are SB_ROW_WORDS * 4 = 528 B apart (512 + 16): the eight
        lanes of one LDS.128 phase (two token rows x four 32-byte lanes) then hit disjoint banks."""
        cute.arch.sync_threads()  # every warp is done reading the previous chunk
        for v in cutlass.range_constexpr(self.bt * 32 // self.threads):
            vi = v * self.threads + tidx
            tok = vi // 32
            kv = vi % 32
            row = cutlass.min(tok0 + tok, cnt - 1)
            x0, x1, x2, x3 = ld_cached_v4(abase + Int64(row) * row_bytes + Int64(c * 512 + kv * 16))
            st_shared_v4(sb.iterator.toint() + (tok * SB_ROW_WORDS + kv * 4) * 4, x0, x1, x2, x3)
        cute.arch.sync_threads()

    @cute.jit
    def _store(self, alpha, out, value, idx, rb0, by, start, cnt, tok0):
        """idx = ((r * nt + j) * 4 + q) * 32 + lane -> out[start + token, weight row]."""
        ln = idx % 32
        q = (idx // 32) % 4
        j = (idx // 128) % self.nt
        r = idx // (128 * self.nt)
        nrow = (rb0 + r * self.rstride) * 16 + ln // 4 + 8 * (q // 2)
        tok = tok0 + 8 * j + 2 * (ln % 4) + q % 2
        if tok < cnt:
            a = Float32(0.0)
            if const_expr(self.grouped):
                a = alpha[by, nrow]
            else:
                a = alpha[nrow]
            out[start + tok, nrow] = (value * (a * EPI_SCALE)).to(BFloat16)

    @cute.jit
    def _epilogue(self, acc, red, alpha, out, lane, warp, tidx, rb0, by, start, cnt, tok0):
        nt, rb = self.nt, self.rb
        if const_expr(self.wg):
            for r in cutlass.range_constexpr(rb):
                for j in cutlass.range_constexpr(nt):
                    for q in cutlass.range_constexpr(4):
                        self._store(alpha, out, acc[4 * j + q, r], ((r * nt + j) * 4 + q) * 32 + lane,
                                    rb0, by, start, cnt, tok0)
        elif const_expr(self.warps == 1 or self.split_n):
            for r in cutlass.range_constexpr(rb):
                for j in cutlass.range_constexpr(nt):
                    for q in cutlass.range_constexpr(4):
                        self._store(alpha, out, acc[q, j, r], ((r * nt + j) * 4 + q) * 32 + lane,
                                    rb0, by, start, cnt, tok0)
        else:
            for r in cutlass.range_constexpr(rb):
                for j in cutlass.range_constexpr(nt):
                    for q in cutlass.range_constexpr(4):
                        red[((r * nt + j) * 4 + q) * 32 + lane, warp] = acc[q, j, r]
            cute.arch.sync_threads()
            for it in cutlass.range_constexpr((self.red_len + self.threads - 1) // self.threads):
                idx = it * self.threads + tidx
                if idx < self.red_len:
                    s = red[idx, 0]
                    for wi in cutlass.range_constexpr(1, self.warps):
                        s = s + red[idx, wi]
                    self._store(alpha, out, s, idx, rb0, by, start, cnt, tok0)
            cute.arch.sync_threads()  # red is rewritten by the next token tile


def make_kernel(p, grouped: bool):
    k = W4A16Kernel(p.n, p.k, p.experts, grouped, p.warps, p.rb, p.nt, p.split, p.stages,
                    quad=p.act_order in QUAD_ORDERS, sel=p.act_order == "quad8", ctas=ring_ctas(p),
                    rot=p.word_order in ROT_DECODED, tail=p.tail, sk=p.sk, wpf=p.wpf, kq=p.word_order in QUAD_PLACED,
                    l2pf=p.l2pf)
    return k.grouped_call if grouped else k.dense_call
