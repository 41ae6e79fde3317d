"""The cp.async ring mainloop of the w4a16 kernels (stages > 1), shared by split "wg" (warpgroup
MMA, wgmma.py) and split "n" (mma.sync, here).

Why split "n" has it (docs/PERFORMANCE.md 2026-12-02 "session 5, dec16"): with registers as the
only staging, ptxas sinks each k64 tile's weight loads down to their first use (the PTX has them
at the top of the K step; SASS issues them one k64 tile at a time), so a warp keeps ~16 B per lane
of weights in flight and the grid relies on occupancy to reach the copy bandwidth; the 16-32
token tilings (nt 2-4, rb > 1) need 71-186 registers and lose it. Here S - 1 whole K steps
(activations + every warp's weights) are in flight as cp.async groups, which ptxas cannot sink.

Per token tile: a barrier (the previous tile's readers are done), S - 1 chunks issued, then per
chunk c: wait for this thread's copies of chunk c (at most S - 2 newer groups pending), barrier
(every thread's copies landed, and every warp has finished chunk c - 1, whose stage the next copy
overwrites), issue chunk c + S - 1 (an empty group past the end keeps the group count uniform),
compute chunk c from stage c % S.
Stage layout (bytes): activations (bt token rows: "wg" 128-byte-swizzled K-major atoms, "n" rows
of ACT_ROW_BYTES["n"] = 528, the layout of the synchronous split "n" staging), then per warp and
row block W_STEP_BYTES: the 4 k64 tiles' codes (4 x 512 B, lane order as in global memory) and
their scales (4 x 64 B).
"""

import cutlass
import cutlass.cute as cute
from cutlass import Int32, Int64, const_expr

from ..w4a16_device import fence_proxy_async
from . import ACT_ROW_BYTES, BLOB_TILE, STRIP_TILE, W_STEP_BYTES, stage_bytes
from .ptx import (cp_async_16, cp_async_16_ca, cp_async_commit, cp_async_wait,
                  ld_shared_u16, ld_shared_v4, ldmatrix_x4, mma_bf16, quad_scales)


