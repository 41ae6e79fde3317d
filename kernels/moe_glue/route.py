"""CuTe DSL routing kernel of the MoE glue (moe_route): global top-k ids -> this rank's
grouped ("padded") layout, deterministic, with a fixed grid and no host sync.

Two launches on the caller's stream, each with one CTA per local expert e (grid E):

1. count:   CTA e scans all N = M * topk slots (16-byte loads of topk_ids, `vec` consecutive
            slots per thread per step) and counts id == expert_start + e -> counts[e].
2. scatter: CTA e reads counts[0..E) and forms its base row (exclusive sum of the padded
            counts) and the total rows used (both by CTA-wide sums, so no third launch);
            writes offsets[e + 1] (CTA 0 also offsets[0] = 0), marks its padding rows and a
            share of the tail rows [offsets[E], CAP) with src_token = -1, then scans all
            slots again in steps of threads * vec slots; per step a CTA-wide exclusive scan
            of the per-thread match counts (warp shfl.up scan + per-warp totals in shared
            memory, double-buffered so one barrier per step suffices) gives every match its
            rank in slot order, i.e. (token, k) ascending: slot_of[slot] = row and
            src_token[row] = slot // topk. CTA 0 also writes slot_of = -1 for non-local slots.

Every output element has exactly one writer and no atomics are used: the results are
bit-reproducible. Trip counts depend only on M (a shape), never on data, and there is no
scratch: CUDA-graph safe. Cost: each CTA reads the 4 * N bytes of ids twice (L2-resident;
196 KB at M = 8192, topk = 6).
"""

import operator

import cutlass
import cutlass.cute as cute
from cutlass import Int32, Uint32

from ..dsl import fake_row_major, fake_stream
from ..ptx import aligned


