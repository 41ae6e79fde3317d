"""w4a16_ws_grouped_gemm / w4a16_ws_gemm (our persistent warp-specialized Hopper W4A16 kernel)
against the float64 reference over the exactly dequantized weights, on fresh random data with
NaN-poisoned outputs: every counted row of every expert written and right, padding rows and rows
outside every expert untouched, per-expert two-valued alpha (a wrong expert or row mapping
shows), uniform / skewed / single / empty groupings, CUDA-graph replay with new data and new
offsets, corrupt offsets/counts clamped (no fault, a correct call afterwards still works), and
refusals before launch."""

import pytest
import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime.errors import Nvfp4AotError

from .corrupt import check_corrupt_groups
from .graphs import capture, replay_without_allocating

pytestmark = pytest.mark.gpu

GFAM = get_family("w4a16_ws_grouped_gemm")
DFAM = get_family("w4a16_ws_gemm")
DEV = torch.device("cuda")
DISTS = ("uniform", "skewed", "single", "empty")
# rows: fewer than one token tile, a few tiles with odd tails, many tiles
MS = (37, 300, 1000, 5001)
DENSE_MS = (1, 100, 129, 300, 640, 2000)  # 300 / 640: the 126-CTA stream-K buckets (tiles.SK126)


def ops(store, fam, small=True, reach=1):
    """The store's ops of `fam` whose buckets reach M = `reach` (the largest M the test calls: the
    runner manifests' ops, e.g. tests/gpu/rot_check.toml's, stop lower; test_rot_runners_gpu.py
    and `verify --run` check those at every bucket edge)."""
    found = [op for op in store.ops.values() if op.spec["family"] == fam.name and op.max_m >= reach]
    if small:  # the correctness tests run the small problems (the benchmark runs the big ones)
        found = [op for op in found if op.spec["problem"]["n"] * op.spec["problem"]["k"] <= 1 << 22]
    if not found:
        pytest.skip(f"no small {fam.name} op reaching M={reach} in the store")
    return found


def names(fam, op, m=1):
    """The argument names of the kernel serving m (buckets of one op may differ: split-K scratch)."""
    return [a.name for a in op.kernel_for(m).validator.args]


def run(fam, op, m, seed, **kw):
    params = fam.parse_params(op.kernel_for(m).record["params"])
    inputs = fam.make_inputs(params, m, DEV, seed, **kw)
    want = fam.reference(params, inputs)
    op(*[inputs[n] for n in names(fam, op, m)])
    torch.cuda.synchronize()
    return fam.check(params, inputs, want), inputs, params


def test_grouped_matches_reference(store, seed):
    failures, real = [], 0
    for op in ops(store, GFAM):
        for i, m in enumerate(MS):
            for d, dist in enumerate(DISTS if m <= op.max_m else ()):
                bad, inputs, _ = run(GFAM, op, m, seed + 10 * i + d, dist=dist)
                real += int(inputs["counts"].sum())
                failures += [f"{op.name} M={m} {dist}: {b}" for b in bad]
    assert not failures, "\n".join(failures)
    assert real > 0, "no real rows were checked"


def test_dense_matches_reference(store, seed):
    failures = []
    for op in ops(store, DFAM):
        for i, m in enumerate(m for m in DENSE_MS if m <= op.max_m):
            bad, _, _ = run(DFAM, op, m, seed + i)
            failures += [f"{op.name} M={m}: {b}" for b in bad]
    assert not failures, "\n".join(failures)


def test_out_not_16_byte_aligned(store, seed):
    """epi 1 / 2 store 16 bytes at a time; an `out` view 4 bytes past a 16-byte boundary (the
    signature asks 4-byte alignment) takes the scalar stores instead: right rows, nothing
    written before or after the view. epi 3 (TMA stores; its signature asks 16 bytes) refuses the
    view before launch, naming `out`, and writes nothing."""
    failures = []
    for fam in (GFAM, DFAM):
        for op in ops(store, fam, reach=300):
            m = 300
            params = fam.parse_params(op.kernel_for(m).record["params"])
            inputs = fam.make_inputs(params, m, DEV, seed)
            want = fam.reference(params, inputs)
            flat = torch.full((m * params.n + 16,), float("nan"), dtype=torch.bfloat16, device=DEV)
            inputs["out"] = flat[2:2 + m * params.n].view(m, params.n)
            assert inputs["out"].data_ptr() % 16 == 4
            if params.epi == 3:
                with pytest.raises(Nvfp4AotError, match="out"):
                    op(*[inputs[n] for n in names(fam, op, m)])
                torch.cuda.synchronize()
                bad = [] if torch.isnan(flat.float()).all() else ["wrote before refusing"]
            else:
                op(*[inputs[n] for n in names(fam, op, m)])
                torch.cuda.synchronize()
                bad = fam.check(params, inputs, want)
            if not (torch.isnan(flat[:2].float()).all() and torch.isnan(flat[2 + m * params.n:].float()).all()):
                bad.append("wrote outside the out view")
            failures += [f"{op.name}: {b}" for b in bad]
    assert not failures, "\n".join(failures)


def test_all_groups_empty_writes_nothing(store, seed):
    op = ops(store, GFAM, reach=500)[0]
    params = GFAM.parse_params(op.kernel_for(500).record["params"])
    inputs = GFAM.make_inputs(params, 500, DEV, seed)
    inputs["counts"].zero_()
    op(*[inputs[n] for n in names(GFAM, op)])
    torch.cuda.synchronize()
    assert torch.isnan(inputs["out"].float()).all()