def act_slot(base, tok, kv, bt: int, wg: bool):
    """Shared address (base + offset) of the 16-byte vector kv (K 8 kv .. 8 kv + 7 of the K step)
    of staged token row tok. Plain arithmetic: traced with DSL integers by the kernel, replayed with
    Python integers by tests/kernels/test_w4a16.py."""
    if wg:  # SW128: 16-byte chunk kv % 8 of row tok at (kv % 8) ^ (tok % 8)
        srow = base + (kv // 8) * (bt * 128) + tok * 128
        return srow + (((kv % 8) ^ (tok % 8)) * 16)
    return base + tok * ACT_ROW_BYTES["n"] + kv * 16


def n_frag_slot(base, j, lane, kt, quad: bool):
    """split "n": shared address of lane's B-fragment read of token fragment j, k64 tile kt: quad,
    the first of its two 16-byte loads (row g = lane // 4, bytes 32 t .. 32 t + 31 of the tile);
    natural, its ldmatrix.x4 row address (row lane % 8 of matrix lane // 8; the second x4 at + 64)."""
    if quad:
        return base + (8 * j + lane // 4) * ACT_ROW_BYTES["n"] + kt * 128 + (lane % 4) * 32
    return base + (8 * j + lane % 8) * ACT_ROW_BYTES["n"] + kt * 128 + (lane // 8) * 16


def n_copy(warp, lane, v, bt: int, warps: int):
    """split "n" ring (RingMainloop.row_ptr): (token row, 16-byte vector) of the tile that thread
    (warp, lane) copies as its v-th activation copy of a K step. Warp w takes rows w R .. w R + R - 1
    (R = bt / warps <= 32), 32 / R lanes per row, a lane's R vectors 32 / R apart: one row pointer
    plus constants. Each copy instruction (fixed v) reads whole 32-byte sectors of R rows (R <= 16)
    and writes its 512 B in 4 shared-memory wavefronts (rows are 528 B: 16 B of bank shift per row).
    Plain arithmetic: traced by the kernel, replayed by tests/kernels/test_w4a16.py."""
    rows, lanes = bt // warps, n_copy_lanes(bt, warps)
    return warp * rows + lane // lanes, lane % lanes + v * lanes


def n_copy_lanes(bt: int, warps: int) -> int:
    """n_copy's lanes per token row, which is also the vector stride between a thread's copies."""
    return 32 // (bt // warps)


def w_slot(base, act_bytes: int, warp, rb: int):
    """Shared address of warp's weights in a stage: after the activations, rb row blocks of
    W_STEP_BYTES each (block r at + r W_STEP_BYTES): 4 x 512 B codes (k64 tile kt at 512 kt, lane's
    16 bytes at 16 lane), then 4 x 64 B scales (tile kt at 2048 + 64 kt)."""
    return base + act_bytes + warp * (rb * W_STEP_BYTES)


class RingMainloop:
    """Mixed into W4A16Kernel for stages > 1 (see the module docstring)."""

    @property
    def stage_words(self) -> int:
        return stage_bytes(self.bt, self.warps, self.rb, "wg" if self.wg else "n") // 4

    @property
    def act_stage_bytes(self) -> int:
        return self.bt * ACT_ROW_BYTES["wg" if self.wg else "n"]

    @property
    def row_ptr(self) -> bool:
        """split "n" with at most 32 token rows per warp: a thread's activation copies of a K
        step lie in one token row (n_copy)."""
        return not self.wg and self.bt // self.warps <= 32

    @cute.jit
    def ring_mainloop(self, acc, sb, abase, row_bytes, wb, sbw, tidx, warp, lane, n_tiles, cnt,
                      red, alpha, out, rb0, by, start):
        if const_expr(self.row_ptr):
            # split "n": this thread's staged row pointer (ring_issue), advanced per token tile
            tok, kv = n_copy(warp, lane, 0, self.bt, self.warps)
            abase = abase + Int64(tok) * row_bytes + Int64(kv * 16)
        for tt in cutlass.range(n_tiles):
            tok0 = tt * self.bt
            acc.fill(0.0)
            cute.arch.sync_threads()  # the previous tile's last chunks are read by every warp
            if const_expr(self.wg):
                self.ring_k_loop(acc, sb, abase, row_bytes, wb, sbw, tidx, warp, lane, tok0, cnt, self.nt)
            else:
                # split "n": the tile's live token fragments (those holding rows of the count: 1 ..
                # nt, CTA-uniform) select one of nt copies of the K loop, each with a compile-time
                # fragment count, so no branch splits the MMAs inside it (a per-fragment branch in
                # the loop left each fragment's dependent MMA chains alone in their block: ptxas
                # padded them with stalls, ~5% of the kernel at 16 tokens / expert)
                live = cutlass.min((cnt - tok0 + 7) // 8, self.nt)
                for f in cutlass.range_constexpr(1, self.nt + 1):
                    if live == f:
                        self.ring_k_loop(acc, sb, self._tile_act(abase, tok0, row_bytes), row_bytes, wb, sbw, tidx,
                                         warp, lane, tok0, cnt, f)
            self._epilogue(acc, red, alpha, out, lane, warp, tidx, rb0, by, start, cnt, tok0)

    # Plain Python helper, traced inline by ring_mainloop.
    def _tile_act(self, abase, tok0, row_bytes):
        """ring_issue's activation pointer for the token tile at tok0: row_ptr, the thread's row of
        the tile (abase is its row of tile 0); otherwise the expert's rows (the rolled copies add
        tok0 themselves)."""
        return abase + Int64(tok0) * row_bytes if self.row_ptr else abase

    @cute.jit
    def ring_k_loop(self, acc, sb, abase, row_bytes, wb, sbw, tidx, warp, lane, tok0, cnt,
                    frags: cutlass.Constexpr[int]):
        """One token tile's K loop (module docstring); split "n" runs MMAs for its first `frags`
        token fragments only (n_chunk)."""
        S = self.stages
        base0 = sb.iterator.toint()
        sbytes = self.stage_words * 4
        for c in cutlass.range_constexpr(S - 1):
            if c < self.chunks:
                self.ring_issue(base0 + c * sbytes, abase, row_bytes, wb, sbw, tidx, warp, lane, c, tok0, cnt)
            cp_async_commit()
        for c in cutlass.range(self.chunks):
            cp_async_wait(S - 2)
            if const_expr(self.wg):
                fence_proxy_async()  # wgmma reads the stage through the async proxy
            cute.arch.sync_threads()
            nxt = c + (S - 1)
            if nxt < self.chunks:
                self.ring_issue(base0 + (nxt % S) * sbytes, abase, row_bytes, wb, sbw, tidx, warp, lane, nxt,
                                tok0, cnt)
            cp_async_commit()
            if const_expr(self.wg):
                self.wgp_chunk(acc, base0 + (c % S) * sbytes, warp, lane)
            else:
                self.n_chunk(acc, base0 + (c % S) * sbytes, warp, lane, frags)
        cp_async_wait(0)  # only empty groups are left; keeps the next tile's count exact

    @cute.jit
    def ring_issue(self, base, abase, row_bytes, wb, sbw, tidx, warp, lane, c, tok0, cnt):
        """Start copying K step c into the stage at shared address `base` (no register round
        trip, no wait): the activations (16-byte copies of token rows clamped into the expert's
        count: a clamped row feeds only MMA columns that are never stored), then each warp's own
        rb weight slices. The caller commits the group."""
        bt = self.bt
        rows = bt // self.warps  # token rows per warp and K step (split "n" validity: >= 1)
        if const_expr(not self.row_ptr):
            # a rolled loop: unrolled, ptxas hoists the bt * 32 / threads row pointers (invariant
            # over the chunks) into registers for the whole mainloop and then spills or serializes
            # wgmmas. wgmma reads every row of the tile: clamped copies past the count.
            for v in cutlass.range(bt * 32 // self.threads, unroll=1):
                vi = v * self.threads + tidx
                tok = vi // 32
                if const_expr(self.wg):
                    self._issue_row(base, abase, row_bytes, cutlass.min(tok0 + tok, cnt - 1), tok, vi % 32, c)
                elif tok0 + tok < cnt:
                    self._issue_row(base, abase, row_bytes, tok0 + tok, tok, vi % 32, c)
        else:
            # split "n" (n_copy): one row pointer per thread plus constants (the rolled loop above
            # spent ~60 instructions per K step on index math, ~7% of the served kernel at 16
            # tokens / expert). Rows past the count are not staged (n_chunk's skip).
            tok, kv = n_copy(warp, lane, 0, bt, self.warps)
            step = n_copy_lanes(bt, self.warps)
            live = Int32(tok0 + tok < cnt)
            src = abase + Int64(c * 512)  # abase: this thread's row pointer (ring_mainloop)
            dst = act_slot(base, tok, kv, bt, False)
            for v in cutlass.range_constexpr(rows):
                cp_async_16_ca(dst + v * step * 16, src + Int64(v * step * 16), live)
        wdst = w_slot(base, self.act_stage_bytes, warp, self.rb)
        if const_expr(self.wg):
            for r in cutlass.range_constexpr(self.rb):
                self._issue_weights(wdst, wb[r], sbw[r], r, lane, c)
        else:
            # split "n": a warp's rb blocks rb0 + r (rb0 a multiple of rb, rb | 4) are slices of
            # one 64-row group, 512 code / 64 scale bytes apart: wb[r] = wb[0] + 512 r, sbw[r] =
            # sbw[0] + 64 r. A rolled loop: with the issue straight-line, ptxas schedules the K
            # loop's dependent MMA chains back to back and pads them with no-ops (35 / 77 / 124
            # per K step in the 2- / 3- / 4-fragment loops, against 2 rolled; SASS, session 21).
            for r in cutlass.range(self.rb, unroll=1):
                self._issue_weights(wdst, wb[0] + Int64(r * 512), sbw[0] + Int64(r * 64), r, lane, c)

    @cute.jit
    def _issue_weights(self, wdst, wr, sr, r, lane, c):
        """Row block r's codes and scales of K step c (from its slice pointers wr / sr) -> the
        warp's weights at shared address wdst (w_slot)."""
        for kt in cutlass.range_constexpr(4):
            cp_async_16(wdst + r * W_STEP_BYTES + kt * 512 + lane * 16,
                        wr + Int64((4 * c + kt) * BLOB_TILE + lane * 16))
        if lane < 16:  # tile lane // 4's 64 scale bytes, 16 per lane
            cp_async_16(wdst + r * W_STEP_BYTES + 2048 + lane * 16,
                        sr + Int64((4 * c + lane // 4) * STRIP_TILE + (lane % 4) * 16))

    # Plain Python helper, traced inline by ring_issue.
    def _issue_row(self, base, abase, row_bytes, row, tok, kv, c):
        """16 bytes (vector kv of K step c) of activation row `row` -> staged token slot tok."""
        src = abase + Int64(row) * row_bytes + Int64(c * 512 + kv * 16)
        cp_async_16_ca(act_slot(base, tok, kv, self.bt, self.wg), src)

    # Plain Python helper, unrolled while n_chunk / wgmma.wgp_chunk are traced.
    def staged_blocks(self, wsrc, kt, lane):
        """The decoded A fragments of k64 tile kt of the warp's staged weights at wsrc (w_slot):
        rb row blocks x 4 k16 blocks, each decode_block of the lane's code word and scale pair."""
        regs = []
        for r in range(self.rb):
            x = ld_shared_v4(wsrc + r * W_STEP_BYTES + kt * 512 + lane * 16)
            # lane (g, t): block t's pair of rows g, g + 8 (strip bytes 8g + 2t, + 1)
            sp = quad_scales(ld_shared_u16(wsrc + r * W_STEP_BYTES + 2048 + kt * 64 + lane * 2))
            for b in range(4):
                regs.append(self.decode(x[b], sp[b]))
        return regs

    @cute.jit
    def n_chunk(self, acc, base, warp, lane, frags: cutlass.Constexpr[int]):
        """split "n", one K step from the stage at `base`: per k64 tile, the warp's rb x 4 blocks
        are decoded once from the staged codes and scales, then each of the first `frags` token
        fragments (quad: two 16-byte shared loads of row g's 32 bytes at 32 t; natural: two
        ldmatrix.x4) feeds rb x 4 MMAs: every decoded weight fragment is reused across all of
        them. The fragments past them lie wholly past the expert's count and are skipped
        (ring_mainloop picks frags per token tile), so one tiling serves every count up to 8 * nt
        in one pass over the weights at the cost of the fragments it holds; rows of a partly
        filled fragment past the count are not staged (ring_issue): they feed only MMA columns
        that are never stored (columns are independent)."""
        rb = self.rb
        wsrc = w_slot(base, self.act_stage_bytes, warp, rb)
        for kt in cutlass.range_constexpr(4):
            af = self.staged_blocks(wsrc, kt, lane)
            for j in cutlass.range_constexpr(frags):
                self._n_frag(acc, af, base, j, lane, kt)

    # Plain Python helper, unrolled while n_chunk is traced.
    def _n_frag(self, acc, af, base, j, lane, kt):
        """Token fragment j of k64 tile kt: its B fragments from the stage, rb x 4 MMAs."""
        sa = n_frag_slot(base, j, lane, kt, self.quad)
        if const_expr(self.quad):
            y = ld_shared_v4(sa) + ld_shared_v4(sa + 16)
        else:
            y = ldmatrix_x4(sa) + ldmatrix_x4(sa + 64)
        for r in range(self.rb):
            for b in range(4):
                a0, a1, a2, a3 = af[r * 4 + b]
                d0, d1, d2, d3 = mma_bf16(a0, a1, a2, a3, y[2 * b], y[2 * b + 1],
                                          acc[0, j, r], acc[1, j, r], acc[2, j, r], acc[3, j, r])
                acc[0, j, r], acc[1, j, r], acc[2, j, r], acc[3, j, r] = d0, d1, d2, d3


__all__ = ["RingMainloop", "act_slot", "n_copy", "n_copy_lanes", "n_frag_slot", "w_slot"]
