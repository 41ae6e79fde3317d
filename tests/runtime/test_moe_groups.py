"""check_groups: the host-side validity check of a grouped layout (offsets, counts) that
MoERunner runs in check="full" mode and direct users of w4a16_grouped_gemm can call."""

import pytest
import torch

from nvfp4_aot.runtime import ArgumentError
from nvfp4_aot.runtime.moe import check_groups


def t(*v):
    return torch.tensor(v, dtype=torch.int32)


def test_valid_layout_passes():
    check_groups(t(0, 3, 3, 10), t(2, 0, 7), rows=12)


@pytest.mark.parametrize("offsets,counts,rows,match", [
    (t(0, 3, 2, 10), t(1, 0, 1), 12, "not monotone at expert 1"),
    (t(0, 3, 5, 13), t(1, 0, 1), 12, "exceeds the 12 rows"),
    (t(1, 3, 5, 10), t(1, 0, 1), 12, r"offsets\[0\] = 1"),
    (t(0, 3, 5, 10), t(4, 0, 1), 12, r"counts\[0\] = 4"),
    (t(0, 3, 5), t(1, 0, 1), 12, "need E \\+ 1"),
    (t(0, 3, 5, 10), t(1, -1, 1), 12, r"counts\[1\] = -1"),
])
def test_bad_layouts_named(offsets, counts, rows, match):
    with pytest.raises(ArgumentError, match=match):
        check_groups(offsets, counts, rows)


def test_per_part_scales_become_per_row_alpha():
    """One expansion (linear.parts_to_rows) serves Nvfp4Linear, MoERunner and the weight loader."""
    from nvfp4_aot.runtime.linear import row_alpha
    from nvfp4_aot.runtime.moe import _expert_alpha

    assert row_alpha(torch.tensor([0.5, 2.0]), 4, (3, 1), "cpu").tolist() == [0.5, 0.5, 0.5, 2.0]
    assert row_alpha(torch.tensor(0.25), 3, None, "cpu").tolist() == [0.25] * 3
    with pytest.raises(ArgumentError, match="part_sizes"):
        row_alpha(torch.tensor([0.5, 2.0]), 4, (2, 1), "cpu")
    a = _expert_alpha(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 2, 4, "cpu")
    assert a.tolist() == [[1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0]]
    assert _expert_alpha(torch.tensor([1.0, 3.0]), 2, 2, "cpu").tolist() == [[1.0, 1.0], [3.0, 3.0]]
