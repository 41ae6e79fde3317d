"""Torch references, inputs and the accuracy check of the NVFP4 block-scaled GEMM families.

The reference dequantizes both operands exactly (an E2M1 code times an E4M3 scale is exact in
fp32), multiplies in float64 and applies alpha, the fp32 value the kernel receives: the only
differences left to the kernel are its fp32 accumulation (~1e-6 relative) and the bf16 store
(unit roundoff 2^-9), which REL_FROBENIUS["bfloat16"] bounds. Imported lazily (torch).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from nvfp4_aot.runtime.nvfp4 import SF_BLOCK
from nvfp4_aot.runtime.nvfp4 import round_up as _round_up
from ..nvfp4_quantize.ref import e2m1_decode, swizzle_sf, unswizzle_sf

E4M3_NAN = 0x7F  # poison for scale rows past the last token row (never part of a stored row)
ROW_CHUNK = 8192  # rows per float64 matmul: bounds the reference's memory at large M


def dequant(q: torch.Tensor, sf: torch.Tensor, rows: int) -> torch.Tensor:
    """Exact fp32 value of NVFP4 data without its global scale: code * float(e4m3 sf).
    q uint8 [rows, K/2] (element 2j = low nibble of byte j), sf uint8 swizzled
    [round_up(rows, 128), K/16]."""
    codes = torch.stack([q & 15, q >> 4], dim=-1).view(rows, -1)
    scale = unswizzle_sf(sf, rows).view(torch.float8_e4m3fn).float()
    return (e2m1_decode(codes).view(rows, -1, SF_BLOCK) * scale.unsqueeze(-1)).view(rows, -1)


def alpha_from_global_scales(gs_a: torch.Tensor, gs_b: torch.Tensor) -> torch.Tensor:
    """alpha = 1 / (gs_a * gs_b) in fp32 from the *encode* global scales (nvfp4_quantize's gs:
    x ~= code * sf / gs). gs_a [1] (activations), gs_b [1] (dense) or [E] (grouped) -> shape of
    gs_b. Computed in float64, rounded once. A ModelOpt weight_scale_2 is 1 / gs_b already:
    alpha = weight_scale_2 / gs_a."""
    return (1.0 / (gs_a.double().reshape(()) * gs_b.double())).float()


def _matmul(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """float64 a @ b^T * alpha, row-chunked."""
    bt = b.double().T
    out = torch.empty((a.shape[0], b.shape[0]), dtype=torch.float64, device=a.device)
    for r in range(0, a.shape[0], ROW_CHUNK):
        out[r : r + ROW_CHUNK] = (a[r : r + ROW_CHUNK].double() @ bt) * alpha
    return out


def gemm_ref(inputs: Mapping[str, Any], grouped: bool) -> torch.Tensor:
    """float64 reference of out (dense: alpha[0]; grouped: rows [offsets[e], offsets[e+1])
    against expert e's weights, times alpha[e])."""
    a, alpha = inputs["a"], inputs["alpha"].double()
    m = a.shape[0]
    a_deq = dequant(a, inputs["a_sf"], m)
    if not grouped:
        n = inputs["b"].shape[0]
        return _matmul(a_deq, dequant(inputs["b"], inputs["b_sf"], n), float(alpha[0]))
    e, n, kh = inputs["b"].shape
    # n % 128 == 0: the per-expert swizzle of [E, N, K/16] is the swizzle of [E*N, K/16]
    b_deq = dequant(inputs["b"].reshape(e * n, kh), inputs["b_sf"].reshape(e * n, -1), e * n).view(e, n, -1)
    offsets = [int(o) for o in inputs["offsets"].tolist()]
    out = torch.zeros((m, n), dtype=torch.float64, device=a.device)
    for i in range(e):
        lo, hi = offsets[i], offsets[i + 1]
        if hi > lo:
            out[lo:hi] = _matmul(a_deq[lo:hi], b_deq[i], float(alpha[i]))
    return out


def check_offsets(offsets: torch.Tensor, m: int) -> list[str]:
    """The grouped family's contract on offsets (host check; the kernel cannot see it)."""
    o = [int(x) for x in offsets.tolist()]
    bad = []
    if o[0] != 0 or o[-1] != m:
        bad.append(f"offsets must start at 0 and end at M={m}, got {o[0]}..{o[-1]}")
    if any(b < a for a, b in zip(o, o[1:])):
        bad.append("offsets must be nondecreasing")
    if any(x % 128 for x in o[:-1]):
        bad.append("offsets[e] must be a multiple of 128 for every e < E")
    return bad


def random_offsets(m: int, experts: int, gen: torch.Generator) -> torch.Tensor:
    """int32 [E+1] meeting the contract: the m // 128 full tiles spread at random over the
    experts (some empty), the m % 128 remaining rows to the last expert."""
    tiles = m // 128
    cuts = torch.randint(0, tiles + 1, (experts - 1,), generator=gen).sort().values
    o = torch.cat([torch.zeros(1, dtype=torch.int64), cuts * 128, torch.tensor([m])])
    return o.to(torch.int32)


def random_nvfp4(rows: int, k: int, gen: torch.Generator, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed codes uint8 [rows, K/2] (every nibble, -0 included) and swizzled scale bytes
    [round_up(rows, 128), K/16]: normal E4M3 in [0.125, 448], ~2% zero and ~2% subnormal
    blocks; scale rows past `rows` hold NaN (a kernel reading them for a real row fails)."""
    q = torch.randint(0, 256, (rows, k // 2), generator=gen, dtype=torch.uint8, device=device)
    sf = torch.randint(0x20, 0x7F, (rows, k // SF_BLOCK), generator=gen, dtype=torch.uint8, device=device)
    u = torch.rand(sf.shape, generator=gen, device=device)
    sf = torch.where(u < 0.02, torch.zeros_like(sf), sf)
    sf = torch.where((u >= 0.02) & (u < 0.04), sf & 7, sf)  # exponent 0: subnormal (or zero)
    pad = torch.full((_round_up(rows, 128), k // SF_BLOCK), E4M3_NAN, dtype=torch.uint8, device=device)
    pad[:rows] = sf
    return q, swizzle_sf(pad)


def make_inputs(n: int, k: int, m: int, experts: int | None, device: Any, seed: int,
                poison: float = float("nan")) -> dict[str, torch.Tensor]:  # fmt: skip
    """Fresh random inputs and a poisoned output for token count m (dense: experts None).
    alpha comes from random encode global scales (activations 2688/amax for amax in [1, 64],
    weights likewise per expert), exactly as a caller would derive it."""
    gen = torch.Generator(device=device).manual_seed(seed)
    a, a_sf = random_nvfp4(m, k, gen, device)
    e = experts or 1
    b, b_sf = random_nvfp4(e * n, k, gen, device)
    gs_a = 2688.0 / (1 + 63 * torch.rand(1, generator=gen, device=device))
    gs_b = 2688.0 / (1 + 63 * torch.rand(e, generator=gen, device=device))
    inputs = {"a": a, "a_sf": a_sf}
    if experts is None:
        inputs |= {"b": b, "b_sf": b_sf, "alpha": alpha_from_global_scales(gs_a, gs_b)}
    else:
        inputs |= {
            "b": b.view(e, n, k // 2),
            "b_sf": b_sf.view(e, n, k // SF_BLOCK),
            "offsets": random_offsets(m, e, torch.Generator().manual_seed(seed)),
            "alpha": alpha_from_global_scales(gs_a, gs_b),
        }
    inputs["out"] = torch.full((m, n), poison, dtype=torch.bfloat16, device=device)
    return {name: t.to(device).contiguous() for name, t in inputs.items()}
