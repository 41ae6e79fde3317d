"""Compile side of quack_nvfp4_gemm / quack_nvfp4_grouped_gemm: quack-kernels 0.6.5's SM100
block-scaled GEMM (GemmSm100, tcgen05 kind::mxf4nvf4) behind flat all-tensor @cute.jit entry
points that cute.compile can trace on a CPU box.

What quack's host path (quack.gemm.gemm -> _compile_gemm -> compile_gemm_kernel) does, and what
this module does instead:
  * kernel class, constructor and trace call: the same (GemmDefaultSm100 for dense; for grouped a
    subclass whose one epilogue op reads alpha[expert], see ExpertAlphaGemmSm100), fp32
    accumulator, sf_vec_size 16, A/B/MMA dtype Float4E2M1FN, tile (tile_m, tile_n), cluster
    (cluster_m, cluster_n, 1), CLC or static persistence, and the positional trace call
    (mA, mB, mD, mC, epilogue_args, scheduler_args, varlen_args, stream, mSFA, mSFB).
  * operands: quack's fakes are fp4 / fp8 tensors with symbolic N, K and strides; here A, B and
    the scales cross as the project's uint8 buffers (what nvfp4_quantize writes: packed codes
    [rows, K/2], swizzled scale bytes [round_up(rows, 128), K/16]) with static N, K, and are
    reinterpreted at trace time: codes -> Float4E2M1FN (rows, K), scales -> Float8E4M3FN
    (rm, rk, 32, 4, 4) blocked atoms. The byte layouts are identical (tests check the swizzle
    against quack's packer), so no data moves.
  * alpha: a device tensor. Dense: 1 element, fed to quack's Scalar op in pointer mode (as
    quack.gemm.gemm(alpha=<tensor>) does). Grouped: E elements, alpha[e] per expert.
  * scheduler: max_active_clusters is a compile-time constant (sm_count // cluster size), used
    only by the static persistent grid (a CLC grid is sized by the tile count). Any positive
    value is correct (no inter-CTA waits without split-k); too large only adds a wave.
  * host checks: quack's validate_blockscaled_sf does not run; the family signature (checked by
    the exported function and the runtime) states the same shapes. No split-k (it needs a zeroed
    per-call semaphore workspace, a contract scratch arguments do not express).
  * grouped out: its row stride crosses as a symbol and N reaches quack as a runtime value
    (_ragged_safe_out), which quack's varlen D store needs; the shape is still checked.
  * grouped scale rows: quack's varlen_m SFA convention puts expert b's scale tiles at tile
    offsets[b] // 128 + b (a gap tile per expert, for unpadded experts). This project pads every
    expert to 128 rows, so the scales are one nvfp4_quantize output with expert b at tile
    offsets[b] // 128; patch_sfa_offsets drops the "+ b" while the kernel is traced.
Importing quack runs quack.dsl's process-wide DSL patches (as quack_w4a16 documents); the SFA
patch is undone after each trace. An nvfp4_quantize variant traced after a grouped one in the
same process has byte-identical PTX (checked once by hand).
"""

from __future__ import annotations

import contextlib

from ..quack_support import import_quack_package, scheduler_options, set_trace_flags  # noqa: E402

import_quack_package()

from ..dsl import fake_row_major, fake_stream  # noqa: E402  (after quack.dsl: its patches come first)

import cutlass  # noqa: E402
import cutlass.cute as cute  # noqa: E402
from cutlass import BFloat16, Float4E2M1FN, Float8E4M3FN, Float32, Int32, Uint8  # noqa: E402
from cutlass.cute.runtime import make_fake_tensor  # noqa: E402
from quack.epilogue.ops import Scalar  # noqa: E402
from quack.gemm_default_epi import GemmDefaultSm100  # noqa: E402
from quack.varlen_utils import VarlenArguments, VarlenManager  # noqa: E402

from nvfp4_aot.runtime.nvfp4 import SF_BLOCK as SF_VEC  # noqa: E402  (one E4M3 scale per 16 along K)

SF_ATOM_ROWS = 128  # one blocked scale atom: 128 rows x 4 scale columns = 512 bytes
SF_ATOM_BYTES = 512


class ExpertScalar(Scalar):
    """alpha[e] of the tile's expert, read once per output tile from an fp32 tensor [E].
    ctx.batch_idx is the expert under varlen_m (tile_coord_mnkl[3])."""

    @cute.jit
    def begin(self, gemm, param, smem_tensor, ctx):
        return param[ctx.batch_idx]


