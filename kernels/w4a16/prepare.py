"""Host-side weight repack for the w4a16 kernels (torch only; runs once at weight load).

Checkpoint layout (ModelOpt NVFP4): q uint8 [N, K/2], byte j of a row = codes of k = 2j (low
nibble) and k = 2j + 1 (high nibble); sf E4M3 bytes [N, K/16], row-major.

Kernel layout: int32 [N/16, K/256, 576] ("chunk" = 16 weight rows x 256 of K):
  words [kt*128 + lane*4 + b], kt < 4 (k64 tile), lane < 32, b < 4 (MMA k16 block):
      8 codes of lane (g = lane // 4, t = lane % 4) for block b. With r0 = 16*rb + g and
      k0 = chunk*256 + kt*64 + 16*t + 4*b, nibble position p of the word holds
          p = 0: (r0, k0)    p = 4: (r0, k0+1)      -> fragment register a0a1 (row g)
          p = 1: (r0+8, k0)  p = 5: (r0+8, k0+1)    -> a2a3 (row g+8)
          p = 2: (r0, k0+2)  p = 6: (r0, k0+3)      -> a4a5 (row g)
          p = 3: (r0+8, k0+2) p = 7: (r0+8, k0+3)   -> a6a7 (row g+8)
      i.e. the MMA's logical k (2t, 2t+1 | 2t+8, 2t+9) of block b is original K
      16t + 4b + (0, 1 | 2, 3): lane t's 16 K values are exactly scale group t of the tile.
  words [512 + lane*2 + j], j < 2: scale bytes of lane (g, t): byte 2*kt + h = sf(r0 + 8h,
      group chunk*16 + kt*4 + t).
The decode (kernel.py) reads pair p from (w << s) & 0x01C001C0 | (w << s') & 0x80008000 with
w itself for p in {0, 1} and w >> 8 for p in {2, 3}; `emulate` below replays exactly that.
"""

from __future__ import annotations

import torch

from . import CHUNK_K, CHUNK_WORDS

_POS = torch.tensor([[0, 4, 2, 6], [1, 5, 3, 7]])  # nibble position of (h, i)


