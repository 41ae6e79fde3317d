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
    """One home for weight_scale_2 -> alpha (runtime/weights.py) serves Nvfp4Linear, both MoE
    paths and the weight loader, with the [E, 2] = (gate, up) convention."""
    from nvfp4_aot.runtime.weights import expert_alpha, gate_up_alpha, row_alpha

    assert row_alpha(torch.tensor([0.5, 2.0]), 4, (3, 1), "cpu").tolist() == [0.5, 0.5, 0.5, 2.0]
    assert row_alpha(torch.tensor(0.25), 3, None, "cpu").tolist() == [0.25] * 3
    with pytest.raises(ArgumentError, match="part_sizes"):
        row_alpha(torch.tensor([0.5, 2.0]), 4, (2, 1), "cpu")
    a = expert_alpha(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 2, 4, "cpu")
    assert a.tolist() == [[1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0]]
    assert expert_alpha(torch.tensor([1.0, 3.0]), 2, 2, "cpu").tolist() == [[1.0, 1.0], [3.0, 3.0]]
    gate, ratio = gate_up_alpha(torch.tensor([[1.0, 2.0], [3.0, 3.0], [0.0, 5.0]]), 3, "cpu")
    assert gate.tolist() == [1.0, 3.0, 0.0] and ratio.tolist() == [2.0, 1.0, 1.0]  # zero gate: silu(0) * up = 0
    assert gate_up_alpha(torch.tensor([2.0, 4.0]), 2, "cpu")[1].tolist() == [1.0, 1.0]
    with pytest.raises(ArgumentError, match="w13: weight_scale_2 of expert 1 is not finite"):
        expert_alpha(torch.tensor([[1.0, 1.0], [float("nan"), 1.0]]), 2, 4, "cpu")
    with pytest.raises(ArgumentError, match=r"must be \[E\] or \[E, 2\]"):
        gate_up_alpha(torch.ones(2, 3), 2, "cpu")
