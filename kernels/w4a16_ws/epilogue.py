"""The epilogue of the w4a16_ws kernel (kernel.py W4A16WsKernel inherits it): the fp32
accumulators of one consumer warp (its 16 weight rows of each of its rb m64 blocks x tile_n
tokens) times the per-row alpha, rounded to bf16, stored to out[start + token, weight row] for
tokens < count only (rows of other experts and padding are never written). Column c of the tile
holds the token sched.token_col gives (the producer's boxes, sched.act_boxes: the last box of a
partial tile is moved back inside the expert, so its first columns repeat tokens already stored).

epi 1 / 2 (_epilogue_smem): per chunk of 16 tokens, stmatrix .trans puts the warp's 16 x 16 block
into its own 512-byte staging block (after the stage ring) as 16 token rows of 32 bytes; each
lane reads back 16 bytes (8 weight rows of one token) and stores them with one 16-byte global
store: 16 instructions per 16 tokens instead of 128 scalar 2-byte stores and their branches, and
whole 32-byte sectors. It needs `out` 16-byte aligned (the row stride, N * 2 bytes, always is:
N is a multiple of tile_m); the signature only promises 4 bytes, so an unaligned view takes
epi 0 (_epilogue_regs, one 2-byte store per value) at run time. alpha is loaded before the k
loop (_load_alpha) so its latency hides behind the MMAs.

epi 2: the same chunks, EPI_BLOCKS[2] at a time in as many staging blocks: all of a group's
stmatrix, one warp sync, all of its read-backs and stores, one warp sync. The epilogue is a chain
of shared-memory round trips the tensor core waits on (no next-tile wgmma can start: the
accumulators are the epilogue's); grouping runs a group's round trips side by side.

epi 3 (_epilogue_tma): the warpgroup writes its rb m64 blocks x tile_n tokens as bf16 into its
slots of a tile image laid out as the activation stages are (token rows of 128 bytes per m64
block, SW128: 16-byte chunk c of row t at chunk c ^ (t % 8)), and one thread stores each slot with
a TMA bulk tensor store [tile_n tokens x 64 weight rows] that drains while the next tile's k loop
runs: the k loop no longer waits on the tile's global stores (probe 5 measured them at 4-14% of
a large-M launch on the H200, session 16). Protocol per tile, in this order: (1) thread 0 of the
warpgroup waits until its previous bulk stores have read the image (cp.async.bulk.wait_group.read
0), (2) warpgroup barrier (the slots are free), (3) stmatrix .trans of every 16-token chunk,
(4) fence.proxy.async (the generic-proxy writes become visible to the TMA unit), (5) warpgroup
barrier, (6) thread 0 issues the slots' stores and commits them as one bulk group; before the
CTA exits thread 0 waits for the group to complete. Only a whole token tile (every column a token
of the expert: lim >= tile_n, where act_boxes loads one unshifted box) goes this way; a partial
one (the last of an expert or of M) takes epi 1's path with its staging blocks inside the image,
after (1) and (2). The output's TMA view needs `out` 16-byte aligned: the epi 3 signature says so.

probe 5 (diagnostic, wrong output by design): the whole-tile epilogue only runs when a count is
negative (never), so the accumulators stay live and nothing is stored: t(kernel) - t(probe 5) is
what the epilogue costs.
"""

import cutlass
import cutlass.cute as cute
from cutlass import BFloat16, Int32, Int64, const_expr
from cutlass.cute.nvgpu import cpasync

from ..ptx import pack_bf16x2
from ..w4a16 import EPI_SCALE
from . import EPI_BLOCKS, EPI_WARP_BYTES
from .ptx import lds_v4, stg_v4_if, stmatrix_x4_trans
from .sched import act_boxes, img_offset, token_col


