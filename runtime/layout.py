"""Layout arithmetic shared by the route family (which produces the grouped layout) and the
runners and planner (which size buffers and buckets from it). Standard library only.

Grouped layout capacity: route's src_token has CAP = (M * topk + E * (pad - 1)) // pad * pad
rows, enough for any routing (the bound is derived in kernels/moe_glue/__init__.py).
"""

from __future__ import annotations


# Rows of each local expert's group are padded to a multiple of GROUP_PAD[arch] by moe_route:
# sm_90a's W4A16 grouped GEMM has no tile alignment to honour (unpadded: exactly M * top_k rows);
# sm_100a's block-scaled GEMM wants every expert's rows (and its 128x4 scale atoms) to start at a
# multiple of 128, so the whole-buffer scale swizzle is the per-expert one.
GROUP_PAD = {"sm_90a": 1, "sm_100a": 128}


def capacity_expr() -> str:
    """CAP in the static symbols of route's signature: TOPK, E, PAD (M dynamic)."""
    return "(M * TOPK + E * (PAD - 1)) // PAD * PAD"


def capacity(m: int, topk: int, experts: int, pad: int) -> int:
    """CAP for M tokens: the grouped rows route may use (pad = 1: exactly M * topk)."""
    return (m * topk + experts * (pad - 1)) // pad * pad


__all__ = ["GROUP_PAD", "capacity", "capacity_expr"]
