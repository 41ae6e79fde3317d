"""MoERunner and Nvfp4Linear with word_order "rot" (runtime/word_order.py: the weights prepared in the
"w4a16_rot" layout, every GEMM decoding it with decode_rot; MoERunner's decode path in act order
quad and the w4a16_ws tier above it, no quack tier) on Hopper, at the small shapes of
tests/gpu/make_rot_check.py, whose manifest (tests/gpu/rot_check.toml, staged by scripts/stage_gpu.sh)
holds exactly the ops the runners declare, bucketed by the served tile tables. Against a float64
reference over the exactly dequantized weights, into NaN-poisoned outputs, at every path and bucket
edge under several routings, and in CUDA graphs replayed with fresh inputs (bitwise equal to eager,
nothing allocated during replay). Bounds: MoE layer 1e-2 relative Frobenius (bf16 storage of h1,
the silu output, y and out), dense 3e-3 (bf16 output), as tests/gpu/test_moe_runner_gpu.py and
test_linear_gpu.py. Nvfp4Linear runs in word order "rotq" as well (its own layout: w4a16_gemm's split 'k' reading
natural rows straight from global memory, w4a16_ws its words by 4-byte shared loads)."""

import os
import secrets

import pytest
import torch

from nvfp4_aot.kernels.moe_glue.ref import ROUTINGS
from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, random_nvfp4_weights
from nvfp4_aot.runtime import MoERunner, Nvfp4Linear
from nvfp4_aot.runtime.moe import prefill_tiers

from .graphs import capture, replay_without_allocating
from .make_rot_check import DENSE, LINEAR_ORDERS, MAX_TOKENS, MOE
from .moe_check import check_moe, check_replays

pytestmark = pytest.mark.gpu
DEV = torch.device("cuda")
H, I, E, TOPK = MOE["hidden"], MOE["intermediate"], MOE["experts"], MOE["top_k"]
MOE_TOL, DENSE_TOL = 1e-2, 3e-3


def _seed() -> int:
    seed = int(os.environ.get("NVFP4_AOT_SEED", secrets.randbelow(1 << 30)))
    print(f"\n[rot runners] seed={seed}")
    return seed


def _weights(g, n, k):
    q, sf = random_nvfp4_weights(n, k, g, DEV)
    alpha = 1.0 / (dequantize(q, sf).float().pow(2).mean().sqrt().item() * k**0.5)  # x . W^T ~ unit variance
    return q, sf, alpha


@pytest.fixture(scope="module")
def moe_layer(store):
    seed = _seed()
    g = torch.Generator(device=DEV).manual_seed(seed)
    l1 = [_weights(g, 2 * I, H) for _ in range(E)]
    l2 = [_weights(g, H, I) for _ in range(E)]
    f8 = torch.float8_e4m3fn
    t = dict(w13=torch.stack([q for q, _, _ in l1]), w13_scale=torch.stack([s for _, s, _ in l1]).view(f8),
             w13_scale_2=torch.tensor([a for _, _, a in l1], device=DEV), w2=torch.stack([q for q, _, _ in l2]),
             w2_scale=torch.stack([s for _, s, _ in l2]).view(f8), w2_scale_2=torch.tensor([a for _, _, a in l2], device=DEV))
    runner = MoERunner(store, **t, expert_start=0, top_k=TOPK, max_tokens=MAX_TOKENS, word_order="rot")

    def expert_weights(e):
        return (dequantize(*l1[e][:2]).double() * l1[e][2], dequantize(*l2[e][:2]).double() * l2[e][2])

    yield runner, expert_weights, seed
    from nvfp4_aot.runtime import moe

    moe._WORKSPACES.clear()


def test_rot_moe_runner_opens_the_rot_path(moe_layer):
    runner, _, _ = moe_layer
    assert runner.layouts == ["w4a16_rot"] and runner.tiers == prefill_tiers(E, TOPK, MAX_TOKENS, "rot")
    gemms = {d.attr: d for d in runner.decls if d.weights}
    assert set(gemms) == {"l1", "l2", "l1_1", "l2_1"} and all(d.problem["word_order"] == "rot" for d in gemms.values())
    assert runner.l1.kernels()[0].record["params"]["act_order"] == "quad"