def _check(q: torch.Tensor, sf: torch.Tensor) -> tuple[int, int]:
    if q.dtype != torch.uint8 or q.dim() != 2:
        raise ValueError(f"weight must be uint8 [N, K/2], got {q.dtype} {tuple(q.shape)}")
    n, k = q.shape[0], q.shape[1] * 2
    if sf.dtype not in (torch.uint8, torch.float8_e4m3fn) or tuple(sf.shape) != (n, k // 16):
        raise ValueError(f"weight_scale must be E4M3 [N, K/16] = [{n}, {k // 16}], got {sf.dtype} {tuple(sf.shape)}")
    if n % 16 or k % CHUNK_K:
        raise ValueError(f"w4a16 needs N % 16 == 0 and K % {CHUNK_K} == 0, got N={n}, K={k}")
    return n, k


def repack(q: torch.Tensor, sf: torch.Tensor) -> torch.Tensor:
    """(q [N, K/2] uint8, sf [N, K/16] E4M3) -> int32 [N/16, K/256, 576] (see module doc)."""
    n, k = _check(q, sf)
    c = k // CHUNK_K
    codes = torch.stack([q & 15, q >> 4], dim=-1).view(n, k).to(torch.int64)
    # rows r = rb*16 + h*8 + g ; k = ((c*4 + kt)*4 + t)*16 + b*4 + i
    x = codes.view(n // 16, 2, 8, c, 4, 4, 4, 4).permute(0, 3, 4, 2, 5, 6, 1, 7)  # rb c kt g t b h i
    shifts = (4 * _POS).to(q.device)
    words = (x << shifts).sum(dim=(-2, -1))  # disjoint nibbles: sum == or
    words = words.reshape(n // 16, c, 512)
    s = sf.view(torch.uint8).to(torch.int64).view(n // 16, 2, 8, c, 4, 4)  # rb h g c kt t
    s = s.permute(0, 3, 2, 5, 4, 1).reshape(n // 16, c, 32, 2, 4)  # rb c lane j (kt%2, h)
    sw = (s << torch.tensor([0, 8, 16, 24], device=q.device)).sum(-1).reshape(n // 16, c, 64)
    blob = torch.cat([words, sw], dim=-1)
    blob = torch.where(blob >= 1 << 31, blob - (1 << 32), blob).to(torch.int32)
    assert blob.shape[-1] == CHUNK_WORDS
    return blob.contiguous()


def unrepack(blob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of repack: int32 [N/16, K/256, 576] -> (q uint8 [N, K/2], sf uint8 [N, K/16])."""
    nb, c, _ = blob.shape
    n, k = nb * 16, c * CHUNK_K
    w = blob.to(torch.int64) & 0xFFFFFFFF
    words = w[..., :512].reshape(nb, c, 4, 8, 4, 4)  # rb c kt g t b
    nib = (words.unsqueeze(-1).unsqueeze(-1) >> (4 * _POS).to(blob.device)) & 15  # ... h i
    codes = nib.permute(0, 6, 3, 1, 2, 4, 5, 7).reshape(n, k)  # rb h g c kt t b i
    q = (codes[:, 0::2] | (codes[:, 1::2] << 4)).to(torch.uint8)
    sw = w[..., 512:].reshape(nb, c, 32, 2, 1) >> torch.tensor([0, 8, 16, 24], device=blob.device)
    s = (sw & 255).reshape(nb, c, 8, 4, 4, 2)  # rb c g t kt h
    sf = s.permute(0, 5, 2, 1, 4, 3).reshape(n, k // 16).to(torch.uint8)
    return q.contiguous(), sf.contiguous()


def _bf16_bits_to_float(bits: torch.Tensor) -> torch.Tensor:
    return (bits.to(torch.int32) << 16).view(torch.float32)


def emulate_weights(blob: torch.Tensor) -> torch.Tensor:
    """The [N, K] matrix the kernel multiplies, rebuilt with the kernel's own bit operations and
    fragment semantics (float64, scaled back by 2^7): equal to the exact dequantization iff the
    repack, the decode and the K permutation agree. Checks the layout without a GPU."""
    nb, c, _ = blob.shape
    w = blob.to(torch.int64) & 0xFFFFFFFF
    words = w[..., :512].reshape(nb, c, 4, 8, 4, 4)  # rb c kt g t b
    m32 = 0xFFFFFFFF
    regs = []
    for p in range(4):  # fragment registers a0a1, a2a3, a4a5, a6a7
        u = words if p < 2 else words >> 8
        s = 6 - 4 * (p % 2)
        bits = (((u << s) & 0x01C001C0) | ((u << (s + 6)) & 0x80008000)) & m32
        lo, hi = _bf16_bits_to_float(bits & 0xFFFF), _bf16_bits_to_float(bits >> 16)
        regs.append(torch.stack([lo, hi], -1).double())  # v * 2^-126, exact
    # scale of (lane, kt, h) as the kernel forms it: bf16(float(e4m3) * 2^119)
    sw = w[..., 512:].reshape(nb, c, 8, 4, 2, 1) >> torch.tensor([0, 8, 16, 24], device=blob.device)
    sf = (sw & 255).reshape(nb, c, 8, 4, 4, 2).to(torch.uint8).view(torch.float8_e4m3fn).float()  # rb c g t kt h
    sf_dec = (sf * 2.0**119).to(torch.bfloat16).double()
    out = torch.empty(nb, 2, 8, c, 4, 4, 4, 4, dtype=torch.float64, device=blob.device)  # rb h g c kt t b i
    for p, (h, i0) in enumerate([(0, 0), (1, 0), (0, 2), (1, 2)]):
        scale = sf_dec[..., h].permute(0, 1, 4, 2, 3)[..., None, None]  # rb c kt g t 1 1
        prod = regs[p] * scale  # rb c kt g t b 2 (the bf16x2 multiply)
        prod = prod.to(torch.bfloat16).double()  # the kernel rounds to bf16 here (exact by design)
        out[:, h, :, :, :, :, :, i0 : i0 + 2] = prod.permute(0, 3, 1, 2, 4, 5, 6)
    return out.reshape(nb * 16, c * CHUNK_K) * 2.0**7


__all__ = ["repack", "unrepack", "emulate_weights"]
