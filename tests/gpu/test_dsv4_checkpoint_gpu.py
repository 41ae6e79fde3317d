"""A synthetic checkpoint in the public DeepSeek-V4 NVFP4 layout (scripts/make_dsv4_fixture.py
public_tensors: DeepSeek names, NVFP4 routed experts, block-FP8 + E8M0 attention and shared
experts, BF16/F32 rest) with real DeepSeek-V4-Pro expert shapes (H 7168, I 3072, top-6), 2 MoE
layers of 64 experts served as 2 EP ranks of 32 (the default manifest's `experts = 32` variants),
loaded by runtime.weights per rank, with DeepSeek-V4's clamped SwiGLU (swiglu_limit 10), run through the vLLM plugin's op torch.ops.nvfp4_aot.moe under
torch.compile(fullgraph=True, dynamic=True) and CUDA graphs at vLLM capture sizes, replayed with
fresh tokens and routings: bitwise equal to the compiled call run eagerly, and each layer within a
relative Frobenius error of 1e-2 of a float64 reference over the checkpoint's dequantized tensors
(read back from the files, not from the runner). ~4.7 GB of checkpoint in a temporary directory.

Needs the store built from manifests/default.toml (sm_90a MoERunner ops at h 7168, i 3072,
experts 32, moe_silu_mul limit 10.0) and safetensors on the GPU machine (scripts/stage_gpu.sh stages its wheel)."""

import os
import secrets
import sys
from pathlib import Path

import pytest
import torch

from .graphs import capture, replay_without_allocating

pytestmark = pytest.mark.gpu

H, I, TOPK, E, EP, LAYERS = 7168, 3072, 6, 64, 2, 2
LIMIT = 10.0  # DeepSeek-V4's swiglu_limit: silu(min(gate, 10)) * clamp(up, -10, 10)
GATE_STD = 4.0  # gate/up ~ N(0, 16) for unit inputs: ~1% of them pass the clamp
LOCAL = E // EP
DEV = torch.device("cuda")
TOL = 1e-2
CAPTURE_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
REF_SIZES = (1, 32, 512)  # checked against float64 (each reads every routed expert back from disk)
MAX_TOKENS = 8192


def _config():
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from synthetic_ckpt import fixture

    return fixture, {
        **fixture.DSV4_PRO_PUBLIC,
        "hidden_size": H, "moe_intermediate_size": I, "n_routed_experts": E, "num_hidden_layers": LAYERS, "num_nextn_predict_layers": 0, "num_hash_layers": 1,
        "num_attention_heads": 2, "head_dim": 128, "q_lora_rank": 256, "o_lora_rank": 128, "o_groups": 2,
        "index_n_heads": 2, "index_head_dim": 64, "hc_mult": 2, "vocab_size": 64, "compress_ratios": [0, 4],
    }  # fmt: skip


def _write(root: Path, seed: int) -> Path:
    """The checkpoint, expert tensors drawn on the GPU (random codes and E4M3 block scales; w1 and
    w3 drawn as one [2I, H] matrix, so one scale band and one weight_scale_2, as the producer
    shares it; global scales chosen so that x . W^T has ~unit variance, GATE_STD for gate and up),
    everything else from the CPU test generator."""
    import json

    from safetensors.torch import save_file

    from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, random_nvfp4_weights
    from synthetic_ckpt import _random

    fixture, cfg = _config()
    root.mkdir(parents=True)
    g = torch.Generator(device=DEV).manual_seed(seed)
    cpu = torch.Generator().manual_seed(seed)
    qc, hf = fixture.public_quant(cfg)
    shards = fixture.public_tensors(cfg)
    names = fixture.shard_names(len(shards))
    weight_map = {}
    for shard, tensors in zip(names, shards):
        data, w3 = {}, {}
        for name, dtype, shape in tensors:
            if ".ffn.experts." not in name:
                data[name] = _random(dtype, shape, cpu)
                continue
            stem, leaf = name.rsplit(".", 1)
            if leaf != "weight":
                continue
            expert, proj = stem.rsplit(".", 1)
            if proj == "w3":  # drawn with w1 below: one scale band, one weight_scale_2
                q, sf, alpha = w3.pop(expert)
            else:
                rows = 2 * shape[0] if proj == "w1" else shape[0]
                q, sf = random_nvfp4_weights(rows, shape[1] * 2, g, DEV)
                alpha = 1.0 / (dequantize(q, sf).float().pow(2).mean().sqrt().item() * (shape[1] * 2) ** 0.5 + 1e-30)
                alpha *= GATE_STD if proj == "w1" else 1.0
                if proj == "w1":
                    w3[expert] = (q[shape[0]:], sf[shape[0]:], alpha)
                    q, sf = q[: shape[0]], sf[: shape[0]]
            data[name], data[f"{stem}.weight_scale"] = q.contiguous().cpu(), sf.contiguous().view(torch.float8_e4m3fn).cpu()
            data[f"{stem}.weight_scale_2"] = torch.tensor(alpha, dtype=torch.float32)
            data[f"{stem}.input_scale"] = torch.tensor(1e-3, dtype=torch.float32)
        save_file(data, str(root / shard), metadata={"format": "pt"})
        weight_map.update({n: shard for n in data})
        del data
    (root / "config.json").write_text(json.dumps({**cfg, "quantization_config": qc}))
    (root / "hf_quant_config.json").write_text(json.dumps(hf))
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return root


