"""Bit order inside the 4-byte words of the prepared NVFP4 blob (quack's layout,
kernels/quack_w4a16/layout.py: word b of a lane's 16 bytes = the whole m16n8k16 A fragment of
k16 block b, 8 E2M1 codes). Standard library only; word_order / word_unorder import torch lazily.

  "nibble"  quack's: code i at bits 4i .. 4i + 3 (m, e0, e1, s from bit 4i up). Read by quack's
            kernels, w4a16_ws, and w4a16's decode_block / decode_sel. Nvfp4Linear's default.
  "rot"     the same 32 bits permuted (ROT_PLAN) so that w4a16's decode_rot builds A register q
            from one rotation (or shift) of the word and one mask: register q
            = OR over its terms (r, mask) of rotl(word, r) & mask. Three registers take one term
            (one of them r = 0), the fourth two: 4 shifts + 3 ands + and + lop3 + 4 bf16x2
            multiplies = 13 SASS per word against decode_block's 19 and decode_sel's 17 (2 and +
            7 shifts + 4 lop3 + 4 multiplies), giving quack's A registers (decode_block's) bit for
            bit. Why not one term each: the bf16
            target bits of a register (BF16_FIELDS, both halves: mask T_MASK) shifted by any r
            cannot tile the 32 bits (no 4 disjoint rotations of T_MASK exist; at most 3).
            Read by w4a16 (act orders natural / quad) and w4a16_ws; not by quack's kernels.
            A runner in word order "rot" prepares its weights in layout "w4a16_rot"
            (runtime/weights.py) and opens every GEMM op with word_order "rot" in its problem;
            MoERunner's decode path then reads act order quad and it has no quack tier.
  "rotq"    "rot"'s words, placed transposed within each quad of lanes (QUAD_PLACED; layout
            "w4a16_rotq"): per (16-row slice, k64 tile), the 16 bytes at 16 (8 t + g) hold, as
            words j = 0..3, the rot-order words t of lanes (g, j) in quack's placement. Lane (g, t)
            of w4a16's split 'k' then loads its own 16 bytes and finds, in word j, the rows (g, g + 8)
            x K {16 t + 2 j, + 1, + 8, + 9} of the k64 tile: all four words inside K 16 t .. 16 t + 15,
            one scale group, so the lane reads its activations as two 16-byte loads of natural rows
            (K 16 t .. 16 t + 15: word j and j + 4 are MMA block j's B registers) with no staging
            and one scale pair per row (cfea70a's decode speed on natural activations). w4a16_ws
            reads its k16 block b's word as 4 bytes at 16 (8 b + g) + 4 t (four 32-bit shared loads
            a k64 step instead of one 128-bit one, every bank once per load). Nvfp4Linear only.
Each runner's default (word_order=None) is its measured best on an H200 (docs/PERFORMANCE.md
"session 24"): MoERunner "rot" (runtime/moe.py WORD_ORDER), Nvfp4Linear "nibble" (runtime/linear.py
WORD_ORDER); `nvfp4-build plan --word-order` and vLLM's NVFP4_AOT_WORD_ORDER force one for both.

The register semantics are quack's fragment registers (decode_block's, and the wgmma A registers
of w4a16_ws): register q = byte q of the nibble-order word, code 2q (the lower K) in its low half
and code 2q + 1 in its high half, rows g + 8 (q & 1); each value as bf16 bits v * 2^-126: E2M1 bit
(m, e0, e1, s) at half bit (6, 7, 8, 15) (BF16_FIELDS). So it serves the act orders that pair K
as the weights do (natural, quad), not quad8 (whose crossed pairs are decode_sel's), and a
prefill kernel reading natural K can decode it too.
"""

from __future__ import annotations

WORD_ORDERS = ("nibble", "rot", "rotq")
ROT_DECODED = ("rot", "rotq")  # the orders whose words decode_rot reads (rot's bit order)
QUAD_PLACED = ("rotq",)  # the orders with words placed transposed within each quad of lanes (_place_quads)
# the orders a grouped GEMM (so MoERunner) reads: not QUAD_PLACED, whose placement serves Nvfp4Linear's natural rows
GROUPED_ORDERS = tuple(o for o in WORD_ORDERS if o not in QUAD_PLACED)
BF16_FIELDS = {6: 0, 7: 1, 8: 2, 15: 3}  # bf16 bit of a half <- bit of the E2M1 code (m, e0, e1, s)
T_MASK = 0x81C081C0  # a register's target bits: BF16_FIELDS in both halves
# decode_rot, per A register q: terms (rotate-left r, mask); masks of a register are disjoint and
# cover T_MASK. Found by exhaustive search (three single-term registers, r in {0, 4, 26}; the rest
# two terms): see the module docstring.
ROT_PLAN = (((0, T_MASK),), ((4, T_MASK),), ((26, T_MASK),), ((6, 0x80C080C0), (30, 0x01000100)))


def rotl(x, r: int):
    """x (32-bit values: a Python int, or an int64 tensor) rotated left by r (0 <= r < 32): the
    operation ROT_PLAN's terms are defined by (word_order's permutation, prepare.emulate_weights)."""
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF if r else x


