"""Compile side of quack_w4a16_grouped_gemm: quack 0.6.5's persistent, warp-specialized SM90
W4A16 GEMM (TMA + mbarrier pipeline + WGMMA with the NVFP4 weights decoded in registers) run
over MoE expert groups, built from quack's parts without changing them.

    out[r, :] = bf16((act[r, :] @ W_e^T) * alpha[e, :])   for offsets[e] <= r < offsets[e + 1]

How the grouped problem is laid onto quack's dense kernel (kernel M = weight rows, kernel N =
tokens, D written transposed, exactly as the dense adapter in kernel.py):
  * A (the transform-owned 4-bit operand) is every expert's weights stacked along the weight
    rows: the [E, N/64, K/64, ...] blob viewed as one [E*N/64, K/64, ...] blob, so weight tile
    m of expert e is kernel M tile `e * MT + m` (MT = N / tile_m). Same for the scale strip.
  * B is the whole activation buffer (rows sorted by expert), D the whole output, both L = 1.
  * The tile scheduler (GroupedTileScheduler) walks work = (token tile j, weight tile m),
    m fastest, over the token tiles that hold rows (offsets[E] / tile_n, read on the device:
    fixed grid, no host sync, graph safe; idle experts own no token tile and cost nothing).
    It finds the expert of token tile j from the offsets (the last e with offsets[e] <= j *
    tile_n) and hands the mainloop kernel M tile `e * MT + m`.
  * The epilogue sees one expert: D is stored at weight tile `m` (epilog_gmem_copy_and_partition
    takes the global tile back modulo MT) and the per-row alpha op reads alpha[e, :] at tile m
    (epi_begin hands it the alpha pointer advanced by e * N: quack's frontend gives the op a
    vector of D's extent N, so indexing it by the global tile would zero-fill alpha).
Contract (the runtime's route kernel with pad = tile_n produces it): offsets[0] = 0, monotone,
every offsets[e] a multiple of tile_n, offsets[E] <= rows of act. Then each token tile belongs
to one expert. Rows in an expert's padding are computed like real rows (their values are
whatever act holds there) and must be ignored by the caller. With offsets that break the
contract the results are wrong but every access stays in bounds: the expert index is clamped
to [0, E-1], the token tiles to the rows of act, and TMA clips the last partial tile.
PDL is off: the scheduler reads offsets (written by the previous kernel) in every warp.
"""

from __future__ import annotations

import dataclasses

from ..quack_support import import_quack_package, scheduler_options  # noqa: E402

import_quack_package()

import cutlass  # noqa: E402
import cutlass.cute as cute  # noqa: E402
from cutlass import Int32, const_expr  # noqa: E402
from quack.tile_scheduler import TileScheduler, WorkTileInfo  # noqa: E402

from ..hopper import answer_device_queries  # noqa: E402
from .kernel import (  # noqa: E402
    _ROW_MINT_KEY,
    fake_args as dense_fake_args,
    make_w4a16_gemm,
    operand_views,
    transform_operand,
    w4a16_row_alpha,
)