class ExpertAlphaGemmSm100(GemmDefaultSm100):
    """GemmDefaultSm100 with alpha per expert: D = acc * alpha[e]. The multiply is the one in
    quack's apply_linear_epilogue; only the source of the scalar changes."""

    _epi_ops = (ExpertScalar("alpha"),)

    @cute.jit
    def epi_visit_subtile(self, params, epi_loop_tensors, tRS_rD, tRS_rC=None):
        tRS_rD.store(tRS_rD.load() * epi_loop_tensors["alpha"])
        return ()


@contextlib.contextmanager
def patch_sfa_offsets():
    """While tracing, expert b's scale rows start at tile offsets[b] // 128 (not quack's
    offsets[b] // 128 + b). Valid because offsets[b] % 128 == 0 for every b < E (the family's
    contract): the per-expert 128x4 swizzle tiles are then exactly the tiles of one swizzle of
    the whole padded buffer. Scoped to the trace so quack's own callers are unaffected."""
    real = VarlenManager.offset_batch_SFA

    def offset_batch_sfa(self, mSFA_mkl, batch_idx):
        assert self.varlen_m and not self.varlen_k, "only the varlen_m path is patched"
        offset_tile = self.params.cu_seqlens_m[batch_idx] // SF_ATOM_ROWS
        return cute.domain_offset(((None, offset_tile), None), mSFA_mkl)

    VarlenManager.offset_batch_SFA = offset_batch_sfa
    try:
        yield
    finally:
        VarlenManager.offset_batch_SFA = real


def _row_major(shape: tuple) -> tuple:
    """Row-major strides; every dim but the first is static, so every stride is."""
    strides, acc = [], 1
    for d in reversed(shape[1:]):
        strides.append(acc)
        acc *= d
    return (acc, *reversed(strides))


def _fp4_view(t: cute.Tensor, shape: tuple) -> cute.Tensor:
    """uint8 packed codes (..., K/2) -> Float4E2M1FN (..., K), row-major. Element 2j is the low
    nibble of byte j in both the project's format and the fp4 tensor view (torch's x2 packing)."""
    ptr = cute.recast_ptr(t.iterator, dtype=Float4E2M1FN)
    return cute.make_tensor(ptr, cute.make_layout(shape, stride=_row_major(shape)))


def _sf_view(t: cute.Tensor, lead: tuple, rows, k: int) -> cute.Tensor:
    """uint8 swizzled scales [rows, K/16] (rows a multiple of 128) -> Float8E4M3FN blocked
    (*lead, rows/128, K/64, 32, 4, 4) with the hardware atom (32, 4, 4):(16, 4, 1) contiguous.
    Byte m*K/16 + c of the swizzled buffer is atom (m // 128, c // 4) at 16*(m%32) +
    4*((m%128)//32) + c%4: the layout swizzle_sf writes, spelled as strides."""
    rk = k // (4 * SF_VEC)
    rm = rows // SF_ATOM_ROWS
    tile = rk * SF_ATOM_BYTES  # bytes per 128-row stripe
    lead_strides = tuple(rm * tile for _ in lead)  # (E,) experts, or (1,): varlen_m SFA
    layout = cute.make_layout((*lead, rm, rk, 32, 4, 4), stride=(*lead_strides, tile, SF_ATOM_BYTES, 16, 4, 1))
    return cute.make_tensor(cute.recast_ptr(t.iterator, dtype=Float8E4M3FN), layout)


def _ragged_safe_out(out: cute.Tensor, n: int) -> cute.Tensor:
    """The grouped D view handed to quack. quack stores varlen D through a "ragged" TMA view of
    shape (2^30, N, 2^31 - 1); with N a compile-time constant the DSL folds that size, overflows
    and aborts (or fails a later pass if N is a folded constant), so N must be a runtime value.
    out crosses with static shape (M, N) (checked by the exported function) and a symbolic row
    stride; min(row stride, N) is N for every non-overlapping out, and never addresses past a
    row otherwise."""
    row = out.stride[0]
    extent = cutlass.min(Int32(row), Int32(n))
    return cute.make_tensor(out.iterator, cute.make_layout((out.shape[0], extent), stride=(row, 1)))


