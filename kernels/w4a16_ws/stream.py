"""The dense w4a16_ws kernel's K-cutting modes (kernel.py; a mixin of W4A16WsKernel): split-K's
reduction (split_k > 1, moved here unchanged from kernel.py) and stream-K (WsParams.stream = 1).

Stream-K (session 8, `sk`): the launch's T = tiles x kt k64 steps (tile t = the t-th output tile
of the raster order, its steps t kt .. t kt + kt - 1) are cut into G = grid contiguous ranges, CTA
b owning [b T // G, (b + 1) T // G) (sched.sk_range: sizes differ by at most one step, so no SM
idles for a whole tile as with wave quantization). CTA b walks the tiles its range intersects
(sched.sk_span), each a segment (tile, first step k0, n >= 1 steps); the producer warp and the
consumer warpgroups walk the same segments and advance their running step counter by n per
segment (the stage ring's lockstep invariant, kernel.py). A tile covered by one segment (nseg 1:
every tile strictly inside a range) leaves through the epilogue directly; otherwise each segment's
partial goes to the workspace slot of its CTA (2 b: the range's first tile, 2 b + 1: its last;
sched.sk_slot), and the warp that arrives last on the tile's per-warp flag (old == nseg - 1) sums
the nseg partials in CTA order (deterministic: independent of the arrival order; CTA f's own
from registers when f is the last arriver), resets the flag
to 0 (graph replays need no memset) and runs the epilogue. As with split-K no CTA ever waits on
another: no residency requirement. Workspace: 2 x sm_count x ctas x tile_m x tile_n fp32,
independent of M (kernels/w4a16_ws/__init__.py stream_ws_shape).

mc 2 (kernel.py): the same over units = CTA pairs (u = b // 2, rank r = b % 2; G = grid / 2 units)
and pair tiles (tile t' = output tiles 2 t', 2 t' + 1, T = tiles / 2 x kt): unit u's range and
segments are both CTAs', rank r computing tile 2 t' + r of each; partial slots are per CTA
(sched.cta_slot), flags per output tile as before.
"""

import cutlass
import cutlass.cute as cute
from cutlass import Int32, Int64, const_expr

from .ptx import (atom_add_gpu, fence_cluster, fence_gpu, ld_dsmem_v4_f32, ldg_cg_f32, ldg_cg_v4_f32, mapa,
                  mbar_arrive_cluster, mbar_wait, stg_f32, stg_s32, stg_v4_f32, sts_v4_f32)
from .sched import (cta_slot, half_slot, half_ws_index, reduce_slot, sk_range, sk_segment, sk_slot, sk_span, sk_tile,
                    sk_ws_index, ws_index)