def _keys(layer: int, rank: int) -> str:
    return f"model.layers.{layer}.ffn.experts@ep{rank}"  # one process plays both EP ranks


class Block(torch.nn.Module):
    """Two MoE layers, each the sum of the EP ranks' partial outputs, with a residual between
    them; returns both layers' MoE outputs and the second layer's input."""

    def forward(self, x, ids0, w0, ids1, w1):
        y0 = torch.ops.nvfp4_aot.moe(x, ids0, w0, _keys(0, 0)) + torch.ops.nvfp4_aot.moe(x, ids0, w0, _keys(0, 1))
        h1 = (x.float() + y0.float()).to(torch.bfloat16)
        y1 = torch.ops.nvfp4_aot.moe(h1, ids1, w1, _keys(1, 0)) + torch.ops.nvfp4_aot.moe(h1, ids1, w1, _keys(1, 1))
        return y0, h1, y1


@pytest.fixture(scope="module")
def served(store, tmp_path_factory):
    pytest.importorskip("safetensors", reason="safetensors is not installed on this machine: scripts/stage_gpu.sh stages its wheel")
    from nvfp4_aot.runtime import MoERunner
    from nvfp4_aot.runtime.checkpoint import Checkpoint
    from nvfp4_aot.runtime.errors import MissingVariantError
    from nvfp4_aot.runtime.weights import load_moe_experts
    from nvfp4_aot.vllm_plugin import ops

    seed = int(os.environ.get("NVFP4_AOT_SEED", secrets.randbelow(1 << 30)))
    print(f"\n[dsv4 checkpoint] seed={seed}")
    ck = Checkpoint(_write(tmp_path_factory.mktemp("dsv4") / "DeepSeek-V4-Pro-NVFP4-synthetic", seed))
    assert ck.layout == "dsv4_mixed" and ck.moe_layers() == list(range(LAYERS)) and ck.cfg("swiglu_limit") == LIMIT
    assert {g.fmt for g in ck.discovery.groups} == {"nvfp4", "fp8_block", "unquantized"}
    runners = {}
    for layer in range(LAYERS):
        for rank in range(EP):
            w = load_moe_experts(ck, layer, EP, rank, layouts=())
            assert w.local_to_global.tolist() == list(range(rank * LOCAL, (rank + 1) * LOCAL))
            try:
                runner = MoERunner(
                    store, w13=w.w13.q.to(DEV), w13_scale=w.w13.sf.view(torch.float8_e4m3fn).to(DEV), w13_scale_2=w.w13.alpha.to(DEV),
                    w2=w.w2.q.to(DEV), w2_scale=w.w2.sf.view(torch.float8_e4m3fn).to(DEV), w2_scale_2=w.w2.alpha.to(DEV),
                    expert_start=int(w.local_to_global[0]), top_k=TOPK, max_tokens=MAX_TOKENS, swiglu_limit=LIMIT,
                )  # fmt: skip
            except MissingVariantError as e:
                pytest.skip(f"the store lacks a MoERunner op for h={H}, i={I}, experts={LOCAL}, silu limit={LIMIT} (build manifests/default.toml): {e}")
            gaps = runner.missing(list(CAPTURE_SIZES) + [MAX_TOKENS])
            if gaps:
                pytest.skip(f"the store does not cover h={H}, i={I}, experts={LOCAL}: {gaps[:4]}")
            ops.register_runner(_keys(layer, rank), runner)
            runners[layer, rank] = runner
            del w
    yield ck, runners, seed
    ops.clear_runners()
    from nvfp4_aot.runtime import moe

    moe._WORKSPACES.clear()
    runners.clear()
    torch.cuda.empty_cache()


