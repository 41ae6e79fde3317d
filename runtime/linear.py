"""Nvfp4Linear: a dense NVFP4 linear layer served from the artifact store (no cutlass, no JIT).

Hopper (sm_90a): w4a16_gemm (kernels/w4a16, ours, mma.sync, the decode kernel: bandwidth-bound,
best at small M) serves small M. Above it, by default (`quack=True`), per layer shape: our
w4a16_ws_gemm (kernels/w4a16_ws: warp-specialized wgmma, tile table per (N, K) and token bucket in
kernels/w4a16_ws/tiles.py) on the M ranges tiles.WS_OVER_QUACK[(N, K)] where it measured at least
as fast as quack (H200, docs/PERFORMANCE.md from "session 6, wssmall" to "session 17": every M above 16 on
the five DeepSeek-V4 shapes, so their layers declare no quack kernel: ws_everywhere), quack's WGMMA kernel at
the other M (a shape not measured there): quack_w4a16_gemm for one global scale, its per-row-alpha twin for
several. `quack=False` serves w4a16_ws_gemm at every M above WS_FROM instead (above decode_upto(N, K)).
Where the store lacks one of the two upper kernels the other serves its range, and without either
w4a16_gemm serves every M. All read the one prepared copy (quack's nvfp4 blob +
strip); ours take the per-row alpha [N] for one- and two-scale layers alike. Blackwell (sm_100a) needs activation quantization + the block-scaled
GEMM: not served by this class yet (it raises, naming what is missing).

Graph safety: __call__ allocates only the output when none is given (the caller's allocator:
the graph pool under capture), never syncs, and launches on the current stream. Buckets built
with split-K (quack's serial split_k > 1, or w4a16_ws_gemm's last-arriver split_k > 1) take
caller-owned flags + workspace: the layer allocates them once, sized for max_tokens, from the
kernels' signatures (runtime/scratch.py), zeroed (the kernels leave the flags zero after every
call); so one layer must not run on two streams at once.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from ..kernels.w4a16_ws.tiles import DECODE_UPTO, WS_OVER_QUACK
from .declare import OpDecl, covered, missing_ops, open_ops  # noqa: F401  (covered re-exported)
from .errors import MissingVariantError
from .scratch import OpScratch
from .weights import BLOB_LAYOUT, operands, parts_to_rows, row_alpha  # noqa: F401  (parts_to_rows re-exported)
from .word_order import QUAD_PLACED, check_order

# M up to which w4a16_gemm (mma.sync decode) serves, measured on an H200. Session 5/6: ws's time
# is flat in M up to its 64-token tile while w4a16_gemm's M = 33 bucket costs 1.5x its M = 32
# one, so ws from 33 (docs/PERFORMANCE.md (r), "wssplit"). Session 7 (`wsmid` sweep at M = 17, 24,
# 32, one run): w4a16_gemm's 17-32 bucket is already slower than ws on q_a+kv (11.8-14.3 vs 10.6
# us), gate+up (32.1-39.5 vs 22.2-22.4) and q_b (58.8-62.1 vs 33.4-34.0), and than quack on every
# shape but q_a+kv (down 12.0-13.3 vs 10.5-10.7, o_b 8.9-9.9 vs 7.7-7.9, gate+up vs 21.0-21.6,
# q_b vs 44.8-45.0): so both upper kernels from 17. (quack=False: ws from 17 loses to w4a16_gemm
# on o_b at 17-24, 9.9 vs 8.9-9.5 us, and ties at 32; down 12.3 vs 12.0-13.3: one threshold.)
WS_FROM = 16  # Nvfp4Linear(quack=False): w4a16_gemm up to here, w4a16_ws_gemm above
# quack (the default upper kernel): M above which its WGMMA kernel (or ws on tiles.WS_OVER_QUACK's
# ranges) serves instead of w4a16_gemm (H200, session 7 sweep, above).
QUACK_FROM = 16
QUACK_FROM_ROW_ALPHA = 16
# The layer's blob word order when none is asked (word_order=None): "nibble". "rot" on an H200 over the
# five DeepSeek-V4 shapes (docs/PERFORMANCE.md "session 24"): 6-9% slower at M = 1 on gate+up and q_a+kv
# (the M <= 16 bar: not slower than today), ties above M = 128, faster at 16-64 on some shapes.
WORD_ORDER = "nibble"


def in_ranges(m: int, ranges) -> bool:
    """m in one of the ranges (lo, hi] of Nvfp4Linear.ws_ranges (hi None: no upper end)."""
    return any(lo < m and (hi is None or m <= hi) for lo, hi in ranges)


class Nvfp4Linear:
    @staticmethod
    def ws_ranges(n: int, k: int) -> tuple[tuple[int, int | None], ...]:
        """quack=True: the M ranges (lo, hi] above WS_FROM where w4a16_ws_gemm serves instead of
        quack (tiles.WS_OVER_QUACK; hi None: every M above lo; empty: quack serves every M above
        WS_FROM)."""
        return tuple((max(lo, WS_FROM), hi) for lo, hi in WS_OVER_QUACK.get((n, k), ())
                     if hi is None or hi > max(lo, WS_FROM))

    @staticmethod
    def decode_upto(n: int, k: int, word_order: str | None = None) -> int:
        """M up to which w4a16_gemm serves where w4a16_ws_gemm serves right above it (quack=False, or a layer that is
        ws_everywhere): WS_FROM, or the shape's measured threshold in tiles.DECODE_UPTO (session 17: 8 on q_a + kv
        and q_b; measured on staged split 'k', so not in word order "rotq", whose split 'k' reads natural rows
        straight from global memory). w4a16_ws_gemm serves every M above it (its tables' first rows start at M = 1)."""
        if (word_order or WORD_ORDER) in QUAD_PLACED:
            return WS_FROM
        return DECODE_UPTO.get((n, k), WS_FROM)

    @classmethod
    def ws_everywhere(cls, n: int, k: int) -> bool:
        """quack=True: ours measured at least as fast as quack at every M above WS_FROM (one range (WS_FROM, None)),
        so the layer declares no quack kernel and w4a16_ws_gemm is its upper kernel."""
        return cls.ws_ranges(n, k) == ((WS_FROM, None),)

    @classmethod
    def family_for(cls, n: int, k: int, m: int, *, one_scale: bool = True, quack: bool = True,
                   word_order: str | None = None) -> str:
        """The family that serves M rows on sm_90a when the store holds every op `ops` declares: the
        declarations' own edges (w4a16_gemm up to its m_upto, w4a16_ws_gemm on ws_ranges where it is
        declared, the upper kernel above), which __call__ follows on an instance
        (tests/runtime/test_linear_cpu.py checks the two agree). For benchmarks and planning tools."""
        decls = cls.ops(n, k, "sm_90a", one_scale=one_scale, quack=quack, word_order=word_order)
        if m <= decls[0].m_upto:
            return decls[0].family
        mid = [d for d in decls if d.attr == "mid_op"]
        if mid and in_ranges(m, cls.ws_ranges(n, k)):
            return mid[0].family
        return decls[-1].family

    @classmethod
    def ops(cls, n: int, k: int, arch: str, *, one_scale: bool = True, quack: bool = True,
            upper: bool = True, mid: bool = True, word_order: str | None = None) -> list[OpDecl]:
        """The ops a dense NVFP4 GEMM [N, K] needs on `arch` (see runtime/declare.py). sm_90a:
        w4a16_gemm for every M, or only up to a threshold with optional upper kernels above it
        (a store without them leaves w4a16_gemm every M; `upper` False declares that case): with
        `quack` (default) our w4a16_ws_gemm on the M ranges ws_ranges(n, k) (`mid` False leaves it
        out: the store lacks it) and quack_w4a16_gemm for one global scale, quack_w4a16_rowalpha_gemm
        for several (`one_scale` False), on the other M above WS_FROM; without `quack`, our
        w4a16_ws_gemm above WS_FROM. `word_order` (runtime/word_order.py, a problem key of our two
        families; None: WORD_ORDER): the blob word order the layer prepares; quack's kernels read
        "nibble" only, so any other order declares the `quack` False ops.
        sm_100a: activation quantize + global scale per input width and quack_nvfp4_gemm,
        planned for the block-scaled path this class does not serve yet."""
        p = {"n": n, "k": k}
        if arch == "sm_90a":
            word_order = check_order(word_order or WORD_ORDER)
            ours = {**p, "word_order": word_order}
            quack = quack and word_order == "nibble"
            ranges = cls.ws_ranges(n, k) if quack and mid and upper else ()
            if ranges and cls.ws_everywhere(n, k):
                return cls.ops(n, k, arch, one_scale=one_scale, quack=False, upper=upper, word_order=word_order)
            if quack:
                fam, upto = (("quack_w4a16_gemm", QUACK_FROM) if one_scale
                             else ("quack_w4a16_rowalpha_gemm", QUACK_FROM_ROW_ALPHA))
                what = "one global scale" if one_scale else "several global scales: per-row alpha"
                # quack's first M: above a leading ws range that starts at the threshold
                above = ranges[0][1] if ranges and ranges[0][0] == upto else upto
                text = f"Nvfp4Linear for M > {above}{' outside the ranges above' if ranges else ''} (layers with {what})"
            else:
                fam, upto, ranges = "w4a16_ws_gemm", cls.decode_upto(n, k, word_order), ()
                above = upto
                text = f"Nvfp4Linear(quack=False) for M > {upto} (per-row alpha: one or several global scales)"
            spans = ", ".join(f"{lo} < M" + ("" if hi is None else f" <= {hi}") for lo, hi in ranges)
            middle = ([OpDecl("mid_op", "w4a16_ws_gemm", ours, "tokens",
                              f"Nvfp4Linear for {spans} (measured at least as fast as quack there)",
                              keyed="gemm", weights="weight", optional=True, m_above=ranges[0][0],
                              m_upto=ranges[-1][1], runner="Nvfp4Linear")] if ranges else [])
            return [
                # the input comes from the model: natural K (act_order spelled: the store's op ids do)
                OpDecl("op", "w4a16_gemm", {**ours, "act_order": "natural"}, "tokens",
                       f"Nvfp4Linear (runtime/linear.py) for M <= {upto}; every M without {fam} for the layer",
                       keyed="gemm", weights="weight", m_upto=upto if upper else None, runner="Nvfp4Linear"),
                *middle,
                *([OpDecl("upper_op", fam, ours if fam == "w4a16_ws_gemm" else p, "tokens", text, keyed="gemm", weights="weight", optional=True,
                          m_above=above, runner="Nvfp4Linear")] if upper else []),
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
                 max_tokens: int, part_sizes: Sequence[int] | None = None, device: Any = None, quack: bool = True,
                 word_order: str | None = None):
        """quack=True (default): w4a16_ws_gemm on the M ranges ws_ranges(N, K), quack's WGMMA kernel
        on the other M above WS_FROM (measured faster there, see the module docstring); where the
        store lacks one of the two, the other serves all M above WS_FROM, and without either
        w4a16_gemm serves every M.
        quack=False: our w4a16_ws_gemm above WS_FROM (same fallbacks).
        word_order: the blob word order prepared and opened (ops; None: WORD_ORDER); not "nibble" implies
        quack=False."""
        if store.arch != "sm_90a":
            raise MissingVariantError(
                f"Nvfp4Linear serves sm_90a (W4A16) only; {store.arch} needs NVFP4 activation quantization and the "
                "block-scaled GEMM path, which is built (quack_nvfp4_gemm) but has no runtime wrapper yet")
        device = torch.device(device or "cuda")
        self.n, self.k = weight.shape[0], weight.shape[1] * 2
        self.max_tokens = max_tokens
        # one prepared copy (quack's nvfp4 layout, in word_order) feeds w4a16_gemm, w4a16_ws_gemm and,
        # in nibble order, quack's kernel alike
        self.word_order = word_order = check_order(word_order or WORD_ORDER)
        q = operands(weight.to(device), weight_scale.to(device), BLOB_LAYOUT[word_order])
        self.w = (q["blob"], q["strip"])
        self.alpha = row_alpha(weight_scale_2, self.n, part_sizes, device)
        # one global scale: quack's scalar-alpha kernel; several (q_a + kv): its per-row-alpha twin
        # (our kernels take the per-row alpha either way)
        one_scale = self.alpha.numel() > 0 and bool((self.alpha == self.alpha[0]).all())
        # the chosen upper kernels (ws on its ranges), then the chosen one alone (quack=True, the store lacking
        # ws: quack from WS_FROM), then the other one
        for quack, mid in ((quack, True), (quack, False), (not quack, True)):
            self.upper_op = self.mid_op = None
            decls = self.ops(self.n, self.k, store.arch, one_scale=one_scale, quack=quack, mid=mid, word_order=word_order)
            self.decls = open_ops(self, store, decls)
            if self.upper_op is not None and (self.mid_op is not None or all(d.attr != "mid_op" for d in decls)):
                break
        # w4a16_gemm serves M <= lower_upto; above it mid_op (w4a16_ws_gemm) M in ws_ranges, the
        # upper kernel every other M (ws_spans: ws_ranges(N, K) when both are open, else empty)
        self.upper, self.lower_upto, self.upper_from, self.ws_spans = None, 1 << 62, 1 << 62, ()
        if self.upper_op is None:  # not in the store: w4a16_gemm serves every M
            self.decls = self.ops(self.n, self.k, store.arch, one_scale=one_scale, upper=False, word_order=word_order)
        else:
            self.lower_upto = decls[0].m_upto
            if self.mid_op is not None:
                self.ws_spans = self.ws_ranges(self.n, self.k)
                self.mid_scratch = OpScratch(self.mid_op, max_tokens, device)
            self.upper_from = decls[-1].m_above
            upper_quack = decls[-1].family.startswith("quack_")  # (the layer's ws ranges may cover every M)
            alpha = self.alpha[:1].clone() if upper_quack and one_scale else self.alpha
            self.upper = (self.upper_op, *self.w, alpha)
            self.upper_scratch = OpScratch(self.upper_op, max_tokens, device)
            # quack's serial split-K spins on other CTAs; w4a16_ws_gemm's last-arriver split-K does not
            if device.type == "cuda" and self.upper_scratch.buffers and upper_quack:
                _check_split_k_residency(self.upper_op, max_tokens, device)
        self.device = device

    def missing(self, token_counts: Iterable[int]) -> list[str]:
        return missing_ops(self, self.decls, token_counts)

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None, check: bool | str = True) -> torch.Tensor:
        m = x.shape[0]
        if out is None:
            out = torch.empty((m, self.n), dtype=torch.bfloat16, device=x.device)
        if m <= self.lower_upto:
            self.op(x, *self.w, self.alpha, out, check=check)
        elif in_ranges(m, self.ws_spans):
            self.mid_op(x, *self.w, self.alpha, out, *self.mid_scratch(m), check=check)
        else:
            uop, blob, strip, alpha = self.upper
            uop(x, blob, strip, alpha, out, *self.upper_scratch(m), check=check)
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
