"""Nvfp4Linear: a dense NVFP4 linear layer served from the artifact store (no cutlass, no JIT).

Hopper (sm_90a): our w4a16_gemm (kernels/w4a16) for every M; where the store also holds
quack_w4a16_gemm for this (N, K) (one global scale) or quack_w4a16_rowalpha_gemm (several, e.g.
q_a + kv: per-row alpha), M above QUACK_FROM (QUACK_FROM_ROW_ALPHA) goes to quack's WGMMA
kernel instead (ours is a decode kernel: bandwidth-bound at small M, see docs/PERFORMANCE.md). Blackwell (sm_100a) needs activation quantization + the block-scaled
GEMM: not served by this class yet (it raises, naming what is missing).

Graph safety: __call__ allocates only the output when none is given (the caller's allocator:
the graph pool under capture), never syncs, and launches on the current stream. Buckets of
quack's op built with serial split-K (split_k > 1: M up to a few hundred on narrow layers) take
caller-owned flags + workspace: the layer allocates them once, sized for max_tokens, from the
kernels' signatures (runtime/scratch.py), zeroed (the kernel leaves the flags zero after every
call); so one layer must not run on two streams at once.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from .declare import OpDecl, covered, missing_ops, open_ops  # noqa: F401  (covered re-exported)
from .errors import MissingVariantError
from .scratch import OpScratch
from .weights import operands, parts_to_rows, row_alpha  # noqa: F401  (parts_to_rows re-exported)

# M above which quack's WGMMA kernel beats our mma.sync decode kernel, measured on an H200
# (docs/PERFORMANCE.md, 2026-12-02): every shape crosses over between 32 and 33 (our kernel's
# M = 33 bucket costs 1.5x its M = 32 one); the two-scale q_a + kv (N = 2048: only 32 quack CTAs
# of 64 rows at small M) does too since quack's split-K (64 before: 0.56x torch at M = 64, now 0.74x).
QUACK_FROM = 32
QUACK_FROM_ROW_ALPHA = 32


class Nvfp4Linear:
    @classmethod
    def ops(cls, n: int, k: int, arch: str, *, quack: bool = True, one_scale: bool = True) -> list[OpDecl]:
        """The ops a dense NVFP4 GEMM [N, K] needs on `arch` (see runtime/declare.py). sm_90a:
        w4a16_gemm for every M, or only up to the quack threshold when `quack` and the store has
        quack's kernel for this layer: quack_w4a16_gemm above QUACK_FROM for one global scale,
        quack_w4a16_rowalpha_gemm above QUACK_FROM_ROW_ALPHA for several (`one_scale` False).
        sm_100a: activation quantize + global scale per input width and quack_nvfp4_gemm,
        planned for the block-scaled path this class does not serve yet."""
        p = {"n": n, "k": k}
        if arch == "sm_90a":
            qfam, qfrom = ("quack_w4a16_gemm", QUACK_FROM) if one_scale else ("quack_w4a16_rowalpha_gemm", QUACK_FROM_ROW_ALPHA)
            scales = "one global scale" if one_scale else "several global scales: per-row alpha"
            return [
                # the input comes from the model: natural K (act_order spelled: the store's op ids do)
                OpDecl("op", "w4a16_gemm", {**p, "act_order": "natural"}, "tokens", f"Nvfp4Linear (runtime/linear.py) for M <= {qfrom} (layers with "
                       f"{scales}); every M without quack's kernel for the layer",
                       keyed="gemm", weights="weight", m_upto=qfrom if quack else None, runner="Nvfp4Linear"),
                *([OpDecl("quack_op", qfam, p, "tokens", f"Nvfp4Linear for M > {qfrom} (layers with {scales})",
                          keyed="gemm", weights="weight", optional=True, m_above=qfrom, runner="Nvfp4Linear")]
                  if quack else []),
            ]
        if arch == "sm_100a":
            act = f"activations entering the NVFP4 x NVFP4 GEMMs with input width {k} (Hopper's W4A16 takes bf16)"
            return [
                OpDecl("quantize", "nvfp4_quantize", {"k": k, "sf_layout": "swizzled"}, "tokens", act, keyed="input"),
                OpDecl("global_scale", "nvfp4_global_scale", {"k": k}, "tokens", act, keyed="input"),
                OpDecl("op", "quack_nvfp4_gemm", p, "tokens", "", keyed="gemm", weights="weight"),
            ]
        return []

    def __init__(self, store, weight: torch.Tensor, weight_scale: torch.Tensor, weight_scale_2: torch.Tensor, *,
                 max_tokens: int, part_sizes: Sequence[int] | None = None, device: Any = None):
        if store.arch != "sm_90a":
            raise MissingVariantError(
                f"Nvfp4Linear serves sm_90a (W4A16) only; {store.arch} needs NVFP4 activation quantization and the "
                "block-scaled GEMM path, which is built (quack_nvfp4_gemm) but has no runtime wrapper yet")
        device = torch.device(device or "cuda")
        self.n, self.k = weight.shape[0], weight.shape[1] * 2
        self.max_tokens = max_tokens
        # one prepared copy (quack's nvfp4 layout) feeds w4a16_gemm and quack's kernel alike
        q = operands(weight.to(device), weight_scale.to(device), "w4a16")
        self.w = (q["blob"], q["strip"])
        self.alpha = row_alpha(weight_scale_2, self.n, part_sizes, device)
        # one global scale: quack's scalar-alpha kernel; several (q_a + kv): its per-row-alpha twin
        one_scale = self.alpha.numel() > 0 and bool((self.alpha == self.alpha[0]).all())
        self.quack_op = None
        self.decls = open_ops(self, store, self.ops(self.n, self.k, store.arch, one_scale=one_scale))
        self.quack = None
        if self.quack_op is None:  # not in the store: w4a16_gemm serves every M
            self.decls = self.ops(self.n, self.k, store.arch, quack=False, one_scale=one_scale)
        else:
            self.quack = (self.quack_op, *self.w, self.alpha[:1].clone() if one_scale else self.alpha)
            self.quack_scratch = OpScratch(self.quack_op, max_tokens, device)
            if device.type == "cuda" and self.quack_scratch.buffers:
                _check_split_k_residency(self.quack_op, max_tokens, device)
        self.quack_from = QUACK_FROM if one_scale else QUACK_FROM_ROW_ALPHA
        self.device = device

    def missing(self, token_counts: Iterable[int]) -> list[str]:
        return missing_ops(self, self.decls, token_counts)

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None, check: bool | str = True) -> torch.Tensor:
        m = x.shape[0]
        if out is None:
            out = torch.empty((m, self.n), dtype=torch.bfloat16, device=x.device)
        if self.quack is not None and m > self.quack_from:
            qop, blob, strip, alpha = self.quack
            qop(x, blob, strip, alpha, out, *self.quack_scratch(m), check=check)
        else:
            self.op(x, *self.w, self.alpha, out, check=check)
        return out


def _check_split_k_residency(op: Any, max_tokens: int, device: Any) -> None:
    """quack's serial split-K spins on flags set by other CTAs of its persistent grid (sm_count
    CTAs): all must be resident at once (kernels/quack_w4a16 docstring), so the device must have
    at least sm_count SMs."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    for lo, hi in op.bucket_edges():
        if lo <= max_tokens and op.scratch(hi):
            want = op.kernel_for(hi).record["params"].get("sm_count", 0)
            if want > sms:
                raise MissingVariantError(
                    f"{op.name}: the split-K variant of bucket [{lo}, {hi}] runs sm_count={want} persistent CTAs that must "
                    f"all be resident, but {device} has {sms} SMs: build the store with sm_count <= {sms} for this device")
