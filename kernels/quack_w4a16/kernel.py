"""Compile side of quack_w4a16_gemm: quack-kernels 0.6.5's SM90 W4A16 GEMM behind a flat,
all-tensor @cute.jit entry point that cute.compile can trace on a CPU box.

What quack's own host path (quack.gemm_w4.gemm_w4a16 -> EpiMod.gemm -> gemm_runtime.host.
_compile_gemm_epi -> compile_gemm_kernel) does, and what this module does instead:
  * kernel class: the same, minted from quack's own epilogue `gemm_w4._w4a16_alpha`
    (D = acc * alpha) with alpha in device-pointer mode; the same GemmSm90 ctor arguments
    (fp32 acc, bf16 MMA, tile (tile_m, tile_n, 64), cluster (1, cluster_n, 1), cooperative,
    persistent, transform_a = the "nvfp4" PackedFormatMod) and the same trace flags
    (cd_transposed: out crosses as (M, N) row-major, the kernel writes D = (N, M) m-major).
  * operands: quack crosses a TransformAOperand of 6-D / 5-D *views* of the prepared blob and
    strip; here blob/strip cross as the contiguous tensors prepare_weights returns and the
    identical views are rebuilt at trace time. Their (shape, stride) come from quack's own
    `operand_transform.host._w4_views` applied to meta tensors, so they match by construction.
  * alpha: a 1-element fp32 tensor whose data pointer feeds the Scalar op (quack: a Python
    float or a device pointer; the project's exported functions take tensors only).
  * scheduler: max_active_clusters is a compile-time constant (sm_count // cluster_n) instead
    of a per-process device query. It only sizes the persistent grid: without split-K any
    positive value is correct, the SM count of the part is fastest; with split-K the grid must
    be co-resident (the family docstring says why; Nvfp4Linear checks the device's SM count).
  * split-K (SERIAL): quack's host path allocates the flag / workspace buffers per call and
    crosses permuted views (sem.permute(1, 2, 0), ws.permute(3, 1, 2, 0)) typed as fully
    symbolic tensors; here the caller's contiguous [1, tm, tn] / [1, tm, tn, E] buffers cross
    with the same symbolic types and the same permutations are applied at trace time.
With these, the generated PTX is byte-identical to quack's own compile path for the same
config (tests/kernels/test_quack_w4a16.py::test_device_code_identical_to_quack_host_path), and
the host side differs only in where the operand views and the two scheduler scalars come from.

Two process-wide side effects of importing quack, both unavoidable and both quack's own:
quack.dsl patches CuTe's tensor classes (`:`/`...` indexing sugar, .to/.clone/.contiguous)
and teaches the AST preprocessor mixed constexpr/dynamic `if` tests. They stay in the build
worker for its later jobs; quack documents both as leaving other code unchanged, and an
nvfp4_quantize variant built after a quack variant in the same worker is byte-identical to
one built alone (checked once by hand).
"""

from __future__ import annotations


from ..quack_support import import_quack_package, scheduler_options, set_trace_flags  # noqa: E402

import_quack_package()

from ..dsl import fake_row_major, fake_stream  # noqa: E402  (after quack.dsl: its patches come first)
from ..hopper import answer_device_queries  # noqa: E402

import cutlass.cute as cute  # noqa: E402
import torch  # noqa: E402
from cutlass import BFloat16, Float32, Int32, Uint8  # noqa: E402
from quack.epilogue.frontend import gemm_epilogue  # noqa: E402
from quack.compile_utils import make_fake_tensor  # noqa: E402
from quack.epilogue.ops import RowVecLoad  # noqa: E402
from quack.gemm_config import SplitKMode  # noqa: E402
from quack.gemm_w4 import _w4a16_alpha  # noqa: E402
from quack.operand_transform.host import _w4_views, as_transform_mod  # noqa: E402
from quack.operand_transform.transform import TransformAOperand  # noqa: E402
from quack.rounding import RoundingMode  # noqa: E402

FORMAT = "nvfp4"
# EpiMod._mint key of quack's own W4A16 call: one Scalar operand "alpha", SM90, element mode,
# no packed C, no prepass, round-to-nearest, default arg forms, plain store (no add-to-output).
_MINT_KEY = ((("alpha", "scalar"),), 9, False, False, (), RoundingMode.RN, (), False)


