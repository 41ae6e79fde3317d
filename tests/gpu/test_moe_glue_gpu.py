"""MoE glue (route, silu_mul, combine, permute, permute_quantize, silu_mul_quantize) on a Hopper
GPU against the torch references: every routing distribution, token counts across the bucket
edges, poisoned outputs, fresh seeds; then route -> combine and route -> permute ->
permute_quantize (+ silu_mul_quantize) captured in CUDA graphs and replayed with new routings."""

import pytest
import torch

from nvfp4_aot.kernels.moe_glue import capacity
from nvfp4_aot.kernels.moe_glue import COMBINE_FAMILY as COMBINE
from nvfp4_aot.kernels.moe_glue import PERMUTE_FAMILY as PERMUTE
from nvfp4_aot.kernels.moe_glue import PERMUTE_QUANTIZE_FAMILY as PERMUTE_Q
from nvfp4_aot.kernels.moe_glue import ROUTE_FAMILY as ROUTE
from nvfp4_aot.kernels.moe_glue import SILU_MUL_FAMILY as SILU
from nvfp4_aot.kernels.moe_glue import SILU_MUL_QUANTIZE_FAMILY as SILU_Q
from nvfp4_aot.kernels.moe_glue.ref import (
    ROUTINGS,
    combine_ref,
    exact_errors,
    make_routing,
    permute_quantize_ref,
    permute_ref,
    route_ref,
    silu_mul_quantize_ref,
)
from nvfp4_aot.kernels.nvfp4_quantize.ref import quantize_ref

from .graphs import capture, replay_without_allocating

pytestmark = pytest.mark.gpu

MS = (1, 2, 3, 127, 128, 129, 1000, 8192)
E, TOPK, PAD, H, I = 48, 6, 128, 7168, 3072
FUSED_MS = (1, 2, 3, 7, 33, 128, 129, 1000, 8192)
FUSED_EXPERTS = (48, 32)  # the default manifest's permute / permute_quantize entries
POISONS = (0xFF, 0x5A)  # quantized outputs: a byte left unwritten cannot match under both
LIMITS = (0.0, 10.0)  # moe_silu_mul(_quantize) limit: none, DeepSeek-V4's swiglu_limit (default manifest)
DEV = torch.device("cuda")


def run_family(store, fam, problem, m, seed, exact=False, **make_kw):
    """One call through the store's op (the bucket's kernel) on fresh poisoned inputs;
    exact=True also requires every output to equal the reference bit for bit."""
    op = store.op(fam.name, **problem)
    kern = op.kernel_for(m)
    params = fam.parse_params(kern.record["params"])
    inputs = fam.make_inputs(params, m, DEV, seed, **make_kw)
    want = fam.reference(params, inputs)
    op(*[inputs[a.name] for a in kern.validator.args])
    torch.cuda.synchronize()
    bad = fam.check(params, inputs, want)
    return bad + exact_errors(inputs, want) if exact else bad


