"""Test data for quack_w4a16_gemm (random NVFP4 weights); the layout itself lives in layout.py
(re-exported here for existing callers)."""

from __future__ import annotations

from typing import Any

import torch

from nvfp4_aot.runtime.nvfp4 import SF_BLOCK

from .layout import K_TILE, ROW_BLOCK, dequantize, prepare_weights, unprepare_weights  # noqa: F401  (re-exported)


def random_nvfp4_weights(n: int, k: int, gen: torch.Generator, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Random NVFP4 weights (q, sf) for tests: uniform codes (all 16, incl. -0), and E4M3
    scales from a random 3-octave band inside [2^-6, 448] (so over several seeds the whole
    normal range is decoded, while within one tensor no block dominates the error norm),
    with ~2% of the blocks zero or subnormal (bytes 0x00-0x07). Never NaN (0x7F/0xFF)."""
    q = torch.randint(0, 256, (n, k // 2), generator=gen, device=device, dtype=torch.int32).to(torch.uint8)
    lo = int(torch.randint(0x08, 0x67, (1,), generator=gen, device=device).item())
    hi = min(lo + 0x18, 0x7E)  # 0x7E = 448, the largest finite E4M3
    sf = torch.randint(lo, hi + 1, (n, k // SF_BLOCK), generator=gen, device=device, dtype=torch.int32)
    tiny = torch.rand((n, k // SF_BLOCK), generator=gen, device=device) < 0.02
    sub = torch.randint(0, 8, (n, k // SF_BLOCK), generator=gen, device=device, dtype=torch.int32)
    return q, torch.where(tiny, sub, sf).to(torch.uint8)