# Per-row alpha (one fp32 per output feature: a fused projection with several global scales,
# e.g. q_a + kv). In the caller's (M, N) orientation alpha is a row vector; quack's trace with
# a layout-owning transform writes D = (N, M), where it is the kernel's column vector: the mint
# key below is what EpiMod.gemm derives for this epilogue (its "pin flip"), and _mint turns
# the RowVecLoad pin into a ColVecLoad on the kernel's M (= our N) side. Exact: one fp32
# multiply of the accumulator, as with the scalar alpha.
@gemm_epilogue(ops={"alpha": RowVecLoad("alpha")})
def w4a16_row_alpha(acc, alpha):
    return {"D": acc * alpha}


_ROW_MINT_KEY = ((("alpha", "col"),), 9, False, False, (), RoundingMode.RN, (), False)


def operand_views(n: int, k: int, tile_m: int) -> tuple[tuple, tuple]:
    """((shape, stride) of the blob view, (shape, stride) of the strip view) that quack's
    host layer would build from prepare's [N/64, K/64, 128, 16] / [N/64, K/64, 32, 4, 2]."""
    fmt = as_transform_mod(FORMAT).owned_fmt
    g, kt = n // 64, k // fmt.tile_k
    blob = torch.empty((g, kt, 128, 16), dtype=torch.uint8, device="meta")
    strip = torch.empty((g, kt, 32, 4, 2), dtype=torch.uint8, device="meta")
    a, s = _w4_views(fmt, blob, strip, tile_m)
    return (tuple(a.shape), tuple(a.stride())), (tuple(s.shape), tuple(s.stride()))


def make_w4a16_gemm(gemm_cls, tile_m: int, tile_n: int, cluster_n: int, use_pdl: bool, **split_kw):
    """quack's W4A16 GemmSm90 as its compile_gemm_kernel constructs it (fp32 acc, bf16 MMA, tile
    (tile_m, tile_n, 64), cluster (1, cluster_n, 1), cooperative, persistent, the nvfp4 transform
    on A), trace flags set; split_kw only when split-K (the ctor's default is 1)."""
    transform = as_transform_mod(FORMAT)
    assert transform.owned_fmt.tile_k == 64 and transform.owned_fmt.sf_bytes == 256, "quack nvfp4 layout moved"
    gemm = gemm_cls(
        Float32,  # accumulator
        transform.owned_fmt.mma_dtype,  # bf16: what the nvfp4 decode produces
        (tile_m, tile_n, transform.owned_fmt.tile_k),
        (1, cluster_n, 1),
        pingpong=False,  # W4 is cooperative only
        is_persistent=True,
        use_pdl=use_pdl,
        transform_a=transform,
        gather_A=False,
        concat_layout=None,
        **split_kw,
    )
    return set_trace_flags(gemm, cd_transposed=True)  # a layout-owning transform writes D = out^T


def transform_operand(blob: cute.Tensor, strip: cute.Tensor, views: tuple) -> TransformAOperand:
    """quack's A operand: the contiguous blob / strip re-viewed as operand_views says (trace time)."""
    (a_shape, a_stride), (s_shape, s_stride) = views
    return TransformAOperand(
        cute.make_tensor(blob.iterator, cute.make_layout(a_shape, stride=a_stride)),
        cute.make_tensor(strip.iterator, cute.make_layout(s_shape, stride=s_stride)),
    )


