"""quack_w4a16_gemm on a Hopper GPU: every built problem against the float64 reference on fresh
random NVFP4 weights and activations, with NaN-poisoned outputs and guard rows around them;
alpha is read from the device at each call; CUDA-graph replay with new data."""

import pytest
import torch

from nvfp4_aot.kernels import get_family

from .graphs import capture

pytestmark = pytest.mark.gpu

FAM = get_family("quack_w4a16_gemm")
DEV = torch.device("cuda")
# 1-3: single partial token tile; 64 | 65: a bucket edge of the suggested manifests and a
# token tile edge; 1000: ragged multi-tile; 8192: prefill.
MS = (1, 2, 3, 64, 65, 1000, 8192)


def w4_ops(store):
    ops = [op for op in store.ops.values() if op.spec["family"] == FAM.name]
    assert ops, f"no {FAM.name} op in the store: add one to the manifest (archs = ['sm_90a'])"
    return ops


def run(op, m, seed):
    """One call on fresh inputs; out is a NaN-poisoned view with a guard row on each side.
    Returns (mismatches, inputs, guarded buffer)."""
    params = FAM.parse_params(op.kernel_for(m).record["params"])
    inputs = FAM.make_inputs(params, m, DEV, seed)
    buf = torch.full((m + 2, params.n), float("nan"), dtype=torch.bfloat16, device=DEV)
    inputs["out"] = buf[1 : m + 1]  # contiguous, 16-byte aligned (N * 2 bytes per row)
    want = FAM.reference(params, inputs)
    op(inputs["act"], inputs["blob"], inputs["sf"], inputs["alpha"], inputs["out"])
    torch.cuda.synchronize()
    bad = FAM.check(params, inputs, want)
    if not (torch.isnan(buf[0]).all() and torch.isnan(buf[-1]).all()):
        bad.append("wrote outside out (guard rows changed)")
    return bad, inputs, buf


def test_matches_reference(store, seed):
    failures = []
    for op in w4_ops(store):
        for i, m in enumerate(MS):
            if m > op.max_m:
                continue
            bad, _, _ = run(op, m, seed + i)
            failures += [f"{op.name} M={m}: {b}" for b in bad]
    assert not failures, "\n".join(failures)


def test_alpha_is_read_from_device_each_call(store, seed):
    """Scaling alpha by 2 scales every output exactly by 2 (a power of two commutes with the
    bf16 rounding): alpha really is a runtime operand, not a compile-time constant."""
    for op in w4_ops(store):
        bad, inputs, _ = run(op, min(65, op.max_m), seed)
        assert not bad, bad
        first = inputs["out"].clone()
        inputs["alpha"].mul_(2.0)
        op(inputs["act"], inputs["blob"], inputs["sf"], inputs["alpha"], inputs["out"])
        torch.cuda.synchronize()
        assert torch.equal(inputs["out"], first * 2), op.name


def test_cuda_graph_replay_with_new_data(store, seed):
    op = w4_ops(store)[0]
    m = min(3, op.max_m)
    params = FAM.parse_params(op.kernel_for(m).record["params"])
    buf = FAM.make_inputs(params, m, DEV, seed)
    args = [buf[a] for a in ("act", "blob", "sf", "alpha", "out")]
    op(*args)  # loaded and warm before capture
    graph, _ = capture(lambda: op(*args))
    for i in range(3):
        fresh = FAM.make_inputs(params, m, DEV, seed + 100 + i)
        for name in ("act", "blob", "sf", "alpha", "out"):
            buf[name].copy_(fresh[name])  # out: NaN poison again
        graph.replay()
        torch.cuda.synchronize()
        want = FAM.reference(params, fresh)
        assert FAM.check(params, buf, want) == [], f"replay {i}"
