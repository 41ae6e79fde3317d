"""w4a16_gemm / w4a16_grouped_gemm (our Hopper kernels) against the float64 reference over the
exactly dequantized weights, on fresh random data with NaN-poisoned outputs (rows outside every
expert's count must keep the poison), per-row two-valued alpha (the fused q_a + kv case),
grouped distributions, CUDA-graph replay with new data and new offsets, and refusals."""

import pytest
import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime.errors import Nvfp4AotError

from .corrupt import check_corrupt_groups
from .graphs import capture, replay_without_allocating

pytestmark = pytest.mark.gpu

DENSE = get_family("w4a16_gemm")
GROUPED = get_family("w4a16_grouped_gemm")
DEV = torch.device("cuda")
DENSE_MS = (1, 2, 3, 7, 8, 9, 15, 16, 17, 64, 65, 1000, 8192)
# 240 / 241 and 384 / 385: quad8's t = 5 and t = 8 edges at 48 experts
GROUPED_MS = (1, 3, 200, 240, 241, 384, 385, 6016, 6145, 8192, 12160)
GRAPH_M = 6016  # the graph-replay tests' rows (the runner manifests' ops, e.g. rot_check's, stop lower)
DISTS = ("uniform", "skewed", "single", "empty")


def ops(store, fam):
    found = [op for op in store.ops.values() if op.spec["family"] == fam.name]
    assert found, f"no {fam.name} op in the store (manifests/default.toml has them)"
    return found


def names(fam):
    return [a.name for a in fam.signature(fam.parse_params(_any_params(fam))).args]


def _any_params(fam):
    return {"n": 256, "k": 256, "experts": 2} if fam is GROUPED else {"n": 256, "k": 256}


def call(op, fam, inputs):
    op(*[inputs[n] for n in names(fam)])


def run(op, fam, m, seed, **kw):
    params = fam.parse_params(op.kernel_for(m).record["params"])
    inputs = fam.make_inputs(params, m, DEV, seed, **kw)
    want = fam.reference(params, inputs)
    call(op, fam, inputs)
    torch.cuda.synchronize()
    return fam.check(params, inputs, want), inputs, params


def test_dense_matches_reference(store, seed):
    failures = []
    for op in ops(store, DENSE):
        for i, m in enumerate(DENSE_MS):
            if m <= op.max_m:
                bad, _, _ = run(op, DENSE, m, seed + i)
                failures += [f"{op.name} M={m}: {b}" for b in bad]
    assert not failures, "\n".join(failures)


def test_grouped_matches_reference(store, seed):
    failures = []
    for op in ops(store, GROUPED):
        for i, m in enumerate(GROUPED_MS):
            for d, dist in enumerate(DISTS):
                if m <= op.max_m:
                    bad, _, _ = run(op, GROUPED, m, seed + 10 * i + d, dist=dist)
                    failures += [f"{op.name} M={m} {dist}: {b}" for b in bad]
    assert not failures, "\n".join(failures)


def test_grouped_idle_experts_read_nothing(store, seed):
    """All counts zero: nothing written (the poison survives everywhere)."""
    op = ops(store, GROUPED)[0]
    _, inputs, params = run(op, GROUPED, 256, seed)
    inputs["counts"].zero_()
    inputs["out"].fill_(float("nan"))
    call(op, GROUPED, inputs)
    torch.cuda.synchronize()
    assert torch.isnan(inputs["out"].float()).all()


def _graph_ops(store):
    """The first grouped op, and every small one (the test manifests' shapes: cheap inputs) whose
    kernel at M = GRAPH_M differs from those already picked (e.g. the cp.async-ring split 'n')."""
    picked, seen = [], set()
    for i, op in enumerate(op for op in ops(store, GROUPED) if op.max_m >= GRAPH_M):
        p = GROUPED.parse_params(op.kernel_for(GRAPH_M).record["params"])
        tun = (p.warps, p.rb, p.nt, p.split, p.stages, p.act_order, p.tail)
        if i == 0 or (p.experts * p.n * p.k <= 1 << 24 and tun not in seen):
            picked.append(op)
            seen.add(tun)
    return picked


def test_grouped_graph_replay_new_data_and_offsets(store, seed):
    for op in _graph_ops(store):
        _graph_replay(op, seed)


def test_grouped_graph_replay_few_rows_new_experts(store, seed):
    """M = 5 rows: the launch holds min(E, M) = 5 rows of CTAs, each finding the n-th expert with
    rows on the device (kernel._nth_active); replays route the rows to other experts (new
    offsets, 'single' / 'empty' / uniform over 48), so a graph captured once must follow them."""
    quad = [op for op in ops(store, GROUPED) if op.spec["problem"].get("act_order") == "quad8"]
    rot = [op for op in ops(store, GROUPED) if op.spec["problem"].get("word_order") == "rot"]
    for op in [ops(store, GROUPED)[0]] + quad[:1] + rot[:1]:
        _graph_replay(op, seed, m=5)


def _graph_replay(op, seed, m=GRAPH_M):
    params = GROUPED.parse_params(op.kernel_for(m).record["params"])
    buf = GROUPED.make_inputs(params, m, DEV, seed)
    args = [buf[n] for n in names(GROUPED)]
    call(op, GROUPED, buf)
    graph, _ = capture(lambda: op(*args))
    for i, dist in enumerate(DISTS):
        fresh = GROUPED.make_inputs(params, m, DEV, seed + 100 + i, dist=dist)
        for n in names(GROUPED):
            buf[n].copy_(fresh[n])
        replay_without_allocating(graph, f"{op.name} replay {i} ({dist})")
        assert GROUPED.check(params, buf, GROUPED.reference(params, fresh)) == [], f"{op.name} replay {i} ({dist})"


def test_grouped_corrupt_offsets_stay_in_bounds(store, seed):
    """tests/gpu/corrupt.py's groupings (the overlapping ones put more live experts than the min(E,
    M) grid rows, so the device-side expert search runs out of rows), on each small op (every
    tuning of the test manifests) at M = 3 (3 grid rows) and 1200 (one per expert), and on one
    quad (word order rot) and one quad8 op with more than 32 experts (two ballot rounds of the search)."""
    prob = [(op, op.spec["problem"]) for op in ops(store, GROUPED)]
    small = [op for op, p in prob if p["experts"] * p["n"] * p["k"] <= 1 << 24]
    wide = [[op for op, p in prob if p["experts"] > 32 and p.get("act_order") == o][:1] for o in ("quad", "quad8")]
    wide = [op for ops_ in wide for op in ops_]
    for op in small + wide or ops(store, GROUPED)[:1]:
        for m in (3, 1200):
            check_corrupt_groups(GROUPED, op, m, seed, DEV)


def test_bad_inputs_refused_before_launch(store, seed):
    op = ops(store, GROUPED)[0]
    _, inputs, params = run(op, GROUPED, 64, seed)
    bad = dict(inputs)
    bad["act"] = inputs["act"].float()
    with pytest.raises(Nvfp4AotError, match="act"):
        call(op, GROUPED, bad)
    bad = dict(inputs)
    bad["offsets"] = inputs["offsets"][:-1]
    with pytest.raises(Nvfp4AotError, match="offsets"):
        call(op, GROUPED, bad)
    bad = dict(inputs)
    bad["act"] = torch.empty((64, params.k + 8), dtype=torch.bfloat16, device=DEV)[:, 8:]
    with pytest.raises(Nvfp4AotError, match="act"):
        call(op, GROUPED, bad)