class MoeRouteKernel:
    def __init__(self, experts: int, topk: int, pad: int, threads: int = 256, vec: int = 8):
        assert vec % 4 == 0 and threads % 32 == 0
        self.experts = experts
        self.topk = topk
        self.pad = pad
        self.threads = threads
        self.vec = vec
        self.step = threads * vec  # slots per scan step
        self.nwarps = threads // 32

    @cute.jit
    def __call__(self, topk_ids: cute.Tensor, expert_start: cute.Tensor, counts: cute.Tensor,
                 offsets: cute.Tensor, slot_of: cute.Tensor, src_token: cute.Tensor, stream):
        n = topk_ids.shape[0] * self.topk
        n_steps = cute.ceil_div(n, self.step)
        self.count_kernel(topk_ids, expert_start, counts, n, n_steps).launch(
            grid=[self.experts, 1, 1], block=[self.threads, 1, 1], stream=stream)
        self.scatter_kernel(topk_ids, expert_start, counts, offsets, slot_of, src_token, n, n_steps,
                            src_token.shape[0]).launch(
            grid=[self.experts, 1, 1], block=[self.threads, 1, 1], stream=stream)

    # ------------------------------------------------------------------ helpers
    @cute.jit
    def _load_group(self, topk_ids: cute.Tensor, ids: cute.Tensor, base: Int32, n: Int32, sentinel: Int32):
        """ids[base : base + vec] into registers; slots >= n read as `sentinel` (never a match).
        base is a multiple of vec (>= 4), so full groups are 16-byte aligned vector loads."""
        r = cute.make_rmem_tensor(cute.make_layout(self.vec), Int32)
        if base + self.vec <= n:
            src = cute.make_tensor(aligned(topk_ids.iterator, base, 4), cute.make_layout(self.vec))
            cute.autovec_copy(src, r)
        else:
            for j in cutlass.range_constexpr(self.vec):
                r[j] = sentinel
                if base + j < n:
                    r[j] = ids[base + j]
        return r

    @cute.jit
    def _block_sum(self, v: Int32, red: cute.Tensor, warp: Int32, lane: Int32) -> Int32:
        """CTA-wide sum, valid in every thread. Called by all threads (warp_idx and the
        shuffles are full-warp operations: never inside a lane-divergent branch)."""
        v = cute.arch.warp_reduction(v, operator.add)
        if lane == 0:
            red[warp] = v
        cute.arch.sync_threads()
        s = Int32(0)
        for w in cutlass.range_constexpr(self.nwarps):
            s += red[w]
        cute.arch.sync_threads()  # red may be reused right after
        return s

    @cute.jit
    def _round_up(self, c: Int32) -> Int32:
        return Int32((Uint32(c) + (self.pad - 1)) // self.pad * self.pad)

    def _cta(self, topk_ids: cute.Tensor, expert_start: cute.Tensor, n: Int32):
        """Both kernels' prologue (plain Python run at trace time, no control flow): thread, CTA,
        warp and lane ids (warp_idx is a full-warp op: here, before any branch), the shared
        allocator with the CTA-sum buffer first, this CTA's expert start + e, the sentinel that
        pads a partial group (never equal to the target) and topk_ids as a flat [N] view."""
        tidx, _, _ = cute.arch.thread_idx()
        bidx, _, _ = cute.arch.block_idx()
        warp = cute.arch.warp_idx()
        lane = cute.arch.lane_idx()
        smem = cutlass.utils.SmemAllocator()
        red = smem.allocate_tensor(Int32, cute.make_layout(self.nwarps), byte_alignment=16)
        start = expert_start[0]
        target = start + bidx
        sentinel = -1 - target
        ids = cute.make_tensor(topk_ids.iterator, cute.make_layout(n))
        return tidx, bidx, warp, lane, smem, red, start, target, sentinel, ids

    # ------------------------------------------------------------------ kernels
    @cute.kernel
    def count_kernel(self, topk_ids: cute.Tensor, expert_start: cute.Tensor, counts: cute.Tensor,
                     n: Int32, n_steps: Int32):
        tidx, bidx, warp, lane, _, red, _, target, sentinel, ids = self._cta(topk_ids, expert_start, n)
        cnt = Int32(0)
        for s in cutlass.range(n_steps):
            r = self._load_group(topk_ids, ids, s * self.step + tidx * self.vec, n, sentinel)
            for j in cutlass.range_constexpr(self.vec):
                if r[j] == target:
                    cnt += 1
        total = self._block_sum(cnt, red, warp, lane)
        if tidx == 0:
            counts[bidx] = total

    @cute.kernel
    def scatter_kernel(self, topk_ids: cute.Tensor, expert_start: cute.Tensor, counts: cute.Tensor,
                       offsets: cute.Tensor, slot_of: cute.Tensor, src_token: cute.Tensor,
                       n: Int32, n_steps: Int32, cap: Int32):
        tidx, bidx, warp, lane, smem, red, start, target, sentinel, ids = self._cta(topk_ids, expert_start, n)
        scan = smem.allocate_tensor(Int32, cute.make_layout((self.nwarps, 2)), byte_alignment=16)
        slots = cute.make_tensor(slot_of.iterator, cute.make_layout(n))
        src = cute.make_tensor(src_token.iterator, cute.make_layout(cap))

        # 1. base row of expert bidx and total rows used, from the padded counts
        before = Int32(0)
        total = Int32(0)
        for e in cutlass.range(tidx, self.experts, self.threads):
            rows_e = self._round_up(counts[e])
            total += rows_e
            if e < bidx:
                before += rows_e
        before = self._block_sum(before, red, warp, lane)
        total = self._block_sum(total, red, warp, lane)
        my_count = counts[bidx]
        my_end = before + self._round_up(my_count)
        if tidx == 0:
            offsets[bidx + 1] = my_end
            if bidx == 0:
                offsets[0] = Int32(0)

        # 2. padding rows of this expert, and this CTA's share of the tail [total, cap)
        for row in cutlass.range(before + my_count + tidx, my_end, self.threads):
            if row < cap:
                src[row] = Int32(-1)
        for row in cutlass.range(total + bidx * self.threads + tidx, cap, self.threads * self.experts):
            src[row] = Int32(-1)

        # 3. stable scatter: matches ranked in slot order
        row0 = before
        for s in cutlass.range(n_steps):
            base = s * self.step + tidx * self.vec
            r = self._load_group(topk_ids, ids, base, n, sentinel)
            mine = Int32(0)
            for j in cutlass.range_constexpr(self.vec):
                if r[j] == target:
                    mine += 1
            incl = mine  # inclusive warp scan (shfl.up on every lane)
            for d in cutlass.range_constexpr(5):
                t = cute.arch.shuffle_sync_up(incl, 1 << d)
                if lane >= (1 << d):
                    incl += t
            buf = s & 1
            if lane == 31:
                scan[warp, buf] = incl
            cute.arch.sync_threads()
            warp_pre = Int32(0)
            step_total = Int32(0)
            for w in cutlass.range_constexpr(self.nwarps):
                v = scan[w, buf]
                if w < warp:
                    warp_pre += v
                step_total += v
            row = row0 + warp_pre + incl - mine
            for j in cutlass.range_constexpr(self.vec):
                if r[j] == target:
                    slots[base + j] = row
                    if row < cap:
                        src[row] = Int32(Uint32(base + j) // self.topk)
                    row += 1
                elif bidx == 0:
                    if base + j < n:
                        if Uint32(r[j] - start) >= Uint32(self.experts):
                            slots[base + j] = Int32(-1)
            row0 += step_total


def make_route(p):
    return MoeRouteKernel(p.experts, p.topk, p.pad, threads=p.threads, vec=p.vec)


def fake_args_route(p):
    m = cute.sym_int()  # one SymInt shared by every tensor with M rows
    cap = cute.sym_int()  # CAP = (M * topk + E * (pad - 1)) // pad * pad, checked by the runtime
    shapes = (((m, p.topk), 16), ((1,), 4), ((p.experts,), 4), ((p.experts + 1,), 4), ((m, p.topk), 4), ((cap,), 4))
    return (*(fake_row_major(Int32, shape, align) for shape, align in shapes), fake_stream())