class Reduce:
    """Needs W4A16WsKernel's fields and _locate / _produce / _pair / _load_alpha / _kloop16 / _drain /
    _epilogue."""

    @cute.jit
    def _sk_bounds(self, grid, s_pre):
        """This CTA's (mc 2: unit's) stream-K range [lo, hi) (Int64: T = tiles x kt may pass 2^31 in
        b x T) and the (pair) tiles it intersects (first t0, count)."""
        T = Int64(s_pre[0] // self.mc) * self.kt  # dense: one expert, s_pre[0] = output tiles (mc 2: even)
        G = Int64(grid // self.mc)
        lo, hi = sk_range(Int64(self._pair()[0]), T, G)
        t0, cnt = sk_span(lo, hi, self.kt)
        return T, G, lo, hi, Int32(t0), Int32(cnt)

    @cute.jit
    def _sk_item(self, i, t0, lo, hi, s_pre):
        """The i-th segment of this CTA's range: tile t = t0 + i, its steps [k0, k0 + n), and the
        tile's (expert, token tile, weight tile); the producer and the consumers walk the same."""
        t = t0 + i
        k0, n = sk_segment(Int64(t), lo, hi, self.kt, cutlass.min, cutlass.max)
        _, rank = self._pair()
        e, j, m = self._locate(t * self.mc + rank, s_pre)  # mc 2: pair tile t, this CTA's output tile 2 t + rank
        return t, Int32(k0), Int32(n), e, j, m

    @cute.jit
    def _produce_stream(self, grid, s_pre, s_start, s_cnt, tma, s_act, s_box, bars, bar_base, w_base, blob, sf):
        """The producer thread's walk: per segment, per k64 step, the activation TMA and the weight
        copies of the tile's step k0 + kk into the next stage (as kernel.py's item loop)."""
        T, G, lo, hi, t0, cnt = self._sk_bounds(grid, s_pre)
        it = Int32(0)
        for i in cutlass.range(cnt, unroll=1):
            t, k0, n, e, j, m = self._sk_item(i, t0, lo, hi, s_pre)
            it = self._produce(it, None, e, j, m, k0, n, s_start, s_cnt, tma, s_act, s_box, bars, bar_base, w_base,
                               blob, sf)
        return it

    @cute.jit
    def _consume_stream(self, acc, al, ebuf, cw, tw, wq, lane, luts, grid, s_pre, s_start, s_cnt, act_base,
                        w_base, bar_base, alpha, out, flags, workspace):
        """Consumer warpgroup cw's walk over the same segments: zero, k loop of n steps (pipe 16),
        drain, release the last stage; nseg 1: epilogue, else partial + last-arriver reduction."""
        T, G, lo, hi, t0, cnt = self._sk_bounds(grid, s_pre)
        it = Int32(0)
        for i in cutlass.range(cnt, unroll=1):
            t, k0, n, e, j, m = self._sk_item(i, t0, lo, hi, s_pre)
            self._load_alpha(al, cw, wq, lane, e, m, alpha)  # its latency hides behind the k loop
            acc.fill(0.0)
            self._kloop16(acc, it, cw, tw, lane, act_base, w_base, bar_base, luts, n)
            it += n
            self._drain(acc, bar_base, it, lane)
            f, nseg = sk_tile(Int64(t), self.kt, T, G)
            if nseg == 1:
                self._epilogue(acc, al, ebuf, cw, wq, lane, e, j, m, s_start, s_cnt, out)
            else:
                self._stream_reduce(acc, cw, wq, lane, j, m, t, T, G, Int32(f), Int32(nseg), flags, workspace,
                                    s_start, s_cnt, out, al, ebuf)

    @cute.jit
    def _arrive(self, flag, lane):
        """A warp whose partial is stored counts its arrival on the int32 flag at address `flag`:
        every lane fences its own stores, the warp syncs, lane 0 adds 1 (device scope); returns the
        old count to every lane (count - 1 = the last arriver, which then reads the partials)."""
        fence_gpu()  # this thread's partial stores, then (via the warp sync) lane 0's arrival
        cute.arch.sync_warp()
        old = Int32(0)
        if lane == 0:
            old = atom_add_gpu(flag, Int32(1))
        return cute.arch.shuffle_sync(old, 0)

    @cute.jit
    def _stream_reduce(self, acc, cw, wq, lane, j, m, t, T, G, f, nseg, flags, workspace, s_start, s_cnt, out, al,
                       ebuf):
        """Per warp (its accumulators are exactly its 16 rows of each m64 block): store the partial
        to this CTA's slot (16-byte stores, sched.sk_ws_index), fence, count the arrival on the
        (tile, warp) flag; the last arriver sums the partials of CTAs f .. f + nseg - 1 in that
        order (CTA f's from its registers when it is f, the usual case: the tile's first segment
        ends f's range, so f arrives last; bit-identical to reading them back), resets the flag,
        runs the epilogue."""
        rb, an = self.rb, self.acc_n
        V = an // 4  # 4-float vectors per m64 block (tile_n >= 16: an >= 8)
        W = 4 * self.wgs
        per = 32 * an * rb
        warp = Int64(cw * 4 + wq)
        ws = workspace.iterator.toint()
        # unit, rank (mc 1: the CTA, 0); not `r`: the loops below bind r to the m64 block
        u, rank = self._pair()
        u, rank = Int64(u), Int64(rank)
        mine = Int64(cta_slot(sk_slot(u, Int64(t), self.kt, T, G, cutlass.min), u, rank, self.mc))
        for r in cutlass.range_constexpr(rb):
            for v in cutlass.range_constexpr(V):
                stg_v4_f32(ws + sk_ws_index(mine, warp, lane, r * V + v, W, per) * 4,
                           [acc[4 * v + i, r] for i in range(4)])
        flag = flags.iterator.toint() + Int64(reduce_slot(j, m, cw, wq, self.mt, self.wgs)) * 4
        old = self._arrive(flag, lane)
        if old == nseg - 1:
            fence_gpu()  # the other segments' partials (released before their arrivals) are visible
            if u != f:  # unit f's partial first (else it is in acc already)
                first = Int64(cta_slot(sk_slot(Int64(f), Int64(t), self.kt, T, G, cutlass.min), Int64(f), rank,
                                       self.mc))
                for r in cutlass.range_constexpr(rb):
                    for v in cutlass.range_constexpr(V):
                        x = ldg_cg_v4_f32(ws + sk_ws_index(first, warp, lane, r * V + v, W, per) * 4)
                        for i in cutlass.range_constexpr(4):
                            acc[4 * v + i, r] = x[i]
            for c in cutlass.range(1, nseg, unroll=1):
                slot = Int64(cta_slot(sk_slot(Int64(f + c), Int64(t), self.kt, T, G, cutlass.min), Int64(f + c),
                                      rank, self.mc))
                for r in cutlass.range_constexpr(rb):
                    for v in cutlass.range_constexpr(V):
                        x = ldg_cg_v4_f32(ws + sk_ws_index(slot, warp, lane, r * V + v, W, per) * 4)
                        for i in cutlass.range_constexpr(4):
                            acc[4 * v + i, r] = acc[4 * v + i, r] + x[i]
            if lane == 0:
                stg_s32(flag, Int32(0))
            self._epilogue(acc, al, ebuf, cw, wq, lane, Int32(0), j, m, s_start, s_cnt, out)

    @cute.jit
    def _split_reduce_cluster(self, acc, cw, wq, lane, j, m, split, flags, workspace, s_start, s_cnt, alpha, out, al,
                              ebuf, act_base, bar_base):
        """Split-K with red 1, when every CTA has one work item (kernel.py _consume: `single`). Splits
        2q and 2q + 1 of an output tile are the two CTAs of one cluster (launch: clusters of 2, a
        grid of whole clusters; CTA b runs item b = split_k x tile + split, so its cluster rank
        b % 2 = split % 2 = rank). Clusters of 2 always fit (a TPC is 2 SMs): 32 clusters of 4 did
        not on the H200 (docs/PERFORMANCE.md "session 15"). Protocol, per consumer warp:
        1. named barrier over the consumer warps: the activation ring is no longer read (every warp
           drained its wgmmas; the producer loaded its last stage before they consumed it), so it
           holds the partials now (_reasons: tile_m x tile_n x 4 bytes fit in the ring);
        2. the warp's partial -> its own region of this CTA's ring ([warp][r][v][lane][4]: 512
           contiguous bytes per store instruction, no bank conflict); fence.acq_rel.cluster,
           bar.warp.sync, lanes 0 / 1 arrive (release, cluster scope) on the `ready` mbarrier of
           CTA 0 / 1 (count 2 x warps);
        3. wait on this CTA's `ready` (acquire, cluster scope): both partials are written;
        4. rank r < P (red_parts: 2, or 1 when the tile is one 16-token chunk) owns token half r:
           it sums that half's vectors of CTA 0 and CTA 1 (that order: deterministic), reading
           both through mapa + ld.shared::cluster;
        5. fence, bar.warp.sync, lanes 0 / 1 arrive on the `done` mbarrier of CTA 0 / 1: this warp
           no longer reads its peer;
        6. split_k 2: the epilogue of the owned half (_epilogue's mask). split_k > 2: the S / 2
           pairs' halves meet in L2 as red 0's partials do (_split_reduce_global), at half the
           bytes and half the partials: the half goes to workspace slot ((tile, warp, half), pair),
           the warp arrives on the (tile, warp, half) flag; the last of the S / 2 arrivals sums the
           pairs' halves in pair order, resets the flag and runs the half's epilogue;
        7. wait on this CTA's `done`: the peer no longer reads this CTA's shared memory, so it may
           exit.
        No CTA waits on another cluster."""
        S, rb, an, P = self.split_k, self.rb, self.acc_n, self.parts
        V = an // 4  # 4-float vectors per m64 block
        Vh = V // P  # vectors of one part
        rank = split % 2
        ready = bar_base + 2 * self.stages * 8
        done = ready + 8
        base = act_base + (cw * 4 + wq) * (rb * V * 512) + lane * 16  # this warp's region, this lane's vector
        cute.arch.barrier(barrier_id=1, number_of_threads=128 * self.wgs)  # 1.
        for r in cutlass.range_constexpr(rb):  # 2.
            for v in cutlass.range_constexpr(V):
                sts_v4_f32(base + (r * V + v) * 512, [acc[4 * v + i, r] for i in range(4)])
        fence_cluster()
        cute.arch.sync_warp()
        if lane < 2:
            mbar_arrive_cluster(ready, lane, "cluster")
        mbar_wait(ready, Int32(0), "cluster")  # 3.
        for p in cutlass.range_constexpr(P):  # 4. (rank is warp-uniform: at most one branch runs)
            if rank == p:
                b0, b1 = mapa(base, Int32(0)), mapa(base, Int32(1))
                for r in cutlass.range_constexpr(rb):
                    for v in cutlass.range_constexpr(p * Vh, (p + 1) * Vh):
                        x0 = ld_dsmem_v4_f32(b0 + (r * V + v) * 512)
                        x1 = ld_dsmem_v4_f32(b1 + (r * V + v) * 512)
                        for i in cutlass.range_constexpr(4):
                            acc[4 * v + i, r] = x0[i] + x1[i]
        fence_cluster()  # 5.
        cute.arch.sync_warp()
        if lane < 2:
            mbar_arrive_cluster(done, lane, "cluster")
        for p in cutlass.range_constexpr(P):  # 6.
            if rank == p:
                if const_expr(S == 2):
                    self._load_alpha(al, cw, wq, lane, Int32(0), m, alpha)
                    self._epilogue(acc, al, ebuf, cw, wq, lane, Int32(0), j, m, s_start, s_cnt, out, Int32(1 << p))
                else:
                    self._pairs_reduce(acc, cw, wq, lane, j, m, split, p, flags, workspace, s_start, s_cnt, alpha,
                                       out, al, ebuf)
        mbar_wait(done, Int32(0), "cluster")  # 7.

    @cute.jit
    def _pairs_reduce(self, acc, cw, wq, lane, j, m, split, p: cutlass.Constexpr[int], flags, workspace, s_start, s_cnt,
                      alpha, out, al, ebuf):
        """_split_reduce_cluster's step 6 for split_k > 2: half p (its vectors in acc, summed over the
        pair) through L2. Workspace [(tile, warp) slot][half][pair][r][v of the half][lane][4] (16-byte
        stores, 512 contiguous bytes per warp instruction); flags [(tile, warp) slot][half]."""
        S, rb, an, P = self.split_k, self.rb, self.acc_n, self.parts
        V = an // 4
        Vh = V // P
        Q = S // 2  # pairs
        hp = rb * Vh * 128  # floats of one warp's half
        hslot = Int64(half_slot(reduce_slot(j, m, cw, wq, self.mt, self.wgs), p, P))
        ws = workspace.iterator.toint()
        for r in cutlass.range_constexpr(rb):
            for v in cutlass.range_constexpr(Vh):
                stg_v4_f32(ws + half_ws_index(hslot, Int64(split // 2), Q, lane, r * Vh + v, hp) * 4,
                           [acc[4 * (p * Vh + v) + i, r] for i in range(4)])
        flag = flags.iterator.toint() + hslot * 4
        old = self._arrive(flag, lane)
        if old == Q - 1:
            fence_gpu()  # the other pairs' halves (released before their arrivals) are visible
            for q in cutlass.range_constexpr(Q):
                for r in cutlass.range_constexpr(rb):
                    for v in cutlass.range_constexpr(Vh):
                        x = ldg_cg_v4_f32(ws + half_ws_index(hslot, Int64(q), Q, lane, r * Vh + v, hp) * 4)
                        for i in cutlass.range_constexpr(4):
                            if const_expr(q == 0):
                                acc[4 * (p * Vh + v) + i, r] = x[i]
                            else:
                                acc[4 * (p * Vh + v) + i, r] = acc[4 * (p * Vh + v) + i, r] + x[i]
            if lane == 0:
                stg_s32(flag, Int32(0))
            self._load_alpha(al, cw, wq, lane, Int32(0), m, alpha)
            self._epilogue(acc, al, ebuf, cw, wq, lane, Int32(0), j, m, s_start, s_cnt, out, Int32(1 << p))

    @cute.jit
    def _split_reduce(self, acc, cw, wq, lane, j, m, split, flags, workspace, s_start, s_cnt, alpha, out, al, ebuf,
                      act_base, bar_base, single):
        """Dense split-K's reduction: red 1 with one item per CTA (`single`, grid-uniform) reduces
        inside the cluster of the tile's splits (_split_reduce_cluster); otherwise (red 0, or red 1 on
        a persistent grid, whose clusters would hold different tiles) through L2
        (_split_reduce_global)."""
        if const_expr(self.red == 1 and self.probe == 0):
            if single:  # (grid-uniform) one item per CTA: the cluster reduction
                self._split_reduce_cluster(acc, cw, wq, lane, j, m, split, flags, workspace, s_start, s_cnt, alpha,
                                           out, al, ebuf, act_base, bar_base)
            else:  # a persistent grid (more items than CTAs): red 0's reduction below, through L2
                self._split_reduce_global(acc, cw, wq, lane, j, m, split, flags, workspace, s_start, s_cnt, alpha,
                                          out, al, ebuf)
        else:
            self._split_reduce_global(acc, cw, wq, lane, j, m, split, flags, workspace, s_start, s_cnt, alpha, out,
                                      al, ebuf)

    @cute.jit
    def _split_reduce_global(self, acc, cw, wq, lane, j, m, split, flags, workspace, s_start, s_cnt, alpha, out, al,
                             ebuf):
        """Per warp (its accumulators are exactly its 16 rows of each m64 block): store the partial
        sums to the warp's region of this split in the workspace, fence, and count the arrival on
        the warp's int32 flag; the warp that arrives last (old == split_k - 1) sums the split_k
        regions in split order (deterministic), resets the flag to 0 (so the scratch is zero again
        after every call: graph replays need no memset) and runs the epilogue. No thread ever waits
        on another CTA, so there is no residency requirement. Workspace per (output tile, warp,
        split): 32 lanes x acc_n x rb fp32, lane fastest (coalesced); flags per (output tile, warp).
        Diagnostics (probe, wrong output by design): 3 = the last arriver skips reading the partials
        back (its own partial goes out), 4 = no reduction at all (every split's partial goes out, no
        workspace, no flag): the reduction's cost is t(kernel) - t(probe)."""
        S, rb, an = self.split_k, self.rb, self.acc_n
        if const_expr(self.probe == 4):
            self._load_alpha(al, cw, wq, lane, Int32(0), m, alpha)
            self._epilogue(acc, al, ebuf, cw, wq, lane, Int32(0), j, m, s_start, s_cnt, out)
        else:
            per = 32 * an * rb  # floats of one warp's partial
            slot = Int64(reduce_slot(j, m, cw, wq, self.mt, self.wgs))
            ws = workspace.iterator.toint()
            for r in cutlass.range_constexpr(rb):
                for q in cutlass.range_constexpr(an):
                    stg_f32(ws + ws_index(slot, Int64(split), lane, r * an + q, S, per) * 4, acc[q, r])
            flag = flags.iterator.toint() + Int64(slot) * 4
            old = self._arrive(flag, lane)
            if old == S - 1:
                fence_gpu()  # the other splits' partials (released before their arrivals) are visible
                if const_expr(self.probe != 3):
                    for r in cutlass.range_constexpr(rb):
                        for q in cutlass.range_constexpr(an):
                            acc[q, r] = ldg_cg_f32(ws + ws_index(slot, 0, lane, r * an + q, S, per) * 4)
                    for s2 in cutlass.range_constexpr(1, S):
                        for r in cutlass.range_constexpr(rb):
                            for q in cutlass.range_constexpr(an):
                                acc[q, r] = acc[q, r] + ldg_cg_f32(ws + ws_index(slot, s2, lane, r * an + q, S, per) * 4)
                if lane == 0:
                    stg_s32(flag, Int32(0))
                self._load_alpha(al, cw, wq, lane, Int32(0), m, alpha)
                self._epilogue(acc, al, ebuf, cw, wq, lane, Int32(0), j, m, s_start, s_cnt, out)
