"""NVFP4 numerics, defined once: part of the store contract with runtime/signature.py and
runtime/store_format.py (kernels, references, the builder, the weight loader and the runners
all import these; none re-declares them).

An NVFP4 tensor is E2M1 codes (4 bits: sign = bit 3, magnitude index = bits 0-2; element 2j in
the low nibble of byte j), one E4M3 scale per SF_BLOCK consecutive elements along K, and one
fp32 global scale per tensor. A checkpoint's weight_scale_2 is the global *decode* scale
(value = e2m1 * e4m3 * weight_scale_2); activation quantization uses the *encode* scale
gs = GS_NUMERATOR / amax (the kernels' alpha is then weight_scale_2 / gs).

Standard library only.
"""

from __future__ import annotations

SF_BLOCK = 16  # elements per E4M3 block scale, along K
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # magnitude of codes 0..7 (8..15: negated)
E2M1_MAX = E2M1_VALUES[-1]  # 6.0
E4M3_MAX = 448.0  # largest finite float8_e4m3fn
GS_NUMERATOR = E2M1_MAX * E4M3_MAX  # 2688: global encode scale = GS_NUMERATOR / amax
SF_ROW_TILE = 128  # rows per tile of the 128x4 block-scaled (swizzled) scale layout
SF_COL_TILE = 4  # scale columns (4 x 16 = 64 of K) per tile of that layout


def round_up(a: int, b: int) -> int:
    """The smallest multiple of b that is >= a (b > 0)."""
    return -(-a // b) * b


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


__all__ = ["SF_BLOCK", "E2M1_VALUES", "E2M1_MAX", "E4M3_MAX", "GS_NUMERATOR", "SF_ROW_TILE", "SF_COL_TILE", "round_up", "cdiv"]