def test_rot_moe_runner_matches_fp64(moe_layer):
    runner, ew, seed = moe_layer
    edge = runner.tiers[0][0]  # the decode path serves T <= edge (28 slots per expert), w4a16_ws above
    ms = sorted({1, 2, 3, 5 * E // TOPK, 8 * E // TOPK, 8 * E // TOPK + 1, 16 * E // TOPK, edge, edge + 1, 300, MAX_TOKENS})
    fails = [check_moe(runner, ew, m, seed + 31 * i + j, mode, MOE_TOL)
             for i, m in enumerate(ms) for j, mode in enumerate(ROUTINGS)]
    fails = [f for f in fails if f]
    assert not fails, "\n".join(fails)


def test_rot_moe_runner_graph_replay(moe_layer):
    runner, _, seed = moe_layer
    edge = runner.tiers[0][0]
    for n, m in enumerate((1, 8, 32, edge, edge + 8, 512)):
        check_replays(runner, m, seed + 1000 * n, ("uniform", "skewed", "empty_experts"))


@pytest.mark.parametrize("order", LINEAR_ORDERS)
@pytest.mark.parametrize("parts", [None, (DENSE[0] - 256, 256)], ids=["one_scale", "two_scales"])
def test_rot_linear_matches_fp64_at_every_edge_and_replays(store, parts, order):
    n, k = DENSE
    seed = _seed()
    g = torch.Generator(device=DEV).manual_seed(seed)
    q, sf = random_nvfp4_weights(n, k, g, DEV)
    s2 = torch.tensor([0.5, 2.0] if parts else [0.75], device=DEV) / (k**0.5)
    lin = Nvfp4Linear(store, q, sf.view(torch.float8_e4m3fn), s2, part_sizes=parts, max_tokens=MAX_TOKENS,
                      word_order=order)
    assert [d.family for d in lin.decls] == ["w4a16_gemm", "w4a16_ws_gemm"] and lin.upper is not None
    assert lin.w[0].data_ptr() == lin.upper[1].data_ptr() and all(d.problem["word_order"] == order for d in lin.decls)
    alpha = torch.cat([torch.full((p,), float(v)) for p, v in zip(parts, s2.tolist())]) if parts else torch.full((n,), float(s2))
    wd = dequantize(q, sf).double() * alpha.double().to(DEV)[:, None]
    ms = {1, lin.lower_upto, lin.lower_upto + 1, MAX_TOKENS}
    for op in (lin.op, lin.upper_op):
        ms |= {m for a, b in op.bucket_edges() for m in (a, b) if m <= MAX_TOKENS}
    bad = []
    for m in sorted(ms):
        x = torch.randn((m, k), generator=g, device=DEV).to(torch.bfloat16)
        out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device=DEV)
        lin(x, out=out)
        torch.cuda.synchronize()
        want = x.double() @ wd.T
        err = ((out.double() - want).norm() / want.norm()).item()
        print(f"n={n} k={k} M={m}: rel err {err:.2e}")
        if not err <= DENSE_TOL:  # (NaN fails too)
            bad.append(f"M={m}: relative Frobenius error {err:.3e} > {DENSE_TOL}")
    assert not bad, "\n".join(bad)
    for m in (lin.lower_upto, lin.lower_upto + 1, 256):
        x = torch.randn((m, k), generator=g, device=DEV).to(torch.bfloat16)
        out = torch.empty((m, n), dtype=torch.bfloat16, device=DEV)
        lin(x, out=out)
        graph, _ = capture(lambda: lin(x, out=out))
        x.copy_(torch.randn((m, k), generator=g, device=DEV).to(torch.bfloat16))
        out.fill_(float("nan"))
        replay_without_allocating(graph, f"M={m}")
        assert torch.equal(out, lin(x)), f"M={m}: replay != eager"
