"""The w4a16 kernels' weights on the CPU: a bit-exact replay of the kernel's decode.

The weights ARE quack's nvfp4 layout (kernels/quack_w4a16/layout.py prepare_weights: blob uint8
[N/64, K/64, 128, 16] + strip uint8 [N/64, K/64, 32, 4, 2], natural K order): one prepared copy
feeds our w4a16 families and quack's. A 16-row block rbi = (64-row group G = rbi // 4, warp
slice w = rbi % 4); for k64 tile kt, lane (g = lane // 4, t = lane % 4) of the warp owns
    blob[G, kt, 32w + lane, 4b + p]   k16 block b, fragment register p: rows g + 8 (p & 1),
                                      K 64kt + 16b + 8 (p >> 1) + 2t (low nibble) and + 1 (high)
    strip[G, kt, 8w + g, b, i]        the E4M3 scale of row g + 8i for the 16 K of block b
i.e. word b of the lane's 16 bytes holds the whole m16n8k16 A fragment of block b, and its two
scale bytes sit in half b % 2 of strip word b // 2 (the same 8 bytes for the 4 lanes of a quad).

The decode (ptx.decode_block, scale_pair) per register p of a block: u = prmt(lo, hi, sel_p)
with lo / hi the low / high nibbles of the word's bytes, (u * (2^6 + 2^12)) & 0x81C081C0 =
bf16x2 v * 2^-126 (exact, the 0.5 subnormal included), times the bf16x2 scale S = e4m3 * 2^119
of row g + 8 (p & 1): v * scale * 2^-7 in bf16, exact; the epilogue multiplies by alpha * 2^7.
`emulate_weights` replays exactly those operations in torch; `decode="sel"` replays
ptx.decode_sel instead (act_order "quad8"): per register q, a = word shifted so that the nibble
pair (K 2t + (q & 1), + 8 of row g + 8 (q >> 1)) has its magnitudes at SEL_MASK, b = the even or
odd nibbles' sign bits shifted so that the pair's signs sit at bits 15 / 31, (a & SEL_MASK) |
(b & ~SEL_MASK), times the same S. `decode="rot"` replays ptx.decode_rot on a blob in word order
"rot" (runtime/word_order.py): register p = OR of rotl(word, r) & mask over ROT_PLAN[p], the same
registers as decode_block's on the nibble-order word.
"""

from __future__ import annotations

import torch

from nvfp4_aot.runtime.word_order import ROT_PLAN, rotl

from ..quack_w4a16.layout import prepare_weights, unprepare_weights
from . import DECODE_MASK, DECODE_MUL, DECODE_SEL, SCALE_MUL

# decode_sel's constants (ptx.py imports cutlass; these are the same numbers, tests compare them)
SEL_MASK = 0x01C001C0
SEL_EVEN, SEL_ODD = 0x08080808, 0x80808080
SEL_PLAN = ((6, "e", 12), (2, "o", 8), (-2, "e", 4), (-6, "o", 0))

_M32 = 0xFFFFFFFF


def prmt(a: torch.Tensor, b: torch.Tensor, sel: int) -> torch.Tensor:
    """PTX prmt.b32 (default mode) on int64 tensors holding 32-bit values: result byte i is byte
    sel[i] & 7 of {b, a}, or its bit 7 replicated when sel[i] & 8."""
    src = (a & _M32) | ((b & _M32) << 32)
    out = torch.zeros_like(a)
    for i in range(4):
        s = (sel >> (4 * i)) & 15
        byte = (src >> (8 * (s & 7))) & 0xFF
        if s & 8:
            byte = torch.where(byte >= 0x80, torch.full_like(byte, 0xFF), torch.zeros_like(byte))
        out |= byte << (8 * i)
    return out


def _bf16_bits_to_double(bits: torch.Tensor) -> torch.Tensor:
    return (bits.to(torch.int32) << 16).view(torch.float32).double()


def _bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).double()


def _shift(x: torch.Tensor, s: int) -> torch.Tensor:
    return ((x << s) & _M32) if s >= 0 else (x >> -s)


def emulate_weights(blob: torch.Tensor, strip: torch.Tensor, decode: str = "mul") -> torch.Tensor:
    """The [N, K] matrix the kernel multiplies (float64, scaled back by 2^7), rebuilt from (blob,
    strip) with the kernel's own bit operations and fragment semantics: equal to the exact
    dequantization iff the layout, the decode and the fragment mapping agree (no GPU needed).
    decode: "mul" (decode_block, act orders natural / quad), "sel" (decode_sel, quad8) or "rot"
    (decode_rot, natural / quad, blob in word order "rot")."""
    g, kt = blob.shape[:2]
    by = blob.reshape(g, kt, 4, 8, 4, 4, 4).to(torch.int64)  # G kt w l c b byte
    x = (by << (8 * torch.arange(4, device=blob.device))).sum(-1)  # the lane's word b
    lo, hi = x & 0x0F0F0F0F, (x >> 4) & 0x0F0F0F0F
    # S = bf16(bf16(e4m3) * 2^119): strip [G kt (w l) b i]
    s = strip.reshape(g, kt, 4, 8, 4, 2).view(torch.float8_e4m3fn).double()
    sm = _bf16_bits_to_double(torch.tensor(SCALE_MUL & 0xFFFF))
    scale = _bf16(_bf16(s) * sm)
    out = torch.empty(g, 4, 2, 8, kt, 4, 2, 4, 2, dtype=torch.float64, device=blob.device)  # G w h l kt b e c i
    if decode == "sel":
        sign = {"e": x & SEL_EVEN, "o": x & SEL_ODD}
        for q, (ms, src, ss) in enumerate(SEL_PLAN):
            a, b = _shift(x, ms), _shift(sign[src], ss)
            bits = (a & SEL_MASK) | (b & ~SEL_MASK & _M32)
            sc = scale[..., q >> 1].unsqueeze(4)  # row g + 8 (q >> 1)
            for i in range(2):  # half i: K 2t + (q & 1) + 8 i, i.e. (e, c-pair index) = (i, q & 1)
                v = _bf16_bits_to_double((bits >> (16 * i)) & 0xFFFF)
                out[:, :, q >> 1, :, :, :, i, :, q & 1] = _bf16(v * sc).permute(0, 2, 3, 1, 5, 4)
        return out.reshape(g * 64, kt * 64) * 2.0**7
    for p in range(4):
        if decode == "rot":  # blob in word order "rot": the same registers, by ROT_PLAN
            bits = torch.zeros_like(x)
            for r, mask in ROT_PLAN[p]:
                bits |= rotl(x, r) & mask
        else:
            u = prmt(lo, hi, DECODE_SEL[p])
            bits = ((u * DECODE_MUL) & _M32) & DECODE_MASK
        sc = scale[..., p & 1].unsqueeze(4)  # G kt w l 1 b
        for i in range(2):
            v = _bf16_bits_to_double((bits >> (16 * i)) & 0xFFFF)  # v * 2^-126, exact
            prod = _bf16(v * sc)  # the bf16x2 multiply (exact by design)
            out[:, :, p & 1, :, :, :, p >> 1, :, i] = prod.permute(0, 2, 3, 1, 5, 4)
    return out.reshape(g * 64, kt * 64) * 2.0**7


__all__ = ["emulate_weights", "prepare_weights", "prmt", "unprepare_weights"]
