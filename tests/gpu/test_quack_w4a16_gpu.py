"""quack_w4a16_gemm and its per-row-alpha twin quack_w4a16_rowalpha_gemm on a Hopper GPU: every
built problem against the float64 reference on fresh random NVFP4 weights and activations (the
twin with a two-valued alpha row, as q_a + kv has), with NaN-poisoned outputs and guard rows
around them; alpha is read from the device at each call; CUDA-graph replay with new data."""

import pytest
import torch

from nvfp4_aot.kernels import get_family

from .graphs import capture

pytestmark = pytest.mark.gpu

FAMS = (get_family("quack_w4a16_gemm"), get_family("quack_w4a16_rowalpha_gemm"))
per_family = pytest.mark.parametrize("fam", FAMS, ids=[f.name for f in FAMS])
DEV = torch.device("cuda")
# 1-3: single partial token tile; 64 | 65: a bucket edge of the suggested manifests and a
# token tile edge; 1000: ragged multi-tile; 8192: prefill.
MS = (1, 2, 3, 64, 65, 1000, 8192)


def w4_ops(store, fam):
    ops = [op for op in store.ops.values() if op.spec["family"] == fam.name]
    assert ops, f"no {fam.name} op in the store: add one to the manifest (archs = ['sm_90a'])"
    return ops


def call_args(op, m, inputs):
    """The kernel's arguments in signature order (split-K buckets add flags + workspace)."""
    return [inputs[a.name] for a in op.kernel_for(m).validator.args]


def run(fam, op, m, seed):
    """One call on fresh inputs; out is a NaN-poisoned view with a guard row on each side.
    Returns (mismatches, inputs, guarded buffer)."""
    params = fam.parse_params(op.kernel_for(m).record["params"])
    inputs = fam.make_inputs(params, m, DEV, seed)
    buf = torch.full((m + 2, params.n), float("nan"), dtype=torch.bfloat16, device=DEV)
    inputs["out"] = buf[1 : m + 1]  # contiguous, 16-byte aligned (N * 2 bytes per row)
    want = fam.reference(params, inputs)
    op(*call_args(op, m, inputs))
    torch.cuda.synchronize()
    bad = fam.check(params, inputs, want)
    if not (torch.isnan(buf[0]).all() and torch.isnan(buf[-1]).all()):
        bad.append("wrote outside out (guard rows changed)")
    return bad, inputs, buf


@per_family
def test_matches_reference(store, seed, fam):
    failures = []
    for op in w4_ops(store, fam):
        for i, m in enumerate(MS):
            if m > op.max_m:
                continue
            bad, _, _ = run(fam, op, m, seed + i)
            failures += [f"{op.name} M={m}: {b}" for b in bad]
    assert not failures, "\n".join(failures)


@per_family
def test_alpha_is_read_from_device_each_call(store, seed, fam):
    """Scaling alpha by 2 scales every output exactly by 2 (a power of two commutes with the
    bf16 rounding): alpha really is a runtime operand, not a compile-time constant."""
    for op in w4_ops(store, fam):
        bad, inputs, _ = run(fam, op, min(65, op.max_m), seed)
        assert not bad, bad
        first = inputs["out"].clone()
        inputs["alpha"].mul_(2.0)
        op(*call_args(op, min(65, op.max_m), inputs))  # split-K: the flags the first call cleaned
        torch.cuda.synchronize()
        assert torch.equal(inputs["out"], first * 2), op.name


@per_family
def test_cuda_graph_replay_with_new_data(store, seed, fam):
    op = w4_ops(store, fam)[0]
    m = min(3, op.max_m)
    params = fam.parse_params(op.kernel_for(m).record["params"])
    buf = fam.make_inputs(params, m, DEV, seed)
    args = call_args(op, m, buf)
    op(*args)  # loaded and warm before capture
    graph, _ = capture(lambda: op(*args))
    for i in range(3):
        fresh = fam.make_inputs(params, m, DEV, seed + 100 + i)
        for name in ("act", "blob", "sf", "alpha", "out"):
            buf[name].copy_(fresh[name])  # out: NaN poison again
        graph.replay()
        torch.cuda.synchronize()
        want = fam.reference(params, fresh)
        assert fam.check(params, buf, want) == [], f"replay {i}"