class GroupedTileScheduler(TileScheduler):
    """Static persistent scheduler over (token tile, weight tile) with the expert looked up
    from the device-side offsets, which ride in Params.batch_idx_permute (unused otherwise:
    L = 1). Subclassed per variant with the constants TILE_N and EXPERTS."""

    TILE_N = 0
    EXPERTS = 0

    @cute.jit
    def _delinearize_work_idx(self, work_idx, bidz=None, is_valid=None, *, block_zero_only=False,
                              loc=None, ip=None) -> WorkTileInfo:  # fmt: skip
        params = self.params
        offs = params.batch_idx_permute
        tile_n = const_expr(self.TILE_N)
        mt = params.problem_shape_ncluster_mnl[0]  # weight tiles per expert (cluster 1 x 1)
        nt_cap = params.problem_shape_ncluster_mnl[1]  # token tiles the buffer holds
        rows = offs[self.EXPERTS]
        n_tiles = cutlass.min(cutlass.max((rows + (tile_n - 1)) // tile_n, Int32(0)), nt_cap)
        valid = work_idx < n_tiles * mt
        pid_m = Int32(0)
        pid_n = Int32(0)
        if valid:
            j = work_idx // mt
            m = work_idx - j * mt
            row = j * tile_n
            e = Int32(0)
            for i in cutlass.range_constexpr(1, self.EXPERTS):
                if offs[i] <= row:
                    e = Int32(i)
            pid_m = e * mt + m
            pid_n = j
        return WorkTileInfo((pid_m, pid_n, None, Int32(0)), valid)


class W4A16GroupedGemm:
    """One compiled variant: (n, k, experts, tile_m, tile_n) static, rows symbolic."""

    def __init__(self, n: int, k: int, experts: int, tile_m: int, tile_n: int, max_swizzle_size: int,
                 sm_count: int):  # fmt: skip
        assert n % tile_m == 0, "weight tiles must not straddle experts"
        mt = n // tile_m
        sched_cls = type("GroupedTileScheduler_%d_%d" % (tile_n, experts), (GroupedTileScheduler,),
                         {"TILE_N": tile_n, "EXPERTS": experts})  # fmt: skip
        base = w4a16_row_alpha._mint(*_ROW_MINT_KEY)

        def _split(coord):
            """(expert, coordinate with the expert's own weight tile) of a global tile coordinate."""
            g = coord[0]
            e = g // mt
            return e, (g - e * mt, coord[1], coord[2], coord[3])

        class Gemm(base):
            def get_scheduler_class(self, varlen_m: bool = False):
                assert not varlen_m
                return sched_cls

            def epilog_gmem_copy_and_partition(self, atom, mD_mn, tile_shape_mn, epi_tile, sD, tile_coord_mnkl):
                # D holds one expert's N rows: global weight tile e * MT + m -> m
                _, local = _split(tile_coord_mnkl)
                return super().epilog_gmem_copy_and_partition(atom, mD_mn, tile_shape_mn, epi_tile, sD, local)

            def epi_begin(self, params, epi_smem_tensors, epi_tile, tiled_copy_t2r, tiled_copy_r2s, tile_coord_mnkl,
                          varlen_manager, epilogue_barrier, tidx, tRS_rD_layout=None):  # fmt: skip
                # The epilogue ops see one expert: local tile m, alpha from row e * N on. (The
                # frontend hands the alpha op a vector of D's extent N, so the global tile would
                # index past it and the predicated load would zero-fill alpha.)
                e, local = _split(tile_coord_mnkl)
                alpha = params.alpha
                params = dataclasses.replace(params, alpha=cute.make_tensor(alpha.iterator + e * n, alpha.layout))
                return super().epi_begin(params, epi_smem_tensors, epi_tile, tiled_copy_t2r, tiled_copy_r2s, local,
                                         varlen_manager, epilogue_barrier, tidx, tRS_rD_layout)  # fmt: skip

        self.gemm = make_w4a16_gemm(Gemm, tile_m, tile_n, 1, use_pdl=False)
        self.n, self.experts = n, experts
        # the stacked blob/strip is the dense layout of E * N weight rows
        self.blob_view, self.strip_view = operand_views(experts * n, k, tile_m)
        self.max_active_clusters = sm_count
        self.max_swizzle_size = max_swizzle_size

    @cute.jit
    def __call__(self, act: cute.Tensor, blob: cute.Tensor, strip: cute.Tensor, alpha: cute.Tensor,
                 offsets: cute.Tensor, out: cute.Tensor, stream):  # fmt: skip
        self._trace(act, blob, strip, alpha, offsets, out, stream)

    def _trace(self, act, blob, strip, alpha, offsets, out, stream) -> None:
        operand = transform_operand(blob, strip, (self.blob_view, self.strip_view))
        alpha_rows = cute.make_tensor(alpha.iterator, cute.make_layout(self.experts * self.n))
        epi = self.gemm.EpilogueArguments(alpha=alpha_rows)
        sched = scheduler_options(self.max_active_clusters, self.max_swizzle_size, batch_idx_permute=offsets)
        with answer_device_queries("quack_w4a16"):  # as the dense launch (kernel.py)
            self.gemm(operand, act, out, None, epi, sched, None, stream, None, None)


def fake_args(n: int, k: int, experts: int) -> tuple:
    """Fake (act, blob, strip, alpha, offsets, out, stream): rows symbolic, the rest static."""
    return dense_fake_args(n, k, experts=experts)


def make_kernel(p) -> W4A16GroupedGemm:
    return W4A16GroupedGemm(p.n, p.k, p.experts, p.tile_m, p.tile_n, p.max_swizzle_size, p.sm_count)