class W4A16Gemm:
    """out[M, N] = bf16((act[M, K] @ dequant(blob, strip)^T) * alpha), one compiled variant."""

    def __init__(self, n: int, k: int, tile_m: int, tile_n: int, cluster_n: int,
                 max_swizzle_size: int, use_pdl: bool, sm_count: int, row_alpha: bool = False,
                 split_k: int = 1):  # fmt: skip
        self.row_alpha = row_alpha
        # quack's compile_gemm_kernel passes split_k only when != 1 (the ctor default is 1)
        split_kw = {"split_k": split_k, "split_k_mode": SplitKMode.SERIAL} if split_k != 1 else {}
        self.gemm_cls = w4a16_row_alpha._mint(*_ROW_MINT_KEY) if row_alpha else _w4a16_alpha._mint(*_MINT_KEY)
        self.gemm = make_w4a16_gemm(self.gemm_cls, tile_m, tile_n, cluster_n, use_pdl, **split_kw)
        self.blob_view, self.strip_view = operand_views(n, k, tile_m)
        self.max_active_clusters = sm_count // cluster_n
        self.max_swizzle_size = max_swizzle_size

    @cute.jit
    def __call__(self, act: cute.Tensor, blob: cute.Tensor, strip: cute.Tensor, alpha: cute.Tensor,
                 out: cute.Tensor, stream):  # fmt: skip
        self._trace(act, blob, strip, alpha, out, None, None, stream)

    def _trace(self, act, blob, strip, alpha, out, flags, workspace, stream) -> None:
        """Plain Python, run once while cute.compile traces __call__ (so the device-query
        patch is scoped to exactly the DSL code that needs it)."""
        operand = transform_operand(blob, strip, (self.blob_view, self.strip_view))
        # Scalar op in pointer mode, or the per-row vector (cp.async'd into shared memory per tile)
        split = {}
        if flags is not None:
            # quack: sem (L, tm, tn) -> permute(1, 2, 0); ws (L, tm, tn, E) -> permute(3, 1, 2, 0)
            split = {"split_k_semaphore": cute.make_tensor(flags.iterator, cute.select(flags.layout, mode=[1, 2, 0])),
                     "split_k_workspace": cute.make_tensor(workspace.iterator, cute.select(workspace.layout, mode=[3, 1, 2, 0]))}
        epi = self.gemm_cls.EpilogueArguments(alpha=alpha if self.row_alpha else alpha.iterator, **split)
        sched = scheduler_options(self.max_active_clusters, self.max_swizzle_size)
        # the DSL reads the shared memory per SM while tracing a launch with min_blocks_per_mp > 1
        # (quack's 2-CTA/SM decode config, tile_n <= 32) to derive the carveout: no GPU here
        with answer_device_queries("quack_w4a16"):
            # (mA, mB, mD, mC, epilogue_args, scheduler_args, varlen_args, stream, mSFA, mSFB)
            self.gemm(operand, act, out, None, epi, sched, None, stream, None, None)


class W4A16SplitKGemm(W4A16Gemm):
    """The serial split-K variant: two more tensor arguments (flags, workspace)."""

    @cute.jit
    def __call__(self, act: cute.Tensor, blob: cute.Tensor, strip: cute.Tensor, alpha: cute.Tensor,
                 out: cute.Tensor, flags: cute.Tensor, workspace: cute.Tensor, stream):  # fmt: skip
        self._trace(act, blob, strip, alpha, out, flags, workspace, stream)


def fake_scratch() -> tuple:
    """Fake (flags, workspace): the types quack's host path gives its split-K buffers (symbolic
    shapes, symbolic strides except the contiguous one; workspace 16-byte aligned), in the
    caller's row-major (L, tm, tn[, E]) order (kernel.py permutes them at trace time)."""
    return (
        make_fake_tensor(Int32, (cute.sym_int(), cute.sym_int(), cute.sym_int()), leading_dim=2),
        make_fake_tensor(Float32, tuple(cute.sym_int() for _ in range(4)), leading_dim=3, divisibility=4),
    )


def fake_args(n: int, k: int, row_alpha: bool = False, split_k: int = 1, experts: int | None = None) -> tuple:
    """Fake (act, blob, strip, alpha, [offsets,] out, [flags, workspace,] stream) of the dense
    entry points and (experts given) the grouped one (grouped.py): M symbolic (shared by act and
    out), the rest static, all row-major compact; alignments as the runtime signatures promise;
    the split-K scratch as fake_scratch says. Grouped: blob / strip / alpha per expert."""
    m = cute.sym_int()
    g, kt = n // 64, k // 64
    lead = (experts,) if experts else ()
    alpha = (experts, n) if experts else (n,) if row_alpha else (1,)
    return (
        fake_row_major(BFloat16, (m, k), 16),
        fake_row_major(Uint8, (*lead, g, kt, 128, 16), 16),
        fake_row_major(Uint8, (*lead, g, kt, 32, 4, 2), 16),
        fake_row_major(Float32, alpha, 4),
        *((fake_row_major(Int32, (experts + 1,), 4),) if experts else ()),
        fake_row_major(BFloat16, (m, n), 16),
        *(fake_scratch() if split_k > 1 else ()),
        fake_stream(),
    )


def make_kernel(p, row_alpha: bool = False) -> W4A16Gemm:
    cls = W4A16SplitKGemm if p.split_k > 1 else W4A16Gemm
    return cls(p.n, p.k, p.tile_m, p.tile_n, p.cluster_n, p.max_swizzle_size, p.use_pdl, p.sm_count,
               row_alpha, p.split_k)
