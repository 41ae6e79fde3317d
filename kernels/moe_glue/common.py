"""Rules shared by the MoE glue family specs (see the package docstring): vector widths, thread
counts, route's ranges, int32 index bounds. No torch, no cutlass."""

from __future__ import annotations

from ..validity import in_range, multiple_of, one_of

VEC = 8  # bf16 elements per 16-byte vector
THREADS = (64, 128, 256, 512, 1024)
UNROLLS = (1, 2, 4)  # 16-byte vectors per thread (loads in flight)


def threads_reason(threads: int) -> list[str]:
    return one_of("threads", threads, THREADS)


def unroll_reason(unroll: int) -> list[str]:
    return one_of("unroll", unroll, UNROLLS)


def vector_dim_reasons(name: str, value: int, tensors: str) -> list[str]:
    """A feature dim read and written as 16-byte vectors, indexed with int32 up to max_m rows."""
    r = multiple_of(name, value, VEC, f"16-byte vectors of {tensors}")
    if value > 1 << 16:
        r.append(f"{name}={value} must be <= 65536 (int32 vector index at M = max_m)")
    return r


# The fused families index items with int32 (item < CAP * H / 8 for permute): a smaller max_m
# than route's keeps CAP at max_m times the per-row items below 2^31 for DeepSeek-V4 sizes
# (can_implement checks it for the given H, TOPK, E, PAD).
FUSED_MAX_M = 65536
QUANT_THREADS = (64, 128, 256, 512)
SF_SWIZZLE_ROWS = 128  # rows of one 128x4 atom of the block-scaled scale layout
QUANT_ITEM = 64  # elements per quantize item (4 scale blocks of 16)


def act_order_reasons(order: str, name: str, value: int) -> list[str]:
    """The output's K order (runtime/layout.py ACT_ORDERS): "quad" permutes within 64-column tiles."""
    from nvfp4_aot.runtime.layout import ACT_ORDERS, QUAD_ORDERS, QUAD_TILE

    if order not in ACT_ORDERS:
        return [f"act_order={order!r} must be one of {ACT_ORDERS}"]
    if order in QUAD_ORDERS and value % QUAD_TILE:
        return [f"act_order={order!r} needs {name}={value} to be a multiple of {QUAD_TILE} (the quad tile)"]
    return []


def limit_reasons(limit: float) -> list[str]:
    """The clamped-SwiGLU limit of moe_silu_mul / moe_silu_mul_quantize (0: no clamp)."""
    return [] if 0.0 <= limit < float("inf") else [f"limit={limit} must be a finite number >= 0 (0: no clamp)"]


def routing_reasons(topk: int, experts: int, pad: int, why: str = "route's range") -> list[str]:
    """route's ranges (also of every op laid out by route: the same topk, experts, pad)."""
    return in_range("topk", topk, 1, 32, why) + in_range("experts", experts, 1, 1024, why) + in_range("pad", pad, 1, 1024, why)


def int32_items_reasons(name: str, rows_at_max: int, per_row: int, what: str) -> list[str]:
    n = rows_at_max * per_row
    if n >= 2**31:
        return [f"{name}: {rows_at_max} rows at max_m={FUSED_MAX_M} x {per_row} {what} per row = {n} items "
                f"must stay below 2^31 (int32 item index)"]
    return []


def quant_reasons(threads: int, name: str, value: int) -> list[str]:
    """The fused NVFP4 quantizers' CTA size and quantized dim (nvfp4_quantize's item: 64 elements)."""
    r = one_of("threads", threads, QUANT_THREADS)
    r += multiple_of(name, value, QUANT_ITEM, "4 scale blocks of 16 per thread item")
    if value > 1 << 16:
        r.append(f"{name}={value} must be <= 65536")
    return r
