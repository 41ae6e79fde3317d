"""The whole routed-expert path (MoERunner: route -> permute -> L1 -> silu_mul -> L2 -> combine)
on Hopper at DeepSeek-V4 EP8 sizes (48 local experts, H 7168, I 3072, top-6),
against a float64 reference over the exactly dequantized weights: relative Frobenius error
<= 1e-2 (bf16 storage of h1, silu output, y and out each add ~2^-9 relative; measured values
are printed), six routings, NaN-poisoned outputs, CUDA-graph capture at vLLM capture sizes
replayed with new tokens and routings (bitwise equal to eager: every kernel is deterministic),
allocator counters unchanged during replay, and refusals."""

import os
import secrets

import pytest
import torch

from nvfp4_aot.kernels.moe_glue.ref import ROUTINGS
from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, random_nvfp4_weights
from nvfp4_aot.runtime import ArgumentError, MoERunner

from .moe_check import check_moe, check_replays, moe_inputs

pytestmark = pytest.mark.gpu

E, H, I, TOPK, MAX_TOKENS = 48, 7168, 3072, 6, 8192
DEV = torch.device("cuda")
MOE_TOL = 1e-2
CAPTURE_SIZES = (1, 2, 4, 8, 16, 24, 32, 64, 128, 256, 512)
PREFILL_SIZES = (1024, 2048)  # MoERunner's prefill path (runtime/moe.py PREFILL)
# tier_for at T = 224 / 225 / 1024 / 1025 per word order (runtime/moe.py prefill_table): decode up to 28 slots
# per expert, then ours unpadded; nibble hands T above 128 slots per expert to quack padded to 256
TIERS = {"rot": [None, 1, 1, 1], "nibble": [None, 1, 1, 256]}


def _unit_alpha(q, sf, k):
    """A global scale making x . W^T ~ unit variance for unit-variance x (keeps silu in range)."""
    w = dequantize(q, sf)
    return 1.0 / (w.float().pow(2).mean().sqrt().item() * k**0.5 + 1e-30)


@pytest.fixture(scope="module", params=["rot", "nibble"])  # the default (runtime/moe.py WORD_ORDER), the other
def layer(store, request):
    seed = int(os.environ.get("NVFP4_AOT_SEED", secrets.randbelow(1 << 30)))
    print(f"\n[moe layer] seed={seed}")
    g = torch.Generator(device=DEV).manual_seed(seed)
    w13, s13, w2, s2, a13, a2 = [], [], [], [], [], []
    for _ in range(E):
        q, sf = random_nvfp4_weights(2 * I, H, g, DEV)
        w13.append(q), s13.append(sf), a13.append(_unit_alpha(q, sf, H))
        q, sf = random_nvfp4_weights(H, I, g, DEV)
        w2.append(q), s2.append(sf), a2.append(_unit_alpha(q, sf, I))
    t = dict(w13=torch.stack(w13), w13_scale=torch.stack(s13).view(torch.float8_e4m3fn),
             w13_scale_2=torch.tensor(a13, device=DEV), w2=torch.stack(w2),
             w2_scale=torch.stack(s2).view(torch.float8_e4m3fn), w2_scale_2=torch.tensor(a2, device=DEV))
    runner = MoERunner(store, **t, expert_start=0, top_k=TOPK, max_tokens=MAX_TOKENS, prefill=True,
                       word_order=request.param)  # every path

    def expert_weights(e):
        return (dequantize(t["w13"][e], t["w13_scale"][e].view(torch.uint8)).double() * a13[e],
                dequantize(t["w2"][e], t["w2_scale"][e].view(torch.uint8)).double() * a2[e])

    yield runner, expert_weights, seed
    # free the layer (~5 GB) and the shared workspace before the next test module
    from nvfp4_aot.runtime import moe

    moe._WORKSPACES.clear()
    del runner, t
    torch.cuda.empty_cache()


def _inputs(m, seed, mode):
    return moe_inputs(m, seed, mode, E, H, TOPK)


def _check(runner, expert_weights, m, seed, mode):
    return check_moe(runner, expert_weights, m, seed, mode, MOE_TOL)


def test_moe_layer_matches_fp64_reference(layer):
    runner, ew, seed = layer
    fails = []
    # decode (T <= 224: <= 28 slots per expert), prefill on our w4a16_ws grouped GEMM, unpadded
    # (224 < T; nibble: up to 1024, then quack's grouped GEMM padded to 256): both edges of each
    assert [runner.tier_for(m) for m in (224, 225, 1024, 1025)] == TIERS[runner.word_order]
    for i, m in enumerate((1, 2, 3, 7, 33, 128, 129, 1000)):
        for j, mode in enumerate(ROUTINGS):
            fails.append(_check(runner, ew, m, seed + 31 * i + j, mode))
    for i, m in enumerate((224, 225, 1024, 1025, 2048)):  # the path edges (1000: every routing above)
        for j, mode in enumerate(("local", "skewed", "empty_experts")):
            fails.append(_check(runner, ew, m, seed + 500 + 31 * i + j, mode))
    fails.append(_check(runner, ew, MAX_TOKENS, seed + 7, "uniform"))
    fails = [f for f in fails if f]
    assert not fails, "\n".join(fails)


def test_moe_graph_capture_at_vllm_sizes(layer):
    """Decode sizes (vLLM's capture sizes) and prefill sizes of every prefill tier."""
    runner, _, seed = layer
    assert {runner.tier_for(m) for m in PREFILL_SIZES} == set(TIERS[runner.word_order][2:])
    for n, m in enumerate(CAPTURE_SIZES + PREFILL_SIZES):
        check_replays(runner, m, seed + 1000 * n, ("uniform", "skewed", "one_expert", "empty_experts"))


def test_moe_refusals(layer):
    runner, _, seed = layer
    x, ids, w, start = _inputs(4, seed, "uniform")
    with pytest.raises(ArgumentError, match="max_tokens"):
        runner(torch.empty((MAX_TOKENS + 1, H), dtype=torch.bfloat16, device=DEV), ids, w)
    with pytest.raises(ArgumentError, match="dtype"):
        runner(x.float(), ids, w)
    with pytest.raises(ArgumentError, match="topk_ids"):
        runner(x, ids.long(), w)
    bad = ids.clone()
    bad[0, 0] = 10_000
    with pytest.raises(ArgumentError, match="expert id 10000"):
        runner(x, bad, w, check="full", total_experts=E * 8)