def _reference(ck, layer: int, x, ids, w) -> torch.Tensor:
    """float64: sum over the top-k of w * W2 . (silu(min(W1 x, L)) * clamp(W3 x, -L, L)), every
    expert dequantized from the checkpoint's own tensors (code * E4M3 block scale * weight_scale_2)."""
    from safetensors import safe_open

    from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize

    def deq(name):
        info = ck.tensors[f"{name}.weight"]
        with safe_open(str(info.file), framework="pt") as f:
            q, sf, s2 = (f.get_tensor(f"{name}.{s}") for s in ("weight", "weight_scale", "weight_scale_2"))
        return dequantize(q.to(DEV), sf.view(torch.uint8).to(DEV)).double() * float(s2)

    xd, out = x.double(), torch.zeros(x.shape, dtype=torch.float64, device=DEV)
    for e in ids.unique().tolist():
        tok, kk = torch.nonzero(ids == e, as_tuple=True)
        base = f"layers.{layer}.ffn.experts.{e}"
        gate, up = xd[tok] @ deq(f"{base}.w1").T, xd[tok] @ deq(f"{base}.w3").T
        a = torch.nn.functional.silu(gate.clamp(max=LIMIT)) * up.clamp(-LIMIT, LIMIT)
        out.index_add_(0, tok, (a @ deq(f"{base}.w2").T) * w[tok, kk].double().unsqueeze(1))
    return out


def _inputs(m: int, seed: int):
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = torch.randn((m, H), generator=g, device=DEV).to(torch.bfloat16)
    routing = []
    for _ in range(LAYERS):  # distinct experts per token across both ranks, weights summing to 1
        ids = torch.argsort(torch.rand((m, E), generator=g, device=DEV), dim=1)[:, :TOPK].to(torch.int32)
        w = torch.rand((m, TOPK), generator=g, device=DEV)
        routing += [ids.contiguous(), (w / w.sum(1, keepdim=True)).float().contiguous()]
    return [x, *routing]


def _backend():
    try:
        import triton  # noqa: F401

        return "inductor"
    except ImportError:
        return "aot_eager"


def test_dsv4_layout_through_the_plugin_op_in_cuda_graphs(served):
    ck, runners, seed = served
    mod = Block()
    compiled = torch.compile(mod, fullgraph=True, dynamic=True, backend=_backend())
    errors = []
    for n, m in enumerate(CAPTURE_SIZES):
        args = _inputs(m, seed + n)
        compiled(*args)  # trace / warm
        graph, outs = capture(lambda: compiled(*args))
        for r in range(2):
            for dst, src in zip(args, _inputs(m, seed + 1000 * n + r)):
                dst.copy_(src)
            for t in outs:
                t.fill_(float("nan"))
            replay_without_allocating(graph, f"M={m}")
            eager = compiled(*args)
            assert all(torch.equal(a, b) for a, b in zip(outs, eager)), f"M={m}: graph replay != compiled eager"
            if r == 0 and m in REF_SIZES:
                x, ids0, w0, ids1, w1 = args
                y0, h1, y1 = outs
                for layer, (inp, got, ids, w) in enumerate(((x, y0, ids0, w0), (h1, y1, ids1, w1))):
                    want = _reference(ck, layer, inp, ids, w)
                    assert torch.isfinite(got).all(), f"M={m} layer {layer}: non-finite output"
                    err = ((got.double() - want).norm() / want.norm()).item()
                    print(f"M={m:4} layer {layer}: rel err {err:.2e}")
                    if err > TOL:
                        errors.append(f"M={m} layer {layer}: relative Frobenius error {err:.3e} > {TOL}")
    assert not errors, "\n".join(errors)
    assert "cutlass" not in sys.modules, "the serving path imported cutlass"
