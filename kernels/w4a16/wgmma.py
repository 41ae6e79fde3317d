"""split = "wg": the prefill mainloop of the w4a16 kernels on Hopper's warpgroup MMA.

One CTA = one or two warpgroups (4 or 8 warps), each 64 * rb weight rows of one expert, sharing the
staged activations, looping over the
expert's token tiles of BT = 8 * nt tokens (64 or 128). Per 256-wide K step:
  * each warp loads its raw NVFP4 codes + scales (global -> registers, the same blob/strip
    and decode as split "k"/"n": the RS-wgmma A fragment of a warp is exactly the m16n8k16 A
    fragment of its 16 rows, a warpgroup's four warps = the four slices of one 64-row group);
  * the CTA stages the chunk's activations (BT tokens x 256 K) in shared memory in the
    canonical K-major 128-byte-swizzle layout (row = 128 B of K, 16-byte chunk c of row n at
    c ^ (n % 8)), then fence.proxy.async so the async proxy (wgmma) sees the generic stores.
    K is natural in the weight layout, so each 16-byte vector is staged whole;
  * per k64 tile: decode 4 k16 blocks x rb, wgmma.fence, rb x 4 wgmma.mma_async
    m64nBTk16 (A from registers, B by descriptor), commit; the chunk ends with wait_group 0
    before the next staging overwrites shared memory.
stages > 1 (ring.py's ring_mainloop + wgp_chunk): the same per-chunk math, fed by an S-stage cp.async
ring (activations laid out as above with 16-byte copies, weights copied verbatim per warp) and with the weights read
from shared memory one k64 tile at a time; ptxas keeps the wgmmas in flight only when the registers
allow it (C7511 otherwise: check with ptxas -v, docs/GPU.md).
Accumulators: the m64nN f32 fragment is the m16n8 C fragment repeated over N / 8 columns, so
the epilogue's (row, token) mapping is the split "k" one with j = column tile.
"""

import cutlass
import cutlass.cute as cute
from cutlass import Int64

from ..w4a16_device import fence_proxy_async, hold, sw128_desc, wg_commit, wg_fence, wg_wait, wgmma_rs
from .ptx import ld_cached_v4, quad_scales, st_shared_v4
from .ring import w_slot


class WgmmaMainloop:
    """Mixed into W4A16Kernel for split = "wg" (see the module docstring)."""

    @cute.jit
    def wg_stage(self, sb, abase, row_bytes, tidx, c, tok0, cnt):
        cute.arch.sync_threads()  # the previous chunk's wgmmas were waited for by every warp
        bt = self.bt
        # One warp stages one token row's 512 bytes per step (coalesced 16-byte loads); K is
        # natural, so each 16-byte vector goes whole to its swizzled place (chunk ^ row % 8).
        for v in cutlass.range_constexpr(bt * 32 // self.threads):
            vi = v * self.threads + tidx
            tok = vi // 32
            kv = vi % 32
            row = cutlass.min(tok0 + tok, cnt - 1)
            x0, x1, x2, x3 = ld_cached_v4(abase + Int64(row) * row_bytes + Int64(c * 512 + kv * 16))
            srow = sb.iterator.toint() + (kv // 8) * (bt * 128) + tok * 128
            st_shared_v4(srow + (((kv % 8) ^ (tok % 8)) * 16), x0, x1, x2, x3)
        fence_proxy_async()
        cute.arch.sync_threads()

    @cute.jit
    def wgp_chunk(self, acc, base, warp, lane):
        """wg_chunk with the weights read from the stage just in time, one k64 tile at a time
        (4 + 1 words per row block instead of the step's 24 live across it): the registers this
        frees let ptxas keep the wgmmas in flight while the next tile decodes (with the whole chunk
        in registers, rb = 2, nt = 16 needs ~254 and ptxas serializes every wgmma: C7511)."""
        wsrc = w_slot(base, self.act_stage_bytes, warp, self.rb)
        for kt in cutlass.range_constexpr(4):
            self._mma_tile(acc, self.staged_blocks(wsrc, kt, lane), base, kt)
        self._settle(acc)

    @cute.jit
    def wg_chunk(self, acc, aw, sw, sbase):
        """One 256-wide K step: B (activations) at shared address sbase, A from aw/sw."""
        rb = self.rb
        for kt in cutlass.range_constexpr(4):
            regs = []
            for r in cutlass.range_constexpr(rb):
                sp = quad_scales(sw[kt, r])
                for b in cutlass.range_constexpr(4):
                    regs.append(self.decode(aw[b, kt, r], sp[b]))
            self._mma_tile(acc, regs, sbase, kt)
        self._settle(acc)

    # Plain Python helpers, unrolled while the two chunk bodies above are traced (both chunk
    # forms issue the same wgmmas; they differ only in where the weight words come from).
    def _mma_tile(self, acc, regs, sbase, kt):
        """The wgmmas of k64 tile `kt`: decoded A fragments `regs` (rb row blocks x 4 k16 blocks)
        times the activations at shared address sbase, committed as one group."""
        bt, rb, m = self.bt, self.rb, self.bt // 2
        wg_fence()
        for r in range(rb):
            for b in range(4):
                desc = sw128_desc(sbase + kt * (bt * 128) + b * 32)
                new = wgmma_rs([acc[i, r] for i in range(m)], regs[r * 4 + b], desc, bt)
                for i in range(m):
                    acc[i, r] = new[i]
        wg_commit()

    def _settle(self, acc):
        """Wait for every wgmma group, then fence the accumulators before registers are read."""
        m = self.bt // 2
        wg_wait(0)
        for r in range(self.rb):
            vals = hold([acc[i, r] for i in range(m)])
            for i in range(m):
                acc[i, r] = vals[i]


__all__ = ["WgmmaMainloop"]
