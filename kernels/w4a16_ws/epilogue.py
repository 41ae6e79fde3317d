"""The epilogue of the w4a16_ws kernel (kernel.py W4A16WsKernel inherits it): the fp32
accumulators of one consumer warp (its 16 weight rows of each of its rb m64 blocks x tile_n
tokens) times the per-row alpha, rounded to bf16, stored to out[start + token, weight row] for
tokens < count only (rows of other experts and padding are never written). Column c of the tile
holds the token sched.token_col gives (the producer's boxes, sched.act_boxes: the last box of a
partial tile is moved back inside the expert, so its first columns repeat tokens already stored).

epi 1 (_epilogue_smem): per chunk of 16 tokens, stmatrix .trans puts the warp's 16 x 16 block
into its own 512-byte staging block (after the stage ring) as 16 token rows of 32 bytes; each
lane reads back 16 bytes (8 weight rows of one token) and stores them with one 16-byte global
store: 16 instructions per 16 tokens instead of 128 scalar 2-byte stores and their branches, and
whole 32-byte sectors. It needs `out` 16-byte aligned (the row stride, N * 2 bytes, always is:
N is a multiple of tile_m); the signature only promises 4 bytes, so an unaligned view takes
epi 0 (_epilogue_regs, one 2-byte store per value) at run time. alpha is loaded before the k
loop (_load_alpha) so its latency hides behind the MMAs.
"""

import cutlass
import cutlass.cute as cute
from cutlass import BFloat16, Int32, Int64, const_expr

from ..ptx import pack_bf16x2
from .ptx import lds_v4, stg_v4_if, stmatrix_x4_trans
from .sched import act_boxes, token_col


class Epilogue:
    @cute.jit
    def _load_alpha(self, al, cw, wq, lane, e, m, alpha):
        """al[h, r] = alpha of weight row 16 wq + lane / 4 + 8 h of the warp's m64 block r."""
        for r in cutlass.range_constexpr(self.rb):
            row_a = m * self.tile_m + (cw * self.rb + r) * 64 + 16 * wq + lane // 4
            for h in cutlass.range_constexpr(2):
                if const_expr(self.grouped):
                    al[h, r] = alpha[e, row_a + 8 * h]
                else:
                    al[h, r] = alpha[row_a + 8 * h]

    @cute.jit
    def _epilogue(self, acc, al, ebuf, cw, wq, lane, e, j, m, s_start, s_cnt, out, own=None):
        """acc * alpha -> bf16 out[start + token, weight row], tokens < count only. epi 1 stages
        through shared memory when `out` is 16-byte aligned (its row stride, N * 2 bytes, always
        is), else (a view at an odd offset: the signature only asks 4 bytes) the scalar stores.
        own (split-K red 1, stream.py): a bit mask over the tile's self.parts token parts; only the
        columns of parts whose bit is set are computed and stored (None: all)."""
        if const_expr(self.epi == 1):
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
        block goes through its own 512-byte staging block: stmatrix .trans writes token t's 16 rows
        as 32 bytes at t * 32, its two 16-byte halves (rows 0-7, 8-15) swapped when t & 4 (the 8
        rows of one matrix then hit 32 distinct banks); lane l reads back token l / 2's half
        (l % 2) ^ ((l / 2 >> 2) & 1) and stores it as one 16-byte global store (the warp: 16
        tokens x 32 contiguous bytes, whole sectors), tokens < count only. bar.warp.sync orders
        the staging block's write -> read -> next write (the block is the warp's own)."""
        start, tok0, last, sh, lim = self._tile_tokens(e, j, s_start, s_cnt)
        base = out.iterator.toint()
        # stmatrix: lane 8 q + i gives memory row i of matrix q = (token 8 (q / 2) + i, rows 8 (q % 2) ..)
        q = lane // 8
        t_w = 8 * (q // 2) + lane % 8
        w_addr = ebuf + t_w * 32 + ((q % 2) ^ ((t_w >> 2) & 1)) * 16
        t_r = lane // 2  # read back: token t_r, rows 8 h_r .. 8 h_r + 7
        h_r = (lane % 2) ^ ((t_r >> 2) & 1)
        r_addr = ebuf + lane * 16
        for ch in cutlass.range_constexpr(self.tile_n // 16):  # token chunks outer (as _epilogue_regs)
            if const_expr(own is None):
                self._chunk_smem(acc, al, ch, cw, wq, m, start, tok0, last, sh, lim, base, w_addr, r_addr, t_r, h_r)
            elif self._owns(own, 16 * ch) != 0:  # (warp-uniform)
                self._chunk_smem(acc, al, ch, cw, wq, m, start, tok0, last, sh, lim, base, w_addr, r_addr, t_r, h_r)

    @cute.jit
    def _chunk_smem(self, acc, al, ch: cutlass.Constexpr[int], cw, wq, m, start, tok0, last, sh, lim, base, w_addr,
                    r_addr, t_r, h_r):
        """_epilogue_smem's token chunk ch (16 tokens) of the warp's rows."""
        n = self.n
        t, ok = token_col(16 * ch + t_r, last, sh, lim, cutlass.min, cutlass.max)
        for r in cutlass.range_constexpr(self.rb):
            row_w = m * self.tile_m + (cw * self.rb + r) * 64 + 16 * wq + 8 * h_r
            regs = []
            for u in cutlass.range_constexpr(2):  # matrices (u, h): tokens 8 (2 ch + u) .., rows 8 h ..
                jj = 2 * ch + u
                for h in cutlass.range_constexpr(2):
                    lo, hi = acc[4 * jj + 2 * h, r] * al[h, r], acc[4 * jj + 2 * h + 1, r] * al[h, r]
                    regs.append(pack_bf16x2(lo, hi))
            stmatrix_x4_trans(w_addr, regs[0], regs[1], regs[2], regs[3])
            cute.arch.sync_warp()
            v = lds_v4(r_addr)
            dst = base + (Int64(start + tok0 + t) * n + row_w) * 2
            stg_v4_if(dst, v[0], v[1], v[2], v[3], Int32(ok))
            cute.arch.sync_warp()
