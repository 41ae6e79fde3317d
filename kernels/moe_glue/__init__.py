"""MoE glue families around the grouped expert GEMMs (expert parallel, DeepSeek-V4 sizes).

    route     topk_ids [M, topk] (GLOBAL expert ids) + expert_start [1] (device int32)
              -> counts [E], offsets [E + 1], slot_of [M, topk], src_token [CAP]
    silu_mul  x [M, 2I] bf16 (gate | up) -> out [M, I] bf16 = silu(gate) * up
    combine   y [R, H] bf16 (grouped rows) + slot_of [M, topk] + weights [M, topk] fp32
              -> out [M, H] bf16 = sum_k w[m, k] * y[slot_of[m, k]]

Grouped ("padded") layout, produced by route and consumed by the grouped GEMMs and combine:
local expert e = global id - expert_start owns rows [offsets[e], offsets[e + 1]); its
counts[e] routed slots come first, ordered by (token, k) ascending, then padding rows up to
round_up(counts[e], pad) (src_token = -1). offsets[0] = 0, offsets[E] = rows used. Slots routed
to a non-local expert (id outside [expert_start, expert_start + E)) get slot_of = -1: that
expert's rank computes them, combine skips them.

Capacity. route's src_token has CAP = (M * topk + E * (pad - 1)) // pad * pad rows. Rows used
are sum_e round_up(c_e, pad) = pad * sum_e ceil(c_e / pad) <= pad * floor((sum_e (c_e + pad - 1)) / pad)
<= CAP, so any routing fits; the bound is attained (tight) whenever M * topk >= E (e.g. every
expert gets 1 + a multiple of pad tokens). For M * topk < E it over-allocates by < E * pad rows.
Rows [offsets[E], CAP) are padding too (src_token = -1).

combine takes the grouped rows R as a second dynamic symbol (any R: the caller's GEMM output
buffer, normally route's CAP); a slot outside [0, R) contributes nothing, like -1, so a bad
slot can never read out of bounds.

Numerics. silu_mul: fp32 silu(g) * u with ex2.approx / rcp.approx (a few fp32 ulps), rounded
once to bf16 (RNE): checked by relative Frobenius error. combine: acc = 0; for k = 0..topk-1
ascending, skipping invalid slots: acc = RN(acc + RN(w * float(y))) (separate mul.rn / add.rn,
never an FMA), then one RNE rounding to bf16; the torch reference performs the very same fp32
operations in the same order, so the check is bit-exact. route: integers, exact.

Graph safety: every launch has a fixed grid given M (no host sync, no data-dependent grid or
trip count, no allocation, no scratch, no atomics: results are deterministic).

Fused glue feeding the grouped NVFP4 GEMMs (kernels in permute.py):

    permute           x [M, H] bf16 + src_token [CAP] -> xg [CAP, H] bf16, xg[r] = x[src_token[r]]
                      (a bit copy), ZERO rows where src_token[r] is outside [0, M) (padding: the
                      grouped GEMM computes those rows, they must be finite)
    permute_quantize  the same gather fused with NVFP4 quantization under a device global scale:
                      q [CAP, H/2] uint8, sf [CAP, H/16] uint8 (E4M3) in the 128x4 block-scaled
                      layout; padding rows get zero codes and zero scales
    silu_mul_quantize x [M, 2I] bf16 -> h = silu_mul's bf16 values (never stored) -> NVFP4:
                      q [M, I/2], sf [round_up(M, 128), I/16] swizzled (rows past M zero)

src_token is route's output: the TOKEN index of each grouped row (route writes slot // topk),
-1 for padding. CAP is route's capacity_expr() (static TOPK, E, PAD; M dynamic).

Per-expert swizzle invariant (permute_quantize, asserted by can_implement: pad % 128 == 0):
expert e's rows [offsets[e], offsets[e + 1]) start and end at multiples of pad, hence of 128,
and the 128x4 layout stores rows [128 t, 128 t + 128) as one contiguous block of 128 * H/16
bytes (atom t); so the scales of expert e, swizzled on their own, are exactly bytes
[offsets[e] * H/16, offsets[e + 1] * H/16) of the buffer swizzled as a whole: no two experts
share an atom, and the whole-buffer swizzle IS the per-expert swizzle the grouped GEMM wants
(tests/kernels/test_moe_glue.py checks it in torch).

Numerics. permute: exact. permute_quantize: the rounding of nvfp4_quantize (its PTX helpers,
same order): bit-exact vs quantize_ref(gathered rows, gs, "swizzled"). silu_mul_quantize:
the quantizer is bit-exact too, but its bf16 input h comes from ex2.approx / rcp.approx, so h
may differ from torch's silu in the last bf16 bit (rarely); see SILU_MUL_QUANTIZE_* below for
how that is checked.
"""

from __future__ import annotations

# One module per family spec (spec_*.py), shared rules in common.py, the kernels in kernel.py
# (silu_mul, combine), route.py and permute.py (permute, permute_quantize, silu_mul_quantize).
from nvfp4_aot.runtime.layout import capacity, capacity_expr  # noqa: F401  (the grouped layout's rows)

from .spec_combine import FAMILY as COMBINE_FAMILY
from .spec_permute import FAMILY as PERMUTE_FAMILY
from .spec_permute_quantize import FAMILY as PERMUTE_QUANTIZE_FAMILY
from .spec_route import FAMILY as ROUTE_FAMILY
from .spec_silu_mul import FAMILY as SILU_MUL_FAMILY
from .spec_silu_mul import silu_mul
from .spec_silu_mul_quantize import FAMILY as SILU_MUL_QUANTIZE_FAMILY

__all__ = [
    "COMBINE_FAMILY",
    "PERMUTE_FAMILY",
    "PERMUTE_QUANTIZE_FAMILY",
    "ROUTE_FAMILY",
    "SILU_MUL_FAMILY",
    "SILU_MUL_QUANTIZE_FAMILY",
    "capacity",
    "capacity_expr",
    "silu_mul",
]