def test_graph_replay_new_data_and_offsets(store, seed):
    m = 3000
    op = ops(store, GFAM, reach=m)[0]
    params = GFAM.parse_params(op.kernel_for(m).record["params"])
    buf = GFAM.make_inputs(params, m, DEV, seed)
    nm = names(GFAM, op)
    args = [buf[n] for n in nm]
    op(*args)
    graph, _ = capture(lambda: op(*args))
    for i, dist in enumerate(DISTS):
        fresh = GFAM.make_inputs(params, m, DEV, seed + 100 + i, dist=dist)
        for n in nm:
            buf[n].copy_(fresh[n])
        assert int(fresh["counts"].sum()) > 0
        replay_without_allocating(graph, f"replay {i} ({dist})")
        assert GFAM.check(params, buf, GFAM.reference(params, fresh)) == [], f"replay {i} ({dist})"


def test_corrupt_offsets_are_clamped(store, seed):
    """tests/gpu/corrupt.py's groupings at M = 3 and 1200: no fault, nothing written past M, a
    correct call afterwards."""
    op = ops(store, GFAM, reach=1200)[0]
    for m in (3, 1200):
        check_corrupt_groups(GFAM, op, m, seed, DEV)


def test_bad_inputs_refused_before_launch(store, seed):
    op = ops(store, GFAM, reach=512)[0]
    _, inputs, params = run(GFAM, op, 512, seed)
    nm = names(GFAM, op)
    for name, bad_value in (("act", inputs["act"].float()), ("offsets", inputs["offsets"][:-1]),
                            ("alpha", inputs["alpha"][:, :-1]), ("blob", inputs["blob"][:, :-1])):
        bad = dict(inputs)
        bad[name] = bad_value
        with pytest.raises(Nvfp4AotError, match=name):
            op(*[bad[n] for n in nm])


def test_dense_split_k_self_cleans_and_replays(store, seed):
    """Split-K variants (flags + workspace scratch): one scratch pair reused across calls, M's and
    graph replays, never re-zeroed by the caller: every call right (fresh poison), flags back to 0
    after each (the last-arriving split resets them), workspace never needs clearing."""
    split = [op for op in ops(store, DFAM, reach=max(DENSE_MS)) if any(a.scratch for a in op.kernel_for(1).validator.args)]
    if not split:
        pytest.skip("no split-K w4a16_ws_gemm op in the store")
    failures = []
    for op in split:
        mmax = max(DENSE_MS)
        for i, m in enumerate(DENSE_MS):
            params = DFAM.parse_params(op.kernel_for(m).record["params"])
            inputs = DFAM.make_inputs(params, m, DEV, seed + 7 * i)
            want = DFAM.reference(params, inputs)
            args = [inputs[n] for n in names(DFAM, op, m)]
            for call in range(2):
                inputs["out"].fill_(float("nan"))
                op(*args)
                torch.cuda.synchronize()
                failures += [f"{op.name} M={m} call {call}: {b}" for b in DFAM.check(params, inputs, want)]
        params = DFAM.parse_params(op.kernel_for(mmax).record["params"])
        buf = DFAM.make_inputs(params, mmax, DEV, seed)
        args = [buf[n] for n in names(DFAM, op, mmax)]
        op(*args)
        graph, _ = capture(lambda: op(*args))
        for r in range(3):
            fresh = DFAM.make_inputs(params, mmax, DEV, seed + 100 + r)
            for n in ("act", "blob", "sf", "alpha"):
                buf[n].copy_(fresh[n])
            buf["out"].fill_(float("nan"))
            replay_without_allocating(graph, f"{op.name} replay {r}")
            failures += [f"{op.name} replay {r}: {b}" for b in DFAM.check(params, buf, DFAM.reference(params, fresh))]
    assert not failures, "\n".join(failures)


def test_dense_pdl_chain(store, seed):
    """pdl variants of a square layer (N == K) run back to back on one stream, each
    call's input the previous call's output and its output the buffer the previous call read
    (read-after-write and write-after-read across a programmatic dependent launch), eagerly and
    replayed from a CUDA graph that also re-poisons the intermediate: every step right against
    the float64 reference of the input it actually had."""
    mode = [op for op in ops(store, DFAM, reach=max(DENSE_MS))
            if op.spec["problem"]["n"] == op.spec["problem"]["k"]
            and any(op.kernel_for(m).record["params"].get("pdl") for m in DENSE_MS)]
    if not mode:
        pytest.skip("no square pdl w4a16_ws_gemm op in the store")
    failures = []
    for op in mode:
        for i, m in enumerate(DENSE_MS):
            params = DFAM.parse_params(op.kernel_for(m).record["params"])
            inp = DFAM.make_inputs(params, m, DEV, seed + 11 * i)
            scratch = [inp[n] for n in names(DFAM, op, m) if n in ("flags", "workspace")]
            x0, x1 = inp["act"], inp["out"]

            def chain():
                x1.fill_(float("nan"))
                op(x0, inp["blob"], inp["sf"], inp["alpha"], x1, *scratch)
                op(x1, inp["blob"], inp["sf"], inp["alpha"], x0, *scratch)

            for how in ("eager", "graph"):
                graph = capture(chain)[0] if how == "graph" else None
                for r in range(2):
                    before = x0.clone()
                    chain() if graph is None else replay_without_allocating(graph, f"{op.name} M={m} replay {r}")
                    torch.cuda.synchronize()
                    mid = x1.clone()
                    for step, (a, got) in enumerate(((before, mid), (mid, x0))):
                        want = DFAM.reference(params, {**inp, "act": a})
                        failures += [f"{op.name} M={m} {how} {r} step {step}: {b}"
                                     for b in DFAM.check(params, {**inp, "out": got}, want)]
                    x0.copy_(torch.randn_like(x0))  # keep magnitudes bounded across rounds
    assert not failures, "\n".join(failures)