class Epilogue:
    @cute.jit
    def _load_alpha(self, al, cw, wq, lane, e, m, alpha):
        """al[h, r] = alpha of weight row 16 wq + lane / 4 + 8 h of the warp's m64 block r, times
        EPI_SCALE in word order "rot" (decode_rot's values are v * scale * 2^-7; the table decode's
        are v * scale exactly)."""
        for r in cutlass.range_constexpr(self.rb):
            row_a = m * self.tile_m + (cw * self.rb + r) * 64 + 16 * wq + lane // 4
            for h in cutlass.range_constexpr(2):
                if const_expr(self.grouped):
                    al[h, r] = alpha[e, row_a + 8 * h]
                else:
                    al[h, r] = alpha[row_a + 8 * h]
                if const_expr(self.rot):
                    al[h, r] = al[h, r] * EPI_SCALE

    @cute.jit
    def _epilogue(self, acc, al, ebuf, cw, wq, lane, e, j, m, s_start, s_cnt, out, own=None):
        """acc * alpha -> bf16 out[start + token, weight row], tokens < count only. epi 1 stages
        through shared memory when `out` is 16-byte aligned (its row stride, N * 2 bytes, always
        is), else (a view at an odd offset: the signature only asks 4 bytes) the scalar stores.
        own (split-K red 1, stream.py): a bit mask over the tile's self.parts token parts; only the
        columns of parts whose bit is set are computed and stored (None: all)."""
        if const_expr(self.probe == 5):
            if s_cnt[e] < 0:  # never (counts are >= 0): the accumulators stay live, nothing is stored
                self._epilogue_regs(acc, al, cw, wq, lane, e, j, m, s_start, s_cnt, out, own)
        elif const_expr(self.epi >= 1):
            if out.iterator.toint() % 16 == 0:
                self._epilogue_smem(acc, al, ebuf, cw, wq, lane, e, j, m, s_start, s_cnt, out, own)
            else:
                self._epilogue_regs(acc, al, cw, wq, lane, e, j, m, s_start, s_cnt, out, own)
        else:
            self._epilogue_regs(acc, al, cw, wq, lane, e, j, m, s_start, s_cnt, out, own)

    @cute.jit
    def _owns(self, own, col: cutlass.Constexpr[int]):
        """1 if the part holding tile column `col` is in the mask `own` (None: every part), else 0."""
        if const_expr(own is None):
            return Int32(1)
        else:
            return (own >> (col * self.parts // self.tile_n)) & 1

    @cute.jit
    def _tile_tokens(self, e, j, s_start, s_cnt):
        """Token tile j of expert e: (start, first token tok0, and token_col's last, sh, lim) for the
        columns the producer loaded with sched.act_boxes."""
        start = s_start[e]
        cnt = s_cnt[e]
        tok0 = j * self.tile_n
        _, _, last, sh = act_boxes(start, cnt, j, self.tile_n, cutlass.min, cutlass.max)
        return start, tok0, last, sh, cnt - tok0

    @cute.jit
    def _epilogue_regs(self, acc, al, cw, wq, lane, e, j, m, s_start, s_cnt, out, own=None):
        """acc[4 jj + q, r] = (row 16 wq + lane / 4 + 8 (q / 2) of block r, token 8 jj + 2 (lane % 4)
        + q % 2) -> out[start + token, weight row] * alpha, tokens < count only: one 2-byte store each."""
        start, tok0, last, sh, lim = self._tile_tokens(e, j, s_start, s_cnt)
        g = lane // 4
        c = lane % 4
        # token columns outer, blocks inner: each column's (token, stored?) is live for one column only
        for jj in cutlass.range_constexpr(self.tile_n // 8):
            if const_expr(own is None):
                self._col_regs(acc, al, jj, c, g, cw, wq, m, start, tok0, last, sh, lim, out)
            elif self._owns(own, 8 * jj) != 0:  # (warp-uniform)
                self._col_regs(acc, al, jj, c, g, cw, wq, m, start, tok0, last, sh, lim, out)

    @cute.jit
    def _col_regs(self, acc, al, jj: cutlass.Constexpr[int], c, g, cw, wq, m, start, tok0, last, sh, lim, out):
        """_epilogue_regs' token columns 8 jj .. 8 jj + 7 of the warp's rows."""
        for q in cutlass.range_constexpr(4):
            t, ok = token_col(8 * jj + 2 * c + q % 2, last, sh, lim, cutlass.min, cutlass.max)
            if ok:
                for r in cutlass.range_constexpr(self.rb):
                    row_a = m * self.tile_m + (cw * self.rb + r) * 64 + 16 * wq + g + 8 * (q // 2)
                    out[start + tok0 + t, row_a] = (acc[4 * jj + q, r] * al[q // 2, r]).to(BFloat16)

    @cute.jit
    def _epilogue_smem(self, acc, al, ebuf, cw, wq, lane, e, j, m, s_start, s_cnt, out, own=None):
        """Per m64 block r and chunk of 16 tokens, the warp's 16 x 16 (weight rows x tokens) bf16
        block goes through a 512-byte staging block: stmatrix .trans writes token t's 16 rows
        as 32 bytes at t * 32, its two 16-byte halves (rows 0-7, 8-15) swapped when t & 4 (the 8
        rows of one matrix then hit 32 distinct banks); lane l reads back token l / 2's half
        (l % 2) ^ ((l / 2 >> 2) & 1) and stores it as one 16-byte global store (the warp: 16
        tokens x 32 contiguous bytes, whole sectors), tokens < count only. The (chunk, block)
        units go in groups of G = EPI_BLOCKS[epi] (1 under a part mask), unit g of a group in
        staging block g: bar.warp.sync orders the group's writes -> reads -> the next group's
        writes (the blocks are the warp's own)."""
        start, tok0, last, sh, lim = self._tile_tokens(e, j, s_start, s_cnt)
        base = out.iterator.toint()
        # stmatrix: lane 8 q + i gives memory row i of matrix q = (token 8 (q / 2) + i, rows 8 (q % 2) ..)
        q = lane // 8
        t_w = 8 * (q // 2) + lane % 8
        w_addr = ebuf + t_w * 32 + ((q % 2) ^ ((t_w >> 2) & 1)) * 16
        t_r = lane // 2  # read back: token t_r, rows 8 h_r .. 8 h_r + 7
        h_r = (lane % 2) ^ ((t_r >> 2) & 1)
        r_addr = ebuf + lane * 16
        if const_expr(own is None):
            # unit u: token chunk u / rb (chunks outer, as _epilogue_regs), m64 block u % rb
            units = self.tile_n // 16 * self.rb
            g = EPI_BLOCKS[self.epi]
            for u0 in cutlass.range_constexpr(0, units, g):
                self._units_smem(acc, al, u0, min(g, units - u0), cw, wq, m, start, tok0, last, sh, lim, base, w_addr,
                                 r_addr, t_r, h_r)
        else:
            for ch in cutlass.range_constexpr(self.tile_n // 16):
                if self._owns(own, 16 * ch) != 0:  # (warp-uniform)
                    for r in cutlass.range_constexpr(self.rb):
                        self._units_smem(acc, al, ch * self.rb + r, 1, cw, wq, m, start, tok0, last, sh, lim, base,
                                         w_addr, r_addr, t_r, h_r)

    @cute.jit
    def _chunk_regs(self, acc, al, ch: cutlass.Constexpr[int], r: cutlass.Constexpr[int]):
        """Token chunk ch (16 tokens) of the warp's m64 block r as stmatrix's four bf16x2 registers x alpha, in
        matrix order (u, h) = (0, 0), (0, 1), (1, 0), (1, 1): tokens 8 (2 ch + u) .., weight rows 8 h .."""
        regs = []
        for u in cutlass.range_constexpr(2):
            jj = 2 * ch + u
            for h in cutlass.range_constexpr(2):
                lo, hi = acc[4 * jj + 2 * h, r] * al[h, r], acc[4 * jj + 2 * h + 1, r] * al[h, r]
                regs.append(pack_bf16x2(lo, hi))
        return regs

    @cute.jit
    def _units_smem(self, acc, al, u0: cutlass.Constexpr[int], g: cutlass.Constexpr[int], cw, wq, m, start, tok0, last,
                    sh, lim, base, w_addr, r_addr, t_r, h_r):
        """_epilogue_smem's units u0 .. u0 + g - 1 (unit u: token chunk u / rb of m64 block u % rb), unit u0 + b
        through staging block b."""
        n, rb = self.n, self.rb
        for b in cutlass.range_constexpr(g):
            ch, r = (u0 + b) // rb, (u0 + b) % rb
            regs = self._chunk_regs(acc, al, ch, r)
            stmatrix_x4_trans(w_addr + b * EPI_WARP_BYTES, regs[0], regs[1], regs[2], regs[3])
        cute.arch.sync_warp()
        for b in cutlass.range_constexpr(g):
            ch, r = (u0 + b) // rb, (u0 + b) % rb
            t, ok = token_col(16 * ch + t_r, last, sh, lim, cutlass.min, cutlass.max)
            row_w = m * self.tile_m + (cw * rb + r) * 64 + 16 * wq + 8 * h_r
            v = lds_v4(r_addr + b * EPI_WARP_BYTES)
            dst = base + (Int64(start + tok0 + t) * n + row_w) * 2
            stg_v4_if(dst, v[0], v[1], v[2], v[3], Int32(ok))
        cute.arch.sync_warp()

    @cute.jit
    def _epilogue_tma(self, acc, al, ebuf, epo, cw, wq, tw, lane, e, j, m, s_start, s_cnt, out):
        """epi 3 (module docstring): the tile image and its TMA bulk stores for a whole token tile, epi 1's
        path (staging blocks at ebuf, inside the image) for a partial one."""
        atom, g_out, s_img = epo
        slot_bytes = self.tile_n * 128  # one m64 block: tile_n token rows of 64 weight rows (128 bytes)
        bar = 2 + cw  # named barrier of this warpgroup (1: stream.py's consumer barrier)
        if tw == 0:  # (1)
            cute.arch.cp_async_bulk_wait_group(0, read=True)
        cute.arch.barrier(barrier_id=bar, number_of_threads=128)  # (2)
        start, tok0, last, sh, lim = self._tile_tokens(e, j, s_start, s_cnt)
        if lim >= self.tile_n:
            w_addr = s_img.iterator.toint() + cw * self.rb * slot_bytes + img_offset(lane, wq)  # (SW128, sched.py)
            for ch in cutlass.range_constexpr(self.tile_n // 16):  # (3)
                for r in cutlass.range_constexpr(self.rb):
                    regs = self._chunk_regs(acc, al, ch, r)
                    stmatrix_x4_trans(w_addr + r * slot_bytes + ch * 16 * 128, regs[0], regs[1], regs[2], regs[3])
            cute.arch.fence_proxy("async.shared", space="cta")  # (4)
            cute.arch.barrier(barrier_id=bar, number_of_threads=128)  # (5)
            if tw == 0:  # (6)
                g = cute.local_tile(cute.domain_offset((start + tok0, 0), g_out), (self.tile_n, 64), (0, None))
                t_s, t_g = cpasync.tma_partition(atom, 0, cute.make_layout(1), cute.group_modes(s_img, 0, 2),
                                                 cute.group_modes(g, 0, 2))
                for r in cutlass.range_constexpr(self.rb):
                    b = cw * self.rb + r  # the tile's m64 block: slot b, output columns (m blocks + b) * 64 ..
                    cute.copy(atom, t_s[None, b], t_g[None, m * self.blocks + b])
                cute.arch.cp_async_bulk_commit_group()
        else:
            self._epilogue_smem(acc, al, ebuf, cw, wq, lane, e, j, m, s_start, s_cnt, out)
