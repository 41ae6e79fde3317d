"""MoE glue (route, silu_mul, combine) on a Hopper GPU against the torch references: every
routing distribution, token counts across the bucket edges, poisoned outputs, fresh seeds;
then route -> combine captured in one CUDA graph and replayed with new routings."""

import pytest
import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.moe_glue import capacity
from nvfp4_aot.kernels.moe_glue.ref import ROUTINGS, combine_ref, make_routing, route_ref

pytestmark = pytest.mark.gpu

MS = (1, 2, 3, 127, 128, 129, 1000, 8192)
E, TOPK, PAD, H, I = 48, 6, 128, 7168, 3072
ROUTE = get_family("moe_route")
SILU = get_family("moe_silu_mul")
COMBINE = get_family("moe_combine")
DEV = torch.device("cuda")


def run_family(store, fam, problem, m, seed):
    """One call through the store's op (the bucket's kernel) on fresh poisoned inputs."""
    op = store.op(fam.name, **problem)
    kern = op.kernel_for(m)
    params = fam.parse_params(kern.record["params"])
    inputs = fam.make_inputs(params, m, DEV, seed)
    want = fam.reference(params, inputs)
    op(*[inputs[a.name] for a in kern.validator.args])
    torch.cuda.synchronize()
    return fam.check(params, inputs, want)


@pytest.mark.parametrize("mode", range(len(ROUTINGS)), ids=ROUTINGS)
def test_route_exact(store, mode, seed):
    failures = []
    for j, m in enumerate(MS):
        s = (seed + j) * len(ROUTINGS) + mode  # make_inputs picks ROUTINGS[s % 6] == ROUTINGS[mode]
        bad = run_family(store, ROUTE, {"experts": E, "topk": TOPK, "pad": PAD}, m, s)
        if bad:
            failures.append(f"M={m} routing={ROUTINGS[mode]} seed={s}: {bad}")
    assert not failures, "\n".join(failures)


def test_silu_mul(store, seed):
    failures = []
    for j, m in enumerate(MS):
        bad = run_family(store, SILU, {"i": I}, m, seed + j)
        if bad:
            failures.append(f"M={m} seed={seed + j}: {bad}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mode", range(len(ROUTINGS)), ids=ROUTINGS)
def test_combine_exact(store, mode, seed):
    failures = []
    for j, m in enumerate(MS):
        s = (seed + j) * len(ROUTINGS) + mode
        bad = run_family(store, COMBINE, {"h": H, "topk": TOPK}, m, s)
        if bad:
            failures.append(f"M={m} routing={ROUTINGS[mode]} seed={s}: {bad}")
    assert not failures, "\n".join(failures)


def test_route_is_reproducible(store, seed):
    """Same input twice -> the same bits (no atomics, fixed order)."""
    op = store.op("moe_route", experts=E, topk=TOPK, pad=PAD)
    m = 8192
    params = ROUTE.parse_params(op.kernel_for(m).record["params"])
    a = ROUTE.make_inputs(params, m, DEV, seed * len(ROUTINGS) + ROUTINGS.index("skewed"))
    b = {k: v.clone() for k, v in a.items()}
    b["slot_of"].fill_(123)
    for inp in (a, b):
        op(*[inp[x.name] for x in op.kernel_for(m).validator.args])
    torch.cuda.synchronize()
    for k in ("counts", "offsets", "slot_of", "src_token"):
        assert torch.equal(a[k], b[k]), k


def test_cuda_graph_route_then_combine(store, seed):
    m = 200
    route = store.op("moe_route", experts=E, topk=TOPK, pad=PAD)
    comb = store.op("moe_combine", h=H, topk=TOPK)
    cap = capacity(m, TOPK, E, PAD)
    i32 = dict(dtype=torch.int32, device=DEV)
    ids = torch.zeros((m, TOPK), **i32)
    start = torch.zeros((1,), **i32)
    counts, offsets = torch.empty((E,), **i32), torch.empty((E + 1,), **i32)
    slot_of, src = torch.empty((m, TOPK), **i32), torch.empty((cap,), **i32)
    y = torch.zeros((cap, H), dtype=torch.bfloat16, device=DEV)  # stands in for the L2 GEMM output
    w = torch.zeros((m, TOPK), dtype=torch.float32, device=DEV)
    out = torch.empty((m, H), dtype=torch.bfloat16, device=DEV)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # capture on a side stream: the env stream must follow it
        with torch.cuda.graph(graph, stream=stream):
            route(ids, start, counts, offsets, slot_of, src)
            comb(y, slot_of, w, out)
    torch.cuda.synchronize()
    g = torch.Generator(device=DEV).manual_seed(seed)
    for i, mode in enumerate(ROUTINGS):
        new_ids, new_start = make_routing(m, TOPK, E, seed + i, mode)
        ids.copy_(new_ids)
        start.fill_(new_start)
        want_route = route_ref(ids, start, E, PAD)
        # y in the layout the new routing produces; padding rows NaN (reading one shows)
        y.copy_(torch.randn((cap, H), generator=g, device=DEV).to(torch.bfloat16))
        y[want_route["src_token"] < 0] = float("nan")
        w.copy_(torch.rand((m, TOPK), generator=g, device=DEV))
        for t in (counts, offsets, slot_of, src):
            t.fill_(-7)
        out.fill_(float("nan"))
        torch.cuda.synchronize()
        allocated, stats = torch.cuda.memory_allocated(), torch.cuda.memory_stats()["allocation.all.allocated"]
        graph.replay()
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() == allocated
        assert torch.cuda.memory_stats()["allocation.all.allocated"] == stats
        got = {"counts": counts, "offsets": offsets, "slot_of": slot_of, "src_token": src}
        assert ROUTE.check(None, got, want_route) == [], f"replay {i} ({mode})"
        want_out = combine_ref(y, want_route["slot_of"], w)
        assert torch.equal(out, want_out), f"replay {i} ({mode}): combine differs"
