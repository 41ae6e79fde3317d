"""Layout arithmetic shared by the route family (which produces the grouped layout) and the
runners and planner (which size buffers and buckets from it). Standard library only.

Grouped layout capacity: route's src_token has CAP = (M * topk + E * (pad - 1)) // pad * pad
rows, enough for any routing (the bound is derived in kernels/moe_glue/__init__.py).

Activation order (ACT_ORDERS) of a W4A16 GEMM input (its K axis), written by the glue that
produces it and read by the GEMM (one knob on both sides, declared together by MoERunner):
  "natural"  K in order (what the model, quack's kernels and split "wg" read);
  "quad"     inside every k64 tile (64 bf16 = 128 bytes) of a row, lane t's eight mma.sync B
             fragment words are contiguous: byte 32t + 8b + 4e holds the bf16 pair at
             K = 16b + 8e + 2t (b = k16 block 0..3, e = fragment register 0..1, t = lane in quad
             0..3), so split "k" / "n" load lane t's fragments of a token row with two 16-byte
             loads at byte 32t (kernels/w4a16/kernel.py). K % 64 == 0.
  "quad8"    quad with the bf16 pairs crossed: byte 32t + 8b + 4e holds the bf16 pair at
             K = 16b + 2t + e and 16b + 2t + e + 8 (the same 16 bytes per lane and block as quad,
             its 4 elements reordered), the order decode_sel's A registers pair K in (one shift
             per register instead of a gather: kernels/w4a16/ptx.py). K % 64 == 0.
quad_word / quad8_elem / act_order / act_unorder are the one definition (kernels and references use them).
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


ACT_ORDERS = ("natural", "quad", "quad8")
QUAD_ORDERS = ("quad", "quad8")  # the orders that permute within QUAD_TILE columns
QUAD_TILE = 64  # bf16 per quad-order tile (one k64 tile of the weight layout)


def quad_word(w: int) -> int:
    """Quad order, in 4-byte words (bf16 pairs) of one 32-word tile: the natural word that quad
    word w holds. w = 8t + 2b + e (byte 32t + 8b + 4e) holds K = 16b + 8e + 2t, natural word
    8b + 4e + t."""
    t, b, e = w // 8, (w % 8) // 2, w % 2
    return 8 * b + 4 * e + t


def quad_vector_word(v, w):
    """quad_word(4 v + w) in closed form, for the glue kernels that write quad order one 16-byte
    vector v (0..7 of a tile) at a time with v known only at run time: word w (0..3) of vector v
    holds natural word 16 (v % 2) + 4 w + v // 2 (tests/kernels/test_quad_order.py checks the
    equality for every v, w)."""
    return 16 * (v % 2) + 4 * w + v // 2


def quad8_elem(j: int) -> int:
    """Quad8 order, in bf16 elements of one 64-element tile: the natural element that element j
    holds. j = 2w + h, w = 8t + 2b + e (as quad_word) holds K = 16b + 8h + 2t + e (quad: 16b + 8e
    + 2t + h, i.e. e and h swapped)."""
    w, h = j // 2, j % 2
    t, b, e = w // 8, (w % 8) // 2, w % 2
    return 16 * b + 8 * h + 2 * t + e


def _quad_index(k: int, order: str = "quad"):
    import torch

    if k % QUAD_TILE:
        raise ValueError(f"{order} activation order needs K % {QUAD_TILE} == 0, got K = {k}")
    if order == "quad8":
        elems = torch.tensor([quad8_elem(j) for j in range(QUAD_TILE)])
    else:
        words = torch.tensor([quad_word(w) for w in range(QUAD_TILE // 2)])
        elems = torch.stack([2 * words, 2 * words + 1], dim=1).reshape(-1)  # quad elem j <- natural elems[j]
    return (torch.arange(k // QUAD_TILE).unsqueeze(1) * QUAD_TILE + elems).reshape(-1)


def quad_order(x, order: str = "quad"):
    """x [..., K] natural -> `order` ("quad" | "quad8") along the last axis (a copy; torch, imported lazily)."""
    return x[..., _quad_index(x.shape[-1], order).to(x.device)].contiguous()


def quad_unorder(x, order: str = "quad"):
    """The inverse of quad_order: x [..., K] in `order` -> natural order."""
    import torch

    idx = _quad_index(x.shape[-1], order).to(x.device)
    out = torch.empty_like(x)
    out[..., idx] = x
    return out


def _check(order: str):
    if order not in ACT_ORDERS:
        raise ValueError(f"act order {order!r} must be one of {ACT_ORDERS}")


def act_order(x, order: str):
    """x (natural) in `order` (ACT_ORDERS)."""
    _check(order)
    return quad_order(x, order) if order in QUAD_ORDERS else x


def act_unorder(x, order: str):
    """The inverse of act_order: x in `order` -> natural."""
    _check(order)
    return quad_unorder(x, order) if order in QUAD_ORDERS else x


__all__ = ["ACT_ORDERS", "GROUP_PAD", "QUAD_ORDERS", "QUAD_TILE", "act_order", "act_unorder", "capacity",
           "capacity_expr", "quad8_elem", "quad_order", "quad_unorder", "quad_vector_word", "quad_word"]
