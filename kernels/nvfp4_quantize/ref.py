"""Torch references for the NVFP4 quantize families: they *define* the rounding (see the
package docstring); the kernels match them bit for bit. Imported lazily: the build CLI and
manifest tools never need torch.
"""

from __future__ import annotations

from typing import Any

import torch

from nvfp4_aot.runtime.nvfp4 import E2M1_VALUES, E4M3_MAX, GS_NUMERATOR, SF_BLOCK

from . import _E2M1_STEPS
from .layout import swizzle_sf, unswizzle_sf  # noqa: F401  (re-exported)


def e2m1_codes(v: torch.Tensor) -> torch.Tensor:
    """fp32 -> 4-bit E2M1 codes (uint8 0..15), RNE, saturating; sign from signbit."""
    a = v.abs()
    code = torch.zeros(v.shape, dtype=torch.uint8, device=v.device)
    for thr, inclusive in _E2M1_STEPS:
        code += (a >= thr if inclusive else a > thr).to(torch.uint8)
    return code | (torch.signbit(v).to(torch.uint8) << 3)


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    lut = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    mag = lut[(codes & 7).long()]
    return torch.where((codes & 8) != 0, -mag, mag)


def quantize_ref(x: torch.Tensor, global_scale: torch.Tensor, sf_layout: str = "swizzled"):
    """Reference NVFP4 quantization. Returns (q uint8 [M, K/2], sf uint8 E4M3 bits)."""
    m, k = x.shape
    xf = x.float().view(m, k // SF_BLOCK, SF_BLOCK)
    gs = global_scale.float().reshape(())
    vmax = xf.abs().amax(dim=-1)
    s = (vmax * gs) * torch.tensor(1.0 / 6.0, dtype=torch.float32)
    # torch's E4M3 cast is RNE but maps out-of-range to NaN; saturate first like satfinite.
    sf8 = s.clamp(max=E4M3_MAX).to(torch.float8_e4m3fn)
    sff = sf8.float()
    out_scale = torch.where(sff == 0, torch.zeros_like(sff), gs / sff)
    codes = e2m1_codes(xf * out_scale.unsqueeze(-1)).view(m, k)
    q = codes[:, 0::2] | (codes[:, 1::2] << 4)
    sf = sf8.view(torch.uint8)
    if sf_layout == "swizzled":
        sf = swizzle_sf(sf)
    return q.contiguous(), sf.contiguous()


def dequantize_ref(q: torch.Tensor, sf: torch.Tensor, global_scale: torch.Tensor, sf_layout: str = "swizzled"):
    """Exact fp32 value of NVFP4 data: code * float(sf8) / gs."""
    m = q.shape[0]
    if sf_layout == "swizzled":
        sf = unswizzle_sf(sf, m)
    codes = torch.stack([q & 15, q >> 4], dim=-1).view(m, -1)
    vals = e2m1_decode(codes).view(m, -1, SF_BLOCK)
    scale = sf.view(torch.float8_e4m3fn).float() / global_scale.float().reshape(())
    return (vals * scale.unsqueeze(-1)).view(m, -1)


def global_scale_ref(x: torch.Tensor) -> torch.Tensor:
    amax = x.float().abs().amax()
    one = torch.ones((), dtype=torch.float32, device=x.device)
    return torch.where(amax > 0, torch.tensor(GS_NUMERATOR, device=x.device) / amax, one).reshape(1)


def random_activations(m: int, k: int, device: Any, gen: torch.Generator) -> torch.Tensor:
    """BF16 data whose block magnitudes span many octaves, with some all-zero blocks."""
    x = torch.randn((m, k), generator=gen, device=device, dtype=torch.float32)
    octave = torch.randint(-12, 6, (m, k // SF_BLOCK, 1), generator=gen, device=device).float()
    x = (x.view(m, -1, SF_BLOCK) * torch.exp2(octave)).view(m, k)
    zero_blocks = torch.rand((m, k // SF_BLOCK, 1), generator=gen, device=device) < 0.02
    x = x.view(m, -1, SF_BLOCK).masked_fill(zero_blocks, 0.0).view(m, k)
    return x.to(torch.bfloat16)


