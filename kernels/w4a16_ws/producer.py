"""The w4a16_ws kernel's work list and producer (kernel.py; mixins of W4A16WsKernel).

Schedule: every CTA's warp 0 builds, from the device-side offsets / counts (clamped into [0, M)),
the inclusive prefix of work items per expert in shared memory (_build_prefix); both roles map a
work item to (expert, token tile, weight tile) with it (_locate), so they walk the same sequence.
Producer: one thread issues, per k64 step of an item, the activation TMA (sched.act_boxes: one
tile_n-row box, moved back inside the expert for a partial tile, or where that would start before
row 0, 64-row boxes holding rows of the item; none past the tensor's end when M >= the box) and
the weight bulk copies into the ring's next stage (_produce; pdl: _prefetch_weights loads the first item's weights before
the previous kernel has finished). mc 2: the activation tile always as bx-row boxes (a whole tile: its NB boxes,
all moved back by sh), CTA r of the pair loading boxes b = r mod 2 into both CTAs (multicast).
"""

import cutlass
import cutlass.cute as cute
from cutlass import Int32, Int64, const_expr
from cutlass.cute.nvgpu import cpasync

from .ptx import bulk_g2s, mbar_wait
from .sched import act_boxes, box_count, box_mine, box_row, raster_item, split_item

BLOB_BYTES = 2048  # one (m64, k64) blob tile: 128 threads x 16 B
STRIP_BYTES = 256  # its scales: 32 row pairs x 4 k16 blocks x 2


