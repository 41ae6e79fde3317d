"""CPU checks of the "quad" activation order (runtime/layout.py): the permutation round-trips and
puts K = 16b + 8e + 2t at byte 32t + 8b + 4e of each k64 tile; the w4a16 families' split 'k' /
'n' quad addressing (lane t's two 16-byte loads at byte 32t, bwk[2b + e] = register e of k16
block b), replayed on mma.sync m16n8k16's fragment semantics with the kernel's own decoded
weights (emulate_weights), reproduces act @ W^T; and every family with an act_order knob has a
reference in quad order equal to its natural reference + the permutation."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, random_nvfp4_weights
from nvfp4_aot.kernels.w4a16.prepare import emulate_weights, prepare_weights
from nvfp4_aot.runtime.layout import (act_order, act_unorder, quad8_elem, quad_order, quad_unorder, quad_vector_word,
                                     quad_word)


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 5), tiles=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_quad_order_round_trips_and_permutes_within_tiles(rows, tiles, seed):
    x = torch.randn((rows, 64 * tiles), generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)
    q = quad_order(x)
    assert torch.equal(quad_unorder(q), x) and not torch.equal(q, x)
    for c in range(tiles):  # a permutation inside each 64-column tile
        assert torch.equal(q[:, 64 * c: 64 * c + 64].sort(dim=1).values, x[:, 64 * c: 64 * c + 64].sort(dim=1).values)
    assert torch.equal(act_order(x, "natural"), x) and torch.equal(act_order(x, "quad"), q)


@settings(max_examples=10, deadline=None)
@given(rows=st.integers(1, 4), tiles=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_quad8_is_quad_with_the_pairs_crossed(rows, tiles, seed):
    """quad8 round-trips, and is quad with each (e = 0, e = 1) word pair's bf16 halves crossed:
    what load_quad_words(cross=True) computes from the quad words it gathers."""
    x = torch.randn((rows, 64 * tiles), generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)
    q8 = act_order(x, "quad8")
    assert torch.equal(act_unorder(q8, "quad8"), x) and not torch.equal(q8, act_order(x, "quad"))
    qw = act_order(x, "quad").view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    w0, w1 = qw[:, 0::2], qw[:, 1::2]
    crossed = torch.stack([(w0 & 0xFFFF) | ((w1 << 16) & 0xFFFFFFFF), (w0 >> 16) | (w1 & 0xFFFF0000)], dim=2)
    assert torch.equal(crossed.reshape(rows, -1), q8.view(torch.int32).to(torch.int64) & 0xFFFFFFFF)
    assert sorted(quad8_elem(j) for j in range(64)) == list(range(64))


def test_quad_order_places_each_fragment_pair():
    """Byte 32t + 8b + 4e (element 16t + 4b + 2e) holds K = 16b + 8e + 2t, +1 beside it."""
    x = torch.arange(128, dtype=torch.float32).reshape(1, 128)  # value = its natural K
    q = quad_order(x)
    for tile in range(2):
        for t in range(4):
            for b in range(4):
                for e in range(2):
                    at = 64 * tile + 16 * t + 4 * b + 2 * e
                    k = 64 * tile + 16 * b + 8 * e + 2 * t
                    assert q[0, at].item() == k and q[0, at + 1].item() == k + 1
                    assert quad_word(8 * t + 2 * b + e) == 8 * b + 4 * e + t
    assert sorted(quad_word(w) for w in range(32)) == list(range(32))
    # the glue kernels' closed form (load_quad_words) is the same map
    assert all(quad_vector_word(v, w) == quad_word(4 * v + w) == quad_vector_word(v, 0) + 4 * w
               for v in range(8) for w in range(4))


def test_quad_order_refuses_a_k_off_the_tile():
    with pytest.raises(ValueError, match="K % 64"):
        quad_order(torch.zeros((2, 96)))
    with pytest.raises(ValueError, match="act order"):
        act_order(torch.zeros((2, 64)), "swizzled")


def _bf16_pair(word: torch.Tensor) -> torch.Tensor:
    """An int32 word of two bf16 (low half = the lower K) -> float64 [2]."""
    w = int(word) & 0xFFFFFFFF
    bits = torch.tensor([w & 0xFFFF, w >> 16], dtype=torch.int32)
    return (bits << 16).view(torch.float32).double()


# mma slot s (0..15) of a k16 block -> the natural K its A / B element holds within the block:
# quad (decode_block) the identity; quad8 (decode_sel: register pairs K 2t with 2t + 8, the
# second A register of each row holds 2t + 1 with 2t + 9) slot 2t + 8e + h <- K 2t + e + 8h.
SLOTS = {"quad": list(range(16)), "quad8": [2 * ((s % 8) // 2) + s // 8 + 8 * (s % 2) for s in range(16)]}


def replay_quad_gemm(act: torch.Tensor, w: torch.Tensor, nt: int = 2, order: str = "quad") -> torch.Tensor:
    """out[M, N] as the split 'k' / 'n' quad path computes it, one warp's view at a time:
    A fragments (16 weight rows x k16 block b) from the decoded weights w [N, K] (float64, the
    kernel's: emulate_weights), B fragments of token fragment j read as the kernel reads them:
    lane (g, t) takes the 8 words at byte 32t of tile kt of token row 8j + g, bwk[2b + e] being
    register e of block b; then mma.sync m16n8k16: D[r, n] += sum_k A[r, k] B[k, n] with
    A[g (+8), 2t..2t+1 (+8)] = a0..a3 of lane (g, t) and B[2t + h (+8), g] = b0 / b1 of lane (g, t)."""
    m, k = act.shape
    n = w.shape[0]
    assert m % (8 * nt) == 0 and n % 16 == 0 and k % 64 == 0
    words = act.contiguous().view(torch.int32)  # [M, K/2]
    out = torch.zeros((m, n), dtype=torch.float64)
    for rbi in range(n // 16):
        for tok0 in range(0, m, 8 * nt):
            for kt in range(k // 64):
                for j in range(nt):
                    bmat = torch.zeros((4, 16, 8), dtype=torch.float64)  # per block: B[k16, token]
                    for lane in range(32):
                        g, t = lane // 4, lane % 4
                        row = tok0 + 8 * j + g
                        bwk = words[row, 32 * kt + 8 * t: 32 * kt + 8 * t + 8]  # two 16-byte loads at 32t
                        for b in range(4):
                            bmat[b, 2 * t: 2 * t + 2, g] = _bf16_pair(bwk[2 * b])  # b0
                            bmat[b, 2 * t + 8: 2 * t + 10, g] = _bf16_pair(bwk[2 * b + 1])  # b1
                    for b in range(4):
                        a = w[16 * rbi: 16 * rbi + 16, 64 * kt + 16 * b: 64 * kt + 16 * b + 16]  # A fragment block
                        a = a[:, SLOTS[order]]  # the decode's K order within the block
                        out[tok0 + 8 * j: tok0 + 8 * j + 8, 16 * rbi: 16 * rbi + 16] += (a @ bmat[b]).T
    return out


@pytest.mark.parametrize("order", ["quad", "quad8"])
def test_quad_fragments_reproduce_the_gemm(order):
    """Fresh random NVFP4 weights and bf16 activations: the quad replay equals act @ W^T (float64,
    exact up to summation order: bound 1e-12 relative), and the same replay on natural-order
    activations is far off (the test can fail)."""
    gen = torch.Generator().manual_seed(11)
    q, sf = random_nvfp4_weights(64, 192, gen, "cpu")
    blob, strip = prepare_weights(q, sf)
    w = emulate_weights(blob, strip, "sel" if order == "quad8" else "mul")
    assert torch.equal(w, dequantize(q, sf).double())
    act = torch.randn((16, 192), generator=gen).to(torch.bfloat16)
    want = act.double() @ w.T
    got = replay_quad_gemm(quad_order(act, order), w, order=order)
    assert ((got - want).norm() / want.norm()).item() < 1e-12
    for other in ("natural", *[o for o in ("quad", "quad8") if o != order]):  # the other orders are far off
        wrong = replay_quad_gemm(act_order(act, other), w, order=order)
        assert ((wrong - want).norm() / want.norm()).item() > 0.3


@pytest.mark.parametrize("family,problem", [
    ("w4a16_grouped_gemm", {"n": 128, "k": 256, "experts": 3}),
    ("w4a16_gemm", {"n": 64, "k": 512}),
])
@pytest.mark.parametrize("order", ["quad", "quad8"])
def test_w4a16_quad_reference_is_natural_plus_permutation(family, problem, order):
    fam = get_family(family)
    nat = fam.parse_params(problem)
    quad = fam.parse_params({**problem, "act_order": order})
    assert fam.can_implement(quad, "sm_90a") == []
    a, b = fam.make_inputs(nat, 40, "cpu", seed=5), fam.make_inputs(quad, 40, "cpu", seed=5)
    assert torch.equal(b["act"], quad_order(a["act"], order)) and not torch.equal(b["act"], a["act"])
    wa, wb = fam.reference(nat, a)["out"], fam.reference(quad, b)["out"]
    assert torch.equal(torch.isnan(wa), torch.isnan(wb)) and torch.equal(wa.nan_to_num(), wb.nan_to_num())
    # the reference reads the order: natural-order act under quad params gives another result
    assert not torch.equal(fam.reference(quad, a)["out"].nan_to_num(), wa.nan_to_num())


def test_w4a16_quad_is_split_k_and_n_only():
    fam = get_family("w4a16_grouped_gemm")
    wg = fam.parse_params({"n": 256, "k": 256, "experts": 2, "split": "wg", "warps": 4, "nt": 8, "act_order": "quad"})
    assert any("split 'k' and 'n' only" in r for r in fam.can_implement(wg, "sm_90a"))
    bad = fam.parse_params({"n": 256, "k": 256, "experts": 2, "act_order": "rowmajor"})
    assert any("act_order" in r for r in fam.can_implement(bad, "sm_90a"))
    # the quad table never reaches split 'wg'; natural keeps it for prefill
    assert all(t.get("split", "k") in ("k", "n") for _, t in fam.tile_table({"experts": 48, "act_order": "quad"}))
    assert fam.tile_table({"experts": 48, "act_order": "natural"})[-1][1]["split"] == "wg"


def test_permute_quad_reference_is_natural_plus_permutation():
    fam = get_family("moe_permute")
    problem = {"h": 256, "topk": 2, "experts": 4, "pad": 1}
    nat, quad = fam.parse_params(problem), fam.parse_params({**problem, "act_order": "quad"})
    inputs = fam.make_inputs(nat, 24, "cpu", seed=3)
    want = fam.reference(nat, inputs)["xg"]
    got = fam.reference(quad, inputs)["xg"]
    assert torch.equal(got.view(torch.int16), quad_order(want).view(torch.int16)) and not torch.equal(got, want)
    assert fam.can_implement(fam.parse_params({**problem, "h": 200, "act_order": "quad"}), "sm_90a")


@pytest.mark.parametrize("limit", [0.0, 10.0])
def test_silu_quad_reference_is_natural_plus_permutation(limit):
    fam = get_family("moe_silu_mul")
    nat = fam.parse_params({"i": 192, "limit": limit})
    quad = fam.parse_params({"i": 192, "limit": limit, "act_order": "quad"})
    inputs = fam.make_inputs(nat, 17, "cpu", seed=4)
    want = fam.reference(nat, inputs)["out"]
    got = fam.reference(quad, inputs)["out"]
    assert torch.equal(got, quad_order(want)) and not torch.equal(got, want)
    assert fam.check(quad, {"out": got}, {"out": quad_order(want)}) == []
    assert fam.check(quad, {"out": want}, {"out": got}) != []  # natural order under quad: caught
