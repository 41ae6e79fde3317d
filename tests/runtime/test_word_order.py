"""runtime/word_order.py: the "rot" blob word order is a bit permutation whose decode plan
(ROT_PLAN, read by kernels/w4a16/ptx.py decode_rot) rebuilds quack's fragment registers; the claims
of its docstring (13 instructions, no single-term plan exists); word order as a problem key and the
runners' "w4a16_rot" operands."""

import itertools

import pytest
import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime.errors import ArgumentError
from nvfp4_aot.runtime.weights import BLOB_LAYOUT, OPERANDS, _layouts, operands
from nvfp4_aot.runtime.word_order import (BF16_FIELDS, ROT_PLAN, T_MASK, WORD_ORDERS, check_order, rot_bits,
                                          shift_for, word_order, word_unorder)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF if r % 32 else x


def test_rot_plan_is_a_permutation_with_disjoint_covering_masks():
    assert sorted(rot_bits()) == list(range(32))
    assert T_MASK == sum(1 << (t + 16 * h) for t in BF16_FIELDS for h in (0, 1))
    for terms in ROT_PLAN:
        masks = [m for _, m in terms]
        assert sum(masks) == T_MASK and all(a & b == 0 for a, b in itertools.combinations(masks, 2))


def test_decode_rot_rebuilds_the_fragment_registers_on_every_word_bit():
    """For each nibble-order bit (a one-hot word), the rot-order word decoded by ROT_PLAN sets
    exactly the register bit that quack's fragment semantics give that bit: code c (byte c // 2,
    low nibble first) at bit BF16_FIELDS of half c % 2 of register c // 2."""
    src = rot_bits()
    for bit in range(32):
        code, field = divmod(bit, 4)
        q, h = code // 2, code % 2
        want = {(q, 16 * h + t) for t, f in BF16_FIELDS.items() if f == field}
        word = 1 << src.index(bit)  # the rot-order word holding only that bit
        got = {(qq, t) for qq, terms in enumerate(ROT_PLAN) for r, m in terms for t in range(32)
               if (_rotl(word, r) & m) >> t & 1}
        assert got == want, (bit, got, want)


def test_shift_for_matches_the_rotation_on_the_masked_bits():
    g = torch.Generator().manual_seed(0)
    words = torch.randint(0, 2**32, (256,), generator=g, dtype=torch.int64).tolist()
    for terms in ROT_PLAN:
        for r, mask in terms:
            op, n = shift_for(r, mask)
            for w in words:
                got = {"mov": w, "shl": (w << n) & 0xFFFFFFFF, "shr": w >> n, "rotl": _rotl(w, n)}[op]
                assert got & mask == _rotl(w, r) & mask, (r, mask, op, n)


def test_the_docstring_counts():
    """13 SASS-level operations per word: a shift per non-zero term, one mask operation per term
    (an and; the two-term register: an and of its second term, then one lop3 masking the first
    and merging), 4 multiplies; and no plan of four single-term registers exists (no four
    pairwise disjoint rotations of T_MASK), which is why one register takes two terms."""
    shifts = sum(1 for terms in ROT_PLAN for r, _ in terms if r)
    mask_ops = sum(len(terms) for terms in ROT_PLAN)
    assert shifts + mask_ops + 4 == 13
    rots = [_rotl(T_MASK, r) for r in range(32)]
    assert not any(all(a & b == 0 for a, b in itertools.combinations(c, 2)) for c in itertools.combinations(rots, 4))


def test_word_order_round_trips_and_checks_its_input():
    g = torch.Generator().manual_seed(1)
    blob = torch.randint(0, 256, (2, 3, 128, 16), generator=g, dtype=torch.uint8)
    rot = word_order(blob, "rot")
    assert rot.shape == blob.shape and rot.dtype == torch.uint8 and not torch.equal(rot, blob)
    assert torch.equal(word_unorder(rot, "rot"), blob)
    assert word_order(blob, "nibble") is blob and word_unorder(blob, "nibble") is blob
    # popcount per word is kept (a permutation of bits), and word order is per 4-byte word
    w = blob.reshape(-1, 4).to(torch.int64)
    r = rot.reshape(-1, 4).to(torch.int64)
    pop = lambda t: sum(((t >> i) & 1).sum(-1) for i in range(8))  # noqa: E731
    assert torch.equal(pop(w), pop(r))
    with pytest.raises(ValueError, match="word_order='zig'"):
        word_order(blob, "zig")
    with pytest.raises(ValueError, match="divisible by 4"):
        word_order(torch.zeros((3, 6), dtype=torch.uint8), "rot")


def test_word_order_is_a_problem_key_of_every_family_that_reads_it():
    """A variant's word order is part of its op (op id, manifest problem): a store's op table then
    guarantees each bucket's params agree with it (runtime/store_format.py), and a runner opening
    the op for `word_order` gets only variants decoding that order. quack's families read nibble."""
    for name in ("w4a16_gemm", "w4a16_grouped_gemm", "w4a16_ws_gemm", "w4a16_ws_grouped_gemm"):
        assert "word_order" in get_family(name).problem_keys, name
    for name in ("quack_w4a16_gemm", "quack_w4a16_grouped_gemm"):
        assert not hasattr(get_family(name).params_type, "word_order"), name
    assert set(BLOB_LAYOUT) == set(WORD_ORDERS) and set(OPERANDS[BLOB_LAYOUT["rot"]]) == set(OPERANDS["quack_w4a16"])


def test_rot_operands_are_the_nibble_operands_permuted():
    g = torch.Generator().manual_seed(3)
    q = torch.randint(0, 256, (128, 128), dtype=torch.uint8, generator=g)
    sf = torch.randint(0, 0x7F, (128, 16), dtype=torch.uint8, generator=g)  # finite E4M3
    nib, rot = operands(q, sf, "quack_w4a16"), operands(q, sf, BLOB_LAYOUT["rot"])
    assert torch.equal(rot["strip"], nib["strip"]) and not torch.equal(rot["blob"], nib["blob"])
    assert torch.equal(rot["blob"], word_order(nib["blob"], "rot"))
    assert torch.equal(word_unorder(rot["blob"], "rot"), nib["blob"])
    with pytest.raises(ValueError, match="alternatives"):
        _layouts(q, sf, ("quack_w4a16", "w4a16_rot"), "x")
    with pytest.raises(ArgumentError, match="word_order='zig'"):
        check_order("zig")
