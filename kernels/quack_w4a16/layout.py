"""quack_w4a16_gemm's weight layout: NVFP4 weights -> quack's register layout (production code:
runtime/weights.py prepares every runner's operands with it).

Torch only (no cutlass, no quack): the transform below is an independent restatement of
quack-kernels 0.6.5 `blockscaled/nvfp4_utils.repack_nvfp4_weight` / `repack_nvfp4_sf` as pure
reshapes, so it can run anywhere (checkpoint conversion, tests). The slow test checks it
byte for byte against quack's own index-gather implementation.

Input (row-major, the project's NVFP4 convention, scales NOT swizzled):
    q  uint8 [N, K/2]   E2M1 codes, element 2j in the low nibble of byte j, sign = bit 3
    sf uint8 [N, K/16]  E4M3 bits (float8_e4m3fn accepted), one scale per 16 along K
Output (quack's layout; N must be a multiple of 64 here, the family requires 128):
    blob  uint8 [N/64, K/64, 128, 16]    each WGMMA thread's 16 bytes per (m64, k64) tile
    strip uint8 [N/64, K/64, 32, 4, 2]   each thread's 8 scale bytes per (m64, k64) tile

blob[g, kt, t, j] with t = 32w + 4l + c, j = 4b + 2e + h  (quack's docstring in other words):
    row  = 64g + 16w + 8h + l          byte = 32kt + 8b + 4e + c
i.e. the WGMMA m64k16 A fragment: thread (w, l, c) owns rows 16w+l and 16w+l+8 (h) and the
k pairs {2c, 2c+1} and {2c+8, 2c+9} (e) of each k16 block b; a k-pair is one byte.
strip[g, kt, s, b, i] with s = 8w + l:  sf[64g + 16w + 8i + l, 4kt + b].

Dequantization (exact in fp32): value = e2m1(code) * float(e4m3 scale) * alpha, where alpha is
the per-tensor *decode* scale (= 1 / global_scale = a ModelOpt checkpoint's weight_scale_2).
quack folds the E4M3 scale into the bf16 decode (exact: 2 x 4 significand bits fit bf16) and
multiplies the fp32 accumulator by alpha in the epilogue.
"""

from __future__ import annotations

from typing import Any

import torch

from nvfp4_aot.runtime.nvfp4 import E2M1_VALUES, SF_BLOCK

ROW_BLOCK = 64  # weight rows per blob block (one WGMMA m64 atom)
K_TILE = 64  # K elements per blob tile (quack's nvfp4 tile_k)


def _u8(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.uint8 else t.view(torch.uint8)


def _check(q: torch.Tensor, sf: torch.Tensor) -> tuple[int, int]:
    if q.dim() != 2 or sf.dim() != 2 or q.dtype != torch.uint8:
        raise ValueError(f"q must be uint8 [N, K/2] and sf [N, K/16], got {tuple(q.shape)} {q.dtype}, {tuple(sf.shape)}")
    n, k = q.shape[0], 2 * q.shape[1]
    if n % ROW_BLOCK or k % K_TILE:
        raise ValueError(f"N={n} must be a multiple of {ROW_BLOCK} and K={k} of {K_TILE} (pad first)")
    if tuple(sf.shape) != (n, k // SF_BLOCK):
        raise ValueError(f"sf shape {tuple(sf.shape)} != {(n, k // SF_BLOCK)} (row-major, unswizzled)")
    return n, k


def prepare_weights(q: torch.Tensor, sf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q [N, K/2], sf [N, K/16]) -> (blob [N/64, K/64, 128, 16], strip [N/64, K/64, 32, 4, 2])."""
    n, k = _check(q, sf)
    g, kt = n // ROW_BLOCK, k // K_TILE
    # q rows (g, w, h, l) x bytes (kt, b, e, c) -> blob (g, kt, [w, l, c], [b, e, h])
    blob = q.reshape(g, 4, 2, 8, kt, 4, 2, 4).permute(0, 4, 1, 3, 7, 5, 6, 2)
    # sf rows (g, w, i, l) x cols (kt, b) -> strip (g, kt, [w, l], b, i)
    strip = _u8(sf).reshape(g, 4, 2, 8, kt, 4).permute(0, 4, 1, 3, 5, 2)
    return blob.reshape(g, kt, 128, 16).contiguous(), strip.reshape(g, kt, 32, 4, 2).contiguous()


def unprepare_weights(blob: torch.Tensor, strip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact inverse of prepare_weights: (blob, strip) -> (q [N, K/2], sf uint8 [N, K/16])."""
    g, kt = blob.shape[:2]
    if tuple(blob.shape) != (g, kt, 128, 16) or tuple(strip.shape) != (g, kt, 32, 4, 2):
        raise ValueError(f"unexpected blob {tuple(blob.shape)} / strip {tuple(strip.shape)}")
    q = blob.reshape(g, kt, 4, 8, 4, 4, 2, 2).permute(0, 2, 7, 3, 1, 5, 6, 4)
    sf = _u8(strip).reshape(g, kt, 4, 8, 4, 2).permute(0, 2, 5, 3, 1, 4)
    return q.reshape(g * 64, kt * 32).contiguous(), sf.reshape(g * 64, kt * 4).contiguous()


def dequantize(q: torch.Tensor, sf: torch.Tensor, alpha: Any = 1.0) -> torch.Tensor:
    """Exact float32 weights [N, K] = e2m1(q) * float(e4m3 sf) * alpha (alpha: float or [1] tensor).

    Every e2m1 * e4m3 product is exact in fp32; with alpha != 1 the result is one fp32 rounding
    per element (the kernel instead applies alpha once to the fp32 accumulator)."""
    n = q.shape[0]
    lut = torch.tensor(E2M1_VALUES + tuple(-v for v in E2M1_VALUES), dtype=torch.float32, device=q.device)
    codes = torch.stack([q & 15, q >> 4], dim=-1).view(n, -1).long()
    vals = lut[codes].view(n, -1, SF_BLOCK)
    scale = _u8(sf).view(torch.float8_e4m3fn).float()
    w = (vals * scale.unsqueeze(-1)).view(n, -1)
    if isinstance(alpha, torch.Tensor):
        return w * alpha.float().reshape(())
    return w * alpha if alpha != 1.0 else w


__all__ = ["ROW_BLOCK", "K_TILE", "dequantize", "prepare_weights", "unprepare_weights"]