class Producer:
    """Needs W4A16WsKernel's fields (n, kt, ks, blocks, stages, tile_n, tile_m, mt, experts, grouped,
    split_k, raster, pdl, bx, w_bytes)."""

    @cute.jit
    def _produce(self, it, pre, e, j, m, k0, n, s_start, s_cnt, tma, s_act, s_box, bars, bar_base, w_base, blob, sf):
        """The producer thread's loads of one work item (or stream-K segment): n k64 steps from k0
        of (expert e, token tile j, weight tile m), each into the ring's next stage: wait for the
        stage to be empty, arm its full barrier with the stage's bytes (the weights and the
        activation rows loaded), TMA the activation tile as sched.act_boxes gives it (one tile_n-row
        box, or nb boxes of bx rows) and bulk-copy the weights (pdl: steps it < pre had their weights loaded and barrier armed by
        _prefetch_weights). Returns the running step counter after the item, it + n."""
        S, bx, NB = self.stages, self.bx, self.tile_n // self.bx
        tma_atom, tma_act, tma_box, tma_act_box = tma
        whole, nb, last, sh = act_boxes(s_start[e], s_cnt[e], j, self.tile_n, cutlass.min, cutlass.max)
        tx = self.w_bytes + nb * (bx + whole * (self.tile_n - bx)) * 128
        row0 = s_start[e] + j * self.tile_n
        # the partitions (loop-invariant: only the k coordinate moves): mc 1's whole-tile box, and the
        # NB boxes (box b < nb; the last, b = nb - 1, moved back by sh; mc 2: a whole tile as its NB boxes)
        if const_expr(self.mc == 1):
            g_act = cute.local_tile(cute.domain_offset((row0 - sh, 0), tma_act), (self.tile_n, 64), (0, None))
            t_s, t_g = cpasync.tma_partition(tma_atom, 0, cute.make_layout(1), cute.group_modes(s_act, 0, 2),
                                             cute.group_modes(g_act, 0, 2))
        s_grp = cute.group_modes(s_box, 0, 2)  # ((bx, 64), NB * S): box b of stage s at NB s + b
        boxes = []
        _, rank = self._pair()
        nb_rows = nb  # act_boxes' box count (tx above)
        nb = box_count(nb, whole, NB, self.mc)
        for b in cutlass.range_constexpr(NB):
            row = box_row(row0, b, nb_rows, whole, sh, bx, self.mc, cutlass.min, cutlass.max)
            g_b = cute.local_tile(cute.domain_offset((row, 0), tma_act_box), (bx, 64), (0, None))
            boxes.append(cpasync.tma_partition(tma_box, 0, cute.make_layout(1), s_grp, cute.group_modes(g_b, 0, 2)))
        mcast = {"mcast_mask": cutlass.Int16(3)} if const_expr(self.mc == 2) else {}  # into both CTAs' stage
        g0 = e * (self.n // 64) + m * self.blocks  # blob/strip index of (expert e, m64 block m * blocks)
        for kk in cutlass.range(n, unroll=1):
            kt = k0 + kk
            s = it % S
            if const_expr(self.pdl):
                if it >= pre:
                    mbar_wait(bar_base + (S + s) * 8, ((it // S) & 1) ^ 1)
                    cute.arch.mbarrier_arrive_and_expect_tx(bars + s, tx)
                    self._load_weights(w_base, bar_base, s, g0, kt, blob, sf)
            else:
                mbar_wait(bar_base + (S + s) * 8, ((it // S) & 1) ^ 1)
                cute.arch.mbarrier_arrive_and_expect_tx(bars + s, tx)
            if const_expr(self.mc == 1):
                if whole == 1:
                    cute.copy(tma_atom, t_g[None, kt], t_s[None, s], tma_bar_ptr=bars + s)
            for b in cutlass.range_constexpr(NB):
                if b < nb:
                    if box_mine(b, rank, whole, self.mc):
                        b_s, b_g = boxes[b]
                        cute.copy(tma_box, b_g[None, kt], b_s[None, s * NB + b], tma_bar_ptr=bars + s, **mcast)
            if const_expr(not self.pdl):
                self._load_weights(w_base, bar_base, s, g0, kt, blob, sf)
            it += 1
        return it

    @cute.jit
    def _pair(self):
        """(unit, rank) of this CTA: mc 2, its cluster (the pair of CTAs on weight tiles 2 t', 2 t' + 1 of one
        token tile) and its place in it; mc 1, (block index, 0). The producer, the stream-K walk and the
        stream-K reduction all take the pair from here."""
        bid = cute.arch.block_idx()[0]
        return bid // self.mc, bid % self.mc

    @cute.jit
    def _load_weights(self, w_base, bar_base, s, g0, kt, blob, sf):
        """The bulk copies of one stage's weights: per m64 block its blob tile and scale strip of
        k step kt (g0 = the tile's first m64 block over all experts), completing on full[s]."""
        dst = w_base + s * self.w_bytes
        for b in cutlass.range_constexpr(self.blocks):
            tile = Int64(g0 + b) * self.kt + kt
            bulk_g2s(dst + b * BLOB_BYTES, blob.iterator.toint() + tile * BLOB_BYTES, BLOB_BYTES, bar_base + s * 8)
            bulk_g2s(dst + self.blocks * BLOB_BYTES + b * STRIP_BYTES, sf.iterator.toint() + tile * STRIP_BYTES,
                     STRIP_BYTES, bar_base + s * 8)

    @cute.jit
    def _prefetch_weights(self, bid, s_pre, s_start, s_cnt, bars, bar_base, w_base, blob, sf):
        """pdl: before waiting for the previous kernel, fill the weights of the first min(stages,
        ks) steps of this CTA's first item (weights never depend on it): arm each stage's full
        barrier with the whole stage's bytes (its activation boxes follow after the wait) and start
        the weight copies. Stages are fresh, so no empty wait. Returns the number of such steps."""
        pre = min(self.stages, self.ks)
        w = bid
        k0 = Int32(0)
        if const_expr(self.split_k > 1):
            w, k0 = split_item(w, self.split_k, self.ks)
        e, j, m = self._locate(w, s_pre)
        whole, nb, _, _ = act_boxes(s_start[e], s_cnt[e], j, self.tile_n, cutlass.min, cutlass.max)
        tx = self.w_bytes + nb * (self.bx + whole * (self.tile_n - self.bx)) * 128  # as _produce's
        g0 = e * (self.n // 64) + m * self.blocks
        for kk in cutlass.range_constexpr(pre):
            cute.arch.mbarrier_arrive_and_expect_tx(bars + kk, tx)
            self._load_weights(w_base, bar_base, kk, g0, k0 + kk, blob, sf)
        return Int32(pre)

    @cute.jit
    def _build_prefix(self, offsets, counts, m_rows, lane, s_pre, s_start, s_cnt):
        """Warp 0: clamp every expert's (start, count) into [0, M), and write the inclusive prefix
        of work items (token tiles x weight tiles) per expert: lane l scans experts [l P, l P + P)
        serially, then one warp-wide inclusive scan of the lane sums."""
        E = self.experts
        P = (E + 31) // 32
        own = Int32(0)
        for i in cutlass.range_constexpr(P):
            e = lane * P + i
            if e < E:
                st = Int32(0)
                c = m_rows
                if const_expr(self.grouped):
                    st = cutlass.min(cutlass.max(offsets[e], 0), m_rows)
                    c = cutlass.min(cutlass.max(counts[e], 0), m_rows - st)
                s_start[e] = st
                s_cnt[e] = c
                own += (c + (self.tile_n - 1)) // self.tile_n * self.mt
                s_pre[e] = own
        incl = own
        for d in cutlass.range_constexpr(5):
            y = cute.arch.shuffle_sync_up(incl, 1 << d)
            if lane >= (1 << d):
                incl += y
        excl = incl - own
        for i in cutlass.range_constexpr(P):
            e = lane * P + i
            if e < E:
                s_pre[e] = s_pre[e] + excl

    @cute.jit
    def _locate(self, w, s_pre):
        """Work item w (< total) -> (expert e, token tile j, weight tile m): e = the number of
        experts whose inclusive prefix is <= w (binary lifting over s_pre); (j, m) by raster_item."""
        E = self.experts
        e = Int32(0)
        for i in cutlass.range_constexpr(E.bit_length() - 1, -1, -1):
            if e + (1 << i) <= E:
                if s_pre[e + (1 << i) - 1] <= w:
                    e = e + (1 << i)
        before = Int32(0)
        if e > 0:
            before = s_pre[e - 1]
        local = w - before
        if const_expr(self.raster == 1):
            j = local // self.mt
            return e, j, local - j * self.mt
        j, m = raster_item(local, (s_pre[e] - before) // self.mt, self.mt, self.raster, cutlass.min)
        return e, j, m
