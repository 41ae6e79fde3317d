"""Corrupt grouped offsets / counts, shared by the grouped GEMM families' GPU tests: every grouped
kernel clamps each expert's group into [0, M) on the device (the hot path cannot check device
data), so bad groups may give wrong rows but never a fault or a write outside the output."""

import torch


def corrupt_groups(m: int, e: int):
    """(offsets, counts) pairs: past M, negative, non-monotone, negative counts, and two overlaps
    (every expert live on the same rows: more live experts than rows, so a kernel that searches
    the live experts on the device runs out of grid)."""
    return (([m * 4] * (e + 1), [500] * e), ([-100] * (e + 1), [m * 3] * e),
            (list(range(e + 1))[::-1], [1 << 30] * e), ([m - 5] * (e + 1), [-7] * e),
            ([0] * (e + 1), [1] * e), ([m - 1] * (e + 1), [2] * e))


def check_corrupt_groups(fam, op, m: int, seed: int, dev) -> None:
    """op (a grouped op of fam) at M = m under every corrupt_groups pair: no fault, nothing written
    at or past M (out is a view into a larger NaN-poisoned buffer), and then a correct call on
    fresh data against fam's float64 reference."""
    kern = op.kernel_for(m)
    params = fam.parse_params(kern.record["params"])
    names = [a.name for a in kern.validator.args]
    inputs = fam.make_inputs(params, m, dev, seed)
    big = torch.full((m + 300, params.n), float("nan"), dtype=torch.bfloat16, device=dev)
    inputs["out"] = big[:m]
    for offs, cnts in corrupt_groups(m, params.experts):
        inputs["offsets"].copy_(torch.tensor(offs, dtype=torch.int32))
        inputs["counts"].copy_(torch.tensor(cnts, dtype=torch.int32))
        op(*[inputs[n] for n in names])
        torch.cuda.synchronize()
        assert torch.isnan(big[m:].float()).all(), (
            f"{op.name} M={m}: wrote past M with offsets {offs[:3]}, counts {cnts[:3]}")
    fresh = fam.make_inputs(params, m, dev, seed + 1)
    want = fam.reference(params, fresh)
    op(*[fresh[n] for n in names])
    torch.cuda.synchronize()
    bad = fam.check(params, fresh, want)
    assert bad == [], f"{op.name} M={m} after the corrupt calls: {bad}"