@pytest.mark.parametrize("mode", range(len(ROUTINGS)), ids=ROUTINGS)
def test_route_exact(store, mode, seed):
    failures = []
    for j, m in enumerate(MS):
        s = (seed + j) * len(ROUTINGS) + mode  # make_inputs picks ROUTINGS[s % 6] == ROUTINGS[mode]
        bad = run_family(store, ROUTE, {"experts": E, "topk": TOPK, "pad": PAD}, m, s)
        if bad:
            failures.append(f"M={m} routing={ROUTINGS[mode]} seed={s}: {bad}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("order", ["natural", "quad", "quad8"])  # MoERunner's decode path: quad (rot), quad8 (nibble)
@pytest.mark.parametrize("limit", [0.0, 10.0])  # 10: DeepSeek-V4's clamped SwiGLU (both clamps hit)
def test_silu_mul(store, seed, limit, order):
    failures = []
    for j, m in enumerate(MS):
        bad = run_family(store, SILU, {"i": I, "limit": limit, "act_order": order}, m, seed + j)
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
    graph, _ = capture(lambda: (route(ids, start, counts, offsets, slot_of, src), comb(y, slot_of, w, out)))
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
        replay_without_allocating(graph, f"replay {i} ({mode})")
        got = {"counts": counts, "offsets": offsets, "slot_of": slot_of, "src_token": src}
        assert ROUTE.check(None, got, want_route) == [], f"replay {i} ({mode})"
        want_out = combine_ref(y, want_route["slot_of"], w)
        assert torch.equal(out, want_out), f"replay {i} ({mode}): combine differs"


# ----------------------------------------------------------------------------- permute, fused quantize


@pytest.mark.parametrize("pad,order", [(PAD, "natural"), (1, "quad"), (1, "quad8")], ids=["natural", "quad", "quad8"])
@pytest.mark.parametrize("experts", FUSED_EXPERTS)
@pytest.mark.parametrize("mode", range(len(ROUTINGS)), ids=ROUTINGS)
def test_permute_exact(store, experts, mode, seed, pad, order):
    """Bit copy of the routed token rows, zero padding rows (xg poisoned with NaN; src_token
    also holds planted out-of-range indices M, -5, 2^31 - 1 in padding rows); and MoERunner's
    decode permute (pad 1, quad / quad8 order: runtime/layout.py): the routed rows, each 64-column tile
    permuted, bit for bit against the reference (natural gather + act_order)."""
    failures = []
    for j, m in enumerate(FUSED_MS):
        s = (seed + j) * len(ROUTINGS) + mode  # make_inputs picks ROUTINGS[s % 6] == ROUTINGS[mode]
        bad = run_family(store, PERMUTE, {"h": H, "topk": TOPK, "experts": experts, "pad": pad, "act_order": order}, m, s)
        if bad:
            failures.append(f"M={m} E={experts} routing={ROUTINGS[mode]} seed={s}: {bad}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("experts", FUSED_EXPERTS)
@pytest.mark.parametrize("mode", range(len(ROUTINGS)), ids=ROUTINGS)
def test_permute_quantize_bit_exact(store, experts, mode, seed):
    """q and swizzled sf over the CAP grouped rows == quantize_ref(gathered rows, gs)."""
    failures = []
    for j, m in enumerate(FUSED_MS):
        s = (seed + j) * len(ROUTINGS) + mode
        for poison in POISONS:
            bad = run_family(store, PERMUTE_Q, {"h": H, "topk": TOPK, "experts": experts, "pad": PAD}, m, s,
                             poison=poison)
            if bad:
                failures.append(f"M={m} E={experts} routing={ROUTINGS[mode]} seed={s} poison={poison:#x}: {bad}")
    assert not failures, "\n".join(failures)


def test_silu_mul_quantize_exact_inputs(store, seed):
    """Inputs on which the kernel's bf16 intermediate provably equals torch's (gate >= 18, g * u
    exact in bf16): q and sf must equal quantize_ref(silu_mul_ref(x), gs) bit for bit."""
    failures = []
    for j, m in enumerate(FUSED_MS):
        for poison in POISONS:
            bad = run_family(store, SILU_Q, {"i": I, "limit": 0.0}, m, seed + j, exact=True, poison=poison, mode="exact")
            if bad:
                failures.append(f"M={m} seed={seed + j} poison={poison:#x}: {bad}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("limit", LIMITS)
def test_silu_mul_quantize_random_inputs(store, seed, limit):
    """General inputs: the family check (near-tie byte differences bounded, dequantized error vs
    float64 (clamped) silu * up within the reference pipeline's NVFP4 error + slack)."""
    failures = []
    for j, m in enumerate(FUSED_MS + (capacity(8192, TOPK, E, PAD),)):  # + grouped rows at 8192 tokens
        for poison in POISONS:
            bad = run_family(store, SILU_Q, {"i": I, "limit": limit}, m, seed + j, poison=poison, mode="random")
            if bad:
                failures.append(f"M={m} seed={seed + j} poison={poison:#x}: {bad}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("limit", LIMITS)
def test_silu_mul_quantize_equals_silu_mul_then_quantize(store, seed, limit):
    """Bit for bit on general inputs: the fused kernel == quantize_ref of moe_silu_mul's own bf16
    output (same silu and clamp PTX, same rounding), i.e. fusing changed nothing but the memory
    traffic; with limit 10 (DeepSeek-V4's clamped SwiGLU) too: the clamp the sm_100a runner needs
    is checked here on Hopper, where the same CUDA-core kernel runs."""
    silu = store.op("moe_silu_mul", i=I, limit=limit, act_order="natural")
    siluq = store.op("moe_silu_mul_quantize", i=I, limit=limit)
    failures = []
    for j, m in enumerate(FUSED_MS):
        params = SILU_Q.parse_params(siluq.kernel_for(m).record["params"])
        inputs = SILU_Q.make_inputs(params, m, DEV, seed + j, mode="random")
        siluq(inputs["x"], inputs["global_scale"], inputs["q"], inputs["sf"])
        h = torch.full((m, I), float("nan"), dtype=torch.bfloat16, device=DEV)
        silu(inputs["x"], h)
        torch.cuda.synchronize()
        wq, wsf = quantize_ref(h, inputs["global_scale"], "swizzled")
        bad = exact_errors(inputs, {"q": wq, "sf": wsf})
        if bad:
            failures.append(f"M={m} seed={seed + j}: {bad}")
    assert not failures, "\n".join(failures)


def test_cuda_graph_route_permute_quantize(store, seed):
    """route -> permute -> permute_quantize, and silu_mul_quantize, in one CUDA graph, replayed
    with new routings, tokens and global scales (all buffers allocated once, outputs poisoned
    before every replay)."""
    m = 200
    route = store.op("moe_route", experts=E, topk=TOPK, pad=PAD)
    perm = store.op("moe_permute", h=H, topk=TOPK, experts=E, pad=PAD, act_order="natural")
    permq = store.op("moe_permute_quantize", h=H, topk=TOPK, experts=E, pad=PAD)
    siluq = store.op("moe_silu_mul_quantize", i=I, limit=0.0)
    cap = capacity(m, TOPK, E, PAD)
    i32 = dict(dtype=torch.int32, device=DEV)
    u8 = dict(dtype=torch.uint8, device=DEV)
    ids = torch.zeros((m, TOPK), **i32)
    start = torch.zeros((1,), **i32)
    counts, offsets = torch.empty((E,), **i32), torch.empty((E + 1,), **i32)
    slot_of, src = torch.empty((m, TOPK), **i32), torch.empty((cap,), **i32)
    x = torch.zeros((m, H), dtype=torch.bfloat16, device=DEV)
    gs = torch.ones((1,), dtype=torch.float32, device=DEV)
    xg = torch.empty((cap, H), dtype=torch.bfloat16, device=DEV)
    q, sf = torch.empty((cap, H // 2), **u8), torch.empty((cap, H // 16), **u8)
    x2 = torch.zeros((m, 2 * I), dtype=torch.bfloat16, device=DEV)
    gs2 = torch.ones((1,), dtype=torch.float32, device=DEV)
    q2, sf2 = torch.empty((m, I // 2), **u8), torch.empty((-(-m // 128) * 128, I // 16), **u8)

    def launches():
        route(ids, start, counts, offsets, slot_of, src)
        perm(x, src, xg)
        permq(x, src, gs, q, sf)
        siluq(x2, gs2, q2, sf2)

    graph, _ = capture(launches)
    qp = SILU_Q.parse_params(siluq.kernel_for(m).record["params"])
    for i, mode in enumerate(ROUTINGS):
        new_ids, new_start = make_routing(m, TOPK, E, seed + i, mode)
        ids.copy_(new_ids)
        start.fill_(new_start)
        fresh = PERMUTE_Q.make_inputs(PERMUTE_Q.parse_params(permq.kernel_for(m).record["params"]), m, DEV, seed + i)
        x.copy_(fresh["x"])
        gs.copy_(fresh["global_scale"])
        fresh2 = SILU_Q.make_inputs(qp, m, DEV, seed + i, mode="exact")
        x2.copy_(fresh2["x"])
        gs2.copy_(fresh2["global_scale"])
        for t in (counts, offsets, slot_of, src):
            t.fill_(-7)
        xg.fill_(float("nan"))
        for t in (q, sf, q2, sf2):
            t.fill_(0xFF)
        replay_without_allocating(graph, f"replay {i} ({mode})")
        want_route = route_ref(ids, start, E, PAD)
        got = {"counts": counts, "offsets": offsets, "slot_of": slot_of, "src_token": src}
        assert ROUTE.check(None, got, want_route) == [], f"replay {i} ({mode})"
        assert PERMUTE.check(None, {"xg": xg}, {"xg": permute_ref(x, want_route["src_token"])}) == [], f"replay {i}"
        wq, wsf = permute_quantize_ref(x, want_route["src_token"], gs)
        assert exact_errors({"q": q, "sf": sf}, {"q": wq, "sf": wsf}) == [], f"replay {i} ({mode}): permute_quantize"
        wq2, wsf2 = silu_mul_quantize_ref(x2, gs2)
        assert exact_errors({"q": q2, "sf": sf2}, {"q": wq2, "sf": wsf2}) == [], f"replay {i}: silu_mul_quantize"
