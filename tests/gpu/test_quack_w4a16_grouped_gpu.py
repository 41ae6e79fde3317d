"""quack_w4a16_grouped_gemm (quack's persistent SM90 W4A16 kernel over MoE expert groups) against
the float64 reference over the exactly dequantized weights, on fresh random data with
NaN-poisoned outputs: every real row of every expert must be written and right (padding rows
are the caller's to ignore), per-expert two-valued alpha (a wrong expert or row mapping
shows), uniform / skewed / single / empty groupings, CUDA-graph replay with new data and new
offsets, out-of-contract offsets staying in bounds, and refusals."""

import pytest
import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime.errors import Nvfp4AotError

from .graphs import capture, replay_without_allocating

pytestmark = pytest.mark.gpu

FAM = get_family("quack_w4a16_grouped_gemm")
DEV = torch.device("cuda")
DISTS = ("uniform", "skewed", "single", "empty")
# rows of act: a few tiles (no real rows: every group empty), sizes with room for real rows after
# padding to either tile_n of the default manifest (128, 256: one op each), odd sizes
MS = (300, 9000, 6144 + 48 * 127, 20001)
NAMES = [a.name for a in FAM.signature(FAM.parse_params({"n": 256, "k": 256, "experts": 2})).args]


def ops(store):
    found = [op for op in store.ops.values() if op.spec["family"] == FAM.name]
    if not found:
        pytest.skip(f"no {FAM.name} op in the store")
    return found


def call(op, inputs):
    op(*[inputs[n] for n in NAMES])


def run(op, m, seed, **kw):
    params = FAM.parse_params(op.kernel_for(m).record["params"])
    inputs = FAM.make_inputs(params, m, DEV, seed, **kw)
    want = FAM.reference(params, inputs)
    call(op, inputs)
    torch.cuda.synchronize()
    return FAM.check(params, inputs, want), inputs, params


def test_grouped_matches_reference(store, seed):
    failures, real = [], 0
    for op in ops(store):
        for i, m in enumerate(MS):
            for d, dist in enumerate(DISTS):
                bad, inputs, _ = run(op, m, seed + 10 * i + d, dist=dist)
                real += int(inputs["counts"].sum())
                failures += [f"{op.name} M={m} {dist}: {b}" for b in bad]
    assert not failures, "\n".join(failures)
    assert real > 0, "no real rows were checked"


def test_graph_replay_new_data_and_offsets(store, seed):
    op = ops(store)[0]
    m = 20001
    params = FAM.parse_params(op.kernel_for(m).record["params"])
    buf = FAM.make_inputs(params, m, DEV, seed)
    args = [buf[n] for n in NAMES]
    call(op, buf)
    graph, _ = capture(lambda: op(*args))
    for i, dist in enumerate(DISTS):
        fresh = FAM.make_inputs(params, m, DEV, seed + 100 + i, dist=dist)
        for n in NAMES:
            buf[n].copy_(fresh[n])
        buf["counts"] = fresh["counts"]
        assert int(fresh["counts"].sum()) > 0
        replay_without_allocating(graph, f"replay {i} ({dist})")
        assert FAM.check(params, buf, FAM.reference(params, fresh)) == [], f"replay {i} ({dist})"


def test_out_of_contract_offsets_stay_in_bounds(store, seed):
    """offsets past the rows of act, non-monotone, unaligned: wrong rows allowed, no fault (the
    next torch op and a correct call afterwards still work)."""
    op = ops(store)[0]
    m = 8000
    _, inputs, params = run(op, m, seed)
    for bad in ([0] + [m * 4] * params.experts, list(range(params.experts + 1))[::-1],
                [i * 37 for i in range(params.experts + 1)]):
        inputs["offsets"].copy_(torch.tensor(bad, dtype=torch.int32))
        call(op, inputs)
        torch.cuda.synchronize()
    bad, _, _ = run(op, m, seed + 1)
    assert bad == [], bad


def test_bad_inputs_refused_before_launch(store, seed):
    op = ops(store)[0]
    _, inputs, params = run(op, 512, seed)
    bad = dict(inputs)
    bad["act"] = inputs["act"].float()
    with pytest.raises(Nvfp4AotError, match="act"):
        call(op, bad)
    bad = dict(inputs)
    bad["offsets"] = inputs["offsets"][:-1]
    with pytest.raises(Nvfp4AotError, match="offsets"):
        call(op, bad)
    bad = dict(inputs)
    bad["alpha"] = inputs["alpha"][:, :-1]
    with pytest.raises(Nvfp4AotError, match="alpha"):
        call(op, bad)
