"""The 128x4 block-scaled ("swizzled") scale layout of Blackwell's block-scaled MMA: produced by
nvfp4_quantize / moe_permute_quantize / moe_silu_mul_quantize (sf_layout="swizzled") and read by
the quack_nvfp4 GEMMs; runtime/weights.py swizzles weight scales with it. Torch only.

Row m = 128 mt + 32 im + om and scale column c = 4 kt + ik are stored at [mt, kt, om, im, ik]:
each 128-row x 4-column tile is one contiguous 512-byte atom.
"""

from __future__ import annotations

import torch

from nvfp4_aot.runtime.nvfp4 import SF_COL_TILE, SF_ROW_TILE, round_up


def swizzle_sf(sf: torch.Tensor) -> torch.Tensor:
    """Row-major [M, Ks] scales -> [round_up(M,128), Ks] in the 128x4 block-scaled layout."""
    m, ks = sf.shape
    if ks % SF_COL_TILE:
        raise ValueError(f"scale columns {ks} must be a multiple of {SF_COL_TILE}")
    mp = round_up(m, SF_ROW_TILE)
    pad = torch.zeros((mp, ks), dtype=sf.dtype, device=sf.device)
    pad[:m] = sf
    # m = mt*128 + im*32 + om ; c = kt*4 + ik  ->  [mt, kt, om, im, ik]
    t = pad.view(mp // 128, 4, 32, ks // 4, 4).permute(0, 3, 2, 1, 4)
    return t.contiguous().view(mp, ks)


def unswizzle_sf(sf: torch.Tensor, m: int) -> torch.Tensor:
    mp, ks = sf.shape
    t = sf.contiguous().view(mp // 128, ks // 4, 32, 4, 4).permute(0, 3, 2, 1, 4)
    return t.contiguous().view(mp, ks)[:m]


__all__ = ["swizzle_sf", "unswizzle_sf"]