class BlockScaledGemm:
    """One compiled variant of out = bf16(dequant(A) @ dequant(B)^T * alpha), dense or grouped."""

    def __init__(self, p, grouped: bool):
        self.grouped = grouped
        self.n, self.k = p.n, p.k
        self.experts = p.experts if grouped else 1
        cls = ExpertAlphaGemmSm100 if grouped else GemmDefaultSm100
        self.gemm_cls = cls
        # compile_gemm_kernel's SM100 construction for a block-scaled call
        self.gemm = set_trace_flags(cls(
            Float32,  # accumulator (tcgen05 block-scaled MMA accumulates in f32 only)
            Float4E2M1FN,  # a_dtype (ignored by GemmSm100, passed as quack does)
            (p.tile_m, p.tile_n),  # K tile = 4 MMA instructions of K 64 (kind::mxf4nvf4)
            (p.cluster_m, p.cluster_n, 1),
            sf_vec_size=SF_VEC,
            gather_A=False,
            use_tma_gather=False,
            use_clc_persistence=p.clc,
            concat_layout=None,
            use_pdl=p.use_pdl,
            a_mma_dtype=Float4E2M1FN,
            b_mma_dtype=Float4E2M1FN,
        ), cd_transposed=False)
        self.max_active_clusters = p.sm_count // (p.cluster_m * p.cluster_n)
        self.max_swizzle_size = p.max_swizzle_size

    @cute.jit
    def dense_call(self, a: cute.Tensor, a_sf: cute.Tensor, b: cute.Tensor, b_sf: cute.Tensor,
              alpha: cute.Tensor, out: cute.Tensor, stream):  # fmt: skip
        self._trace(a, a_sf, b, b_sf, None, alpha, out, stream)

    @cute.jit
    def grouped_call(self, a: cute.Tensor, a_sf: cute.Tensor, b: cute.Tensor, b_sf: cute.Tensor,
                     offsets: cute.Tensor, alpha: cute.Tensor, out: cute.Tensor, stream):  # fmt: skip
        self._trace(a, a_sf, b, b_sf, offsets, alpha, out, stream)

    def _trace(self, a, a_sf, b, b_sf, offsets, alpha, out, stream) -> None:
        """Plain Python run once while cute.compile traces the entry point."""
        n, k, e = self.n, self.k, self.experts
        mA = _fp4_view(a, (a.shape[0], k))
        if self.grouped:
            mB = _fp4_view(b, (e, n, k))  # batch-first, rotated to (n, k, e) by quack
            mSFA = _sf_view(a_sf, (1,), a_sf.shape[0], k)  # varlen_m: one M-padded buffer
            mSFB = _sf_view(b_sf, (e,), n, k)
            varlen = VarlenArguments(mCuSeqlensM=offsets)
            epi = self.gemm_cls.EpilogueArguments(alpha=alpha)  # ExpertScalar reads alpha[e]
            out = _ragged_safe_out(out, n)
        else:
            mB = _fp4_view(b, (n, k))
            mSFA = _sf_view(a_sf, (), a_sf.shape[0], k)  # unbatched 5-D: quack prepends L
            mSFB = _sf_view(b_sf, (), n, k)
            varlen = None
            epi = self.gemm_cls.EpilogueArguments(alpha=alpha.iterator)  # Scalar, pointer mode
        sched = scheduler_options(self.max_active_clusters, self.max_swizzle_size)
        with patch_sfa_offsets() if self.grouped else contextlib.nullcontext():
            # (mA, mB, mD, mC, epilogue_args, scheduler_args, varlen_args, stream, mSFA, mSFB)
            self.gemm(mA, mB, out, None, epi, sched, varlen, stream, mSFA, mSFB)


def fake_args(p, grouped: bool) -> tuple:
    """Fakes in signature order, then the env stream. M (token rows) is symbolic and shared by
    a and out; the scale rows are their own symbol (round_up(M, 128), checked by the runtime);
    everything else is static. Alignments are the ones the signature promises (TMA: 16 B)."""
    m, m_sf = cute.sym_int(), cute.sym_int(divisibility=SF_ATOM_ROWS)
    n, k = p.n, p.k
    args = [fake_row_major(Uint8, (m, k // 2), 16), fake_row_major(Uint8, (m_sf, k // SF_VEC), 16)]
    if grouped:
        e = p.experts
        args += [fake_row_major(Uint8, (e, n, k // 2), 16), fake_row_major(Uint8, (e, n, k // SF_VEC), 16)]
        args += [fake_row_major(Int32, (e + 1,), 16), fake_row_major(Float32, (e,), 4)]
    else:
        args += [fake_row_major(Uint8, (n, k // 2), 16), fake_row_major(Uint8, (n, k // SF_VEC), 16)]
        args += [fake_row_major(Float32, (1,), 4)]
    if grouped:  # symbolic row stride: see _ragged_safe_out
        stride = (cute.sym_int64(divisibility=128 // BFloat16.width), 1)
        out = make_fake_tensor(BFloat16, (m, n), stride=stride, assumed_align=16)
    else:
        out = fake_row_major(BFloat16, (m, n), 16)
    args += [out, fake_stream()]
    return tuple(args)


def make_kernel(p, grouped: bool):
    g = BlockScaledGemm(p, grouped)
    return g.grouped_call if grouped else g.dense_call