def shift_for(r: int, mask: int) -> tuple[str, int]:
    """The cheapest instruction that computes rotl(word, r) on `mask`'s bits: ("mov", 0) for r = 0,
    ("shl", r) when every masked bit t has its source t - r >= 0, ("shr", 32 - r) when t + 32 - r
    <= 31, else ("rotl", r). A plain shift may run on either integer pipe (ptxas: IMAD.SHL)."""
    bits = [t for t in range(32) if mask >> t & 1]
    if r == 0:
        return "mov", 0
    if all(t - r >= 0 for t in bits):
        return "shl", r
    if all(t + 32 - r <= 31 for t in bits):
        return "shr", 32 - r
    return "rotl", r


def rot_bits() -> tuple[int, ...]:
    """ROT_PLAN as a bit permutation: entry j = the nibble-order bit that rot-order bit j holds."""
    src: list[int | None] = [None] * 32
    for q, terms in enumerate(ROT_PLAN):
        for r, mask in terms:
            for t in range(32):
                if mask >> t & 1:
                    j = (t - r) % 32
                    if src[j] is not None:
                        raise AssertionError(f"ROT_PLAN: bit {j} read twice")
                    src[j] = 4 * (2 * q + t // 16) + BF16_FIELDS[t % 16]  # code 2q (low half), 2q + 1
    if sorted(src) != list(range(32)):  # type: ignore[type-var]
        raise AssertionError("ROT_PLAN is not a permutation of the word's bits")
    return tuple(src)  # type: ignore[arg-type]


def _permute_words(blob, src: tuple[int, ...]):
    """blob (uint8, last dim a multiple of 4, little-endian words) with bit j of every word taken
    from bit src[j]: grouped by rotation distance, a handful of passes."""
    import torch

    if blob.dtype != torch.uint8 or blob.shape[-1] % 4:
        raise ValueError(f"blob must be uint8 with a last dimension divisible by 4, got {blob.dtype} {tuple(blob.shape)}")
    by = blob.reshape(*blob.shape[:-1], blob.shape[-1] // 4, 4).to(torch.int64)
    x = (by << (8 * torch.arange(4, device=blob.device))).sum(-1)
    out = torch.zeros_like(x)
    for d in sorted({(j - s) % 32 for j, s in enumerate(src)}):
        mask = sum(1 << j for j, s in enumerate(src) if (j - s) % 32 == d)
        out |= rotl(x, d) & mask
    return ((out.unsqueeze(-1) >> (8 * torch.arange(4, device=blob.device))) & 0xFF).to(torch.uint8).reshape(blob.shape)


def check_order(order: str, what: str = "word_order", allowed: tuple[str, ...] = WORD_ORDERS) -> str:
    """`order` if it is one of `allowed` (word orders), else an ArgumentError (a ValueError) naming `what`."""
    if order not in allowed:
        from .errors import ArgumentError

        raise ArgumentError(f"{what}={order!r} must be one of {allowed} (runtime/word_order.py)")
    return order


def _place_quads(blob, inverse: bool = False):
    """QUAD_PLACED's word placement (the module docstring, "rotq"): blob [..., 128, 16] (a 64-row group's k64
    tile: 4 slices x 32 lanes x 4 words) with word t of lane (g, j) moved to word j of the 16 bytes at 8 t + g
    of its slice; `inverse`: back. A permutation of whole words, bits untouched."""
    if blob.shape[-2:] != (128, 16):
        raise ValueError(f"blob must end in (128, 16) (a 64-row group's k64 tile), got {tuple(blob.shape)}")
    lead, n = blob.shape[:-2], blob.dim() - 2
    # quack's placement: dims (slice, g, j, t, byte), lane 4 g + j, word t; QUAD_PLACED's: (slice, t, g, j, byte)
    if inverse:
        x, order = blob.reshape(*lead, 4, 4, 8, 4, 4), (0, 2, 3, 1, 4)  # (slice, t, g, j) -> (slice, g, j, t)
    else:
        x, order = blob.reshape(*lead, 4, 8, 4, 4, 4), (0, 3, 1, 2, 4)  # (slice, g, j, t) -> (slice, t, g, j)
    return x.permute(*range(n), *(n + d for d in order)).reshape(blob.shape).contiguous()


def for_runner(order: str | None, allowed: tuple[str, ...]) -> str | None:
    """A word order asked of both runners at once (`nvfp4-build plan --word-order`, $NVFP4_AOT_WORD_ORDER) as one runner
    takes it: the order itself when the runner reads it (`allowed`), else None, i.e. that runner's own default
    ("rotq" is Nvfp4Linear's alone: MoERunner keeps its default)."""
    return order if order in allowed else None


def word_order(blob, order: str):
    """A prepared blob (nibble order) in word order `order` (a copy when it changes)."""
    check_order(order)
    if order == "nibble":
        return blob
    blob = _permute_words(blob, rot_bits())
    return _place_quads(blob) if order in QUAD_PLACED else blob


def word_unorder(blob, order: str):
    """The inverse of word_order: a blob in `order` -> nibble order."""
    check_order(order)
    if order == "nibble":
        return blob
    if order in QUAD_PLACED:
        blob = _place_quads(blob, inverse=True)
    inv = [0] * 32
    for j, s in enumerate(rot_bits()):
        inv[s] = j
    return _permute_words(blob, tuple(inv))


__all__ = ["BF16_FIELDS", "GROUPED_ORDERS", "QUAD_PLACED", "ROT_DECODED", "ROT_PLAN", "T_MASK", "WORD_ORDERS", "check_order", "for_runner", "rot_bits", "rotl",
           "shift_for", "word_order", "word_unorder"]
