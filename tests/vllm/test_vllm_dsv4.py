"""`--quantization nvfp4_aot` on the public DeepSeek-V4 NVFP4 layout in vLLM 0.32.0 (CPU; skipped
without vLLM): the checkpoint's quantization config is claimed, routed experts of layers 0..L-1 get
our fused-MoE method, every other layer what vLLM's DeepseekV4FP8Config gives it, the MTP draft's
MXFP4 experts are never ours; a synthetic checkpoint in this layout loads through vLLM's own name
mapper and DeepseekV4Model.load_weights; malformed variants are refused naming the tensor.

On the CPU vLLM has no FP8 / MXFP4 kernels, so vLLM's own methods are compared by class (and
their config) as the two configs choose them for real vLLM layers; building them would need a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from vllm_fakes import require_vllm  # noqa: E402

require_vllm()

import torch  # noqa: E402
from vllm_fakes import FakeMoERunner, FakeStore, dequant, install_fake_runtime, moe_reference  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1]))
from synthetic_ckpt import SMALL_PUBLIC, fixture, rewrite_tensor, write_public_synthetic  # noqa: E402
from test_vllm_layers import make_vllm_config  # noqa: E402

from nvfp4_aot.vllm_plugin import ops  # noqa: E402

C = SMALL_PUBLIC
L, E, H, I, TOPK = C["num_hidden_layers"], C["n_routed_experts"], C["hidden_size"], C["moe_intermediate_size"], C["num_experts_per_tok"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_public_synthetic(tmp_path_factory.mktemp("dsv4") / "small_public")


def _qcfg(root: Path) -> dict:
    import json

    return json.loads((root / "config.json").read_text())["quantization_config"]


@pytest.fixture(scope="module")
def vllm_config(ckpt):
    vc = make_vllm_config()
    hf = SimpleNamespace(**{**C, "quantization_config": _qcfg(ckpt)})
    vc.model_config = SimpleNamespace(hf_config=hf, dtype=torch.bfloat16, model=str(ckpt), enforce_eager=False)
    return vc


@pytest.fixture
def store(monkeypatch, vllm_config):
    vllm_config.compilation_config.static_forward_context.clear()  # layer names are per model
    s = FakeStore()
    install_fake_runtime(monkeypatch, s)
    ops.clear_runners()
    yield s
    ops.clear_runners()


def _configs(ckpt):
    from vllm.model_executor.layers.quantization import get_quantization_config
    from vllm.models.deepseek_v4.quant_config import DeepseekV4FP8Config

    ours = get_quantization_config("nvfp4_aot").from_config({**_qcfg(ckpt), "_online_quantization_args": None})
    return ours, DeepseekV4FP8Config.from_config(_qcfg(ckpt))


def test_the_quantization_config_is_claimed_only_when_asked(ckpt, vllm_config):
    from vllm.model_executor.layers.quantization import get_quantization_config

    cls = get_quantization_config("nvfp4_aot")
    cfg = _qcfg(ckpt)
    assert cls.override_quantization_method(cfg, "nvfp4_aot") == "nvfp4_aot"
    assert cls.override_quantization_method({**cfg, "quant_method": "deepseek_v4_fp8"}, "nvfp4_aot") == "nvfp4_aot"  # after vLLM's rewrite
    assert cls.override_quantization_method(cfg, None) is None  # vLLM's deepseek_v4_fp8 keeps it otherwise
    ours, _ = _configs(ckpt)
    assert type(ours).__name__ == "Nvfp4AotDeepseekV4Config" and ours.get_name() == "nvfp4_aot"
    assert ours.get_min_capability() == 90 and ours.get_supported_act_dtypes() == [torch.bfloat16]
    assert ours.weight_block_size == [128, 128] and ours.nvfp4_layers == tuple(f"layers.{i}.ffn.experts" for i in range(L))


def test_a_deepseek_checkpoint_without_nvfp4_is_refused_saying_so(tmp_path, vllm_config):
    from vllm.model_executor.layers.quantization import get_quantization_config

    release = _qcfg(write_public_synthetic(tmp_path / "release", release=True))  # DeepSeek's own: FP8 + MXFP4
    cls = get_quantization_config("nvfp4_aot")
    for call in (lambda: cls.override_quantization_method(release, "nvfp4_aot"), lambda: cls.from_config(release)):
        with pytest.raises(ValueError, match="this DeepSeek block-FP8 checkpoint has no NVFP4 layer.*no moe_quant_algo"):
            call()
    with pytest.raises(ValueError, match="has no NVFP4 layer"):
        cls.from_config({**release, "moe_quant_algo": "NVFP4", "quantized_layers": {"layers.0.ffn.experts": {"quant_algo": "FP8"}}})


class _Recorder:
    """Stands in for a vLLM method class that cannot be built on the CPU (no kernels)."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def recorded(monkeypatch):
    """vLLM's MXFP4 and ModelOpt NVFP4 MoE methods replaced by recorders, in both configs."""
    from vllm.model_executor.layers.quantization import modelopt, mxfp4
    from vllm.models.deepseek_v4 import quant_config

    mx = type("Mxfp4MoEMethod", (_Recorder,), {})
    nv = type("ModelOptNvFp4FusedMoE", (_Recorder,), {})
    monkeypatch.setattr(mxfp4, "Mxfp4MoEMethod", mx)
    monkeypatch.setattr(quant_config, "Mxfp4MoEMethod", mx)
    monkeypatch.setattr(modelopt, "ModelOptNvFp4FusedMoE", nv)
    return mx, nv


def _experts(quant_config):
    """A real RoutedExperts layer (built with our method: vLLM's unquantized and MXFP4 ones find
    no CPU backend); the configs are then asked about it under each prefix."""
    from vllm.model_executor.layers.fused_moe.layer import FusedMoEFactory

    return FusedMoEFactory(E, TOPK, H, I, params_dtype=torch.bfloat16, quant_config=quant_config, prefix="model.layers.0.ffn.experts").routed_experts


def test_methods_per_layer_match_vllm_except_our_routed_experts(ckpt, vllm_config, store, recorded):
    """Real vLLM layers (meta device) of a DeepSeek-V4 block and of the MTP draft's block, as
    DeepseekV4 builds them: each gets vLLM's method class, except the NVFP4 routed experts."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.linear import ColumnParallelLinear, MergedColumnParallelLinear, ReplicatedLinear, RowParallelLinear

    from nvfp4_aot.vllm_plugin.moe import Nvfp4AotModelOptMoEMethod

    mx, nv = recorded
    ours, ref = _configs(ckpt)
    with set_current_vllm_config(vllm_config), torch.device("meta"):
        p = "model.layers.1"
        dense = {
            f"{p}.attn.fused_wqa_wkv": MergedColumnParallelLinear(H, [C["q_lora_rank"], C["head_dim"]], bias=False, prefix=f"{p}.attn.fused_wqa_wkv"),
            f"{p}.attn.wq_b": ColumnParallelLinear(C["q_lora_rank"], 256, bias=False, prefix=f"{p}.attn.wq_b"),
            f"{p}.attn.wo_b": RowParallelLinear(128, H, bias=False, prefix=f"{p}.attn.wo_b"),
            f"{p}.attn.indexer.wq_b": ReplicatedLinear(C["q_lora_rank"], 128, bias=False, prefix=f"{p}.attn.indexer.wq_b"),
            f"{p}.ffn.shared_experts.gate_up_proj": MergedColumnParallelLinear(H, [I, I], bias=False, prefix=f"{p}.ffn.shared_experts.gate_up_proj"),
            f"model.layers.{L}.e_proj": ReplicatedLinear(H, H, bias=False, prefix=f"model.layers.{L}.e_proj"),
        }
        for prefix, layer in dense.items():
            a, b = ours.get_quant_method(layer, prefix), ref.get_quant_method(layer, prefix)
            assert type(a) is type(b) and type(a).__name__ == "Fp8LinearMethod", prefix
            assert a.is_scale_e8m0 and a.quant_config.weight_block_size == [128, 128]  # E8M0 block scales, as vLLM
        layer = _experts(ours)
        assert isinstance(layer.quant_method, Nvfp4AotModelOptMoEMethod)
        for i in range(L):
            assert isinstance(ours.get_quant_method(layer, f"model.layers.{i}.ffn.experts"), Nvfp4AotModelOptMoEMethod)
            assert isinstance(ref.get_quant_method(layer, f"model.layers.{i}.ffn.experts"), nv)  # vLLM: ModelOpt NVFP4 (Humming on Hopper)
        mtp = f"model.layers.{L}.ffn.experts"  # DeepSeekV4MTP's block: mtp.0 in the checkpoint
        assert isinstance(ours.get_quant_method(layer, mtp), mx)  # never ours: vLLM's MXFP4 method
        # what vLLM does with the MTP draft's MXFP4 experts: the NVFP4 method, from moe_quant_algo alone
        assert isinstance(ref.get_quant_method(layer, mtp), nv)
    assert ours.owns_experts("model.layers.0.ffn.experts") and not ours.owns_experts(f"model.layers.{L}.ffn.experts")
    assert ours.owns_experts("language_model.model.layers.2.ffn.experts")  # the VL model's prefix


def test_vllm_own_nvfp4_method_misloads_the_mtp_mxfp4_experts(ckpt, vllm_config, store):
    """What vLLM 0.32's DeepseekV4FP8Config does with the MTP draft's MXFP4 experts: it gives
    them ModelOpt's NVFP4 method (test above), whose parameters ours mirror exactly
    (test_vllm_layers.test_moe_params_match_vllm_modelopt), and vLLM's expert weight loader takes
    the MXFP4 tensors without an error: the E8M0 scale bytes [I, H/32] are converted as numbers
    into the first half of the E4M3 [I, H/16] scale columns, the rest stays zero. The draft's
    experts would run on garbage; with nvfp4_aot they go to vLLM's Mxfp4MoEMethod instead."""
    from safetensors.torch import load_file
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.fused_moe.layer import FusedMoEFactory

    ours, _ = _configs(ckpt)
    shard = next(p for p in sorted(ckpt.glob("*.safetensors")) if "mtp.0.ffn.experts.0.w1.scale" in load_file(str(p)))
    scale = load_file(str(shard))["mtp.0.ffn.experts.0.w1.scale"].view(torch.uint8)  # E8M0 [I, H/32], as vLLM views it
    assert scale.shape == (I, H // 32)
    with set_current_vllm_config(vllm_config):
        re = FusedMoEFactory(E, TOPK, H, I, params_dtype=torch.bfloat16, quant_config=ours, prefix="model.layers.0.ffn.experts").routed_experts
        p = re.w13_weight_scale  # ModelOpt's NVFP4 parameter: [E, 2I, H/16] E4M3
        p.data.view(torch.uint8).fill_(0xAA)
        assert re.weight_loader(p, scale, "model.layers.0.ffn.experts.w13_weight_scale", "w1", 0, return_success=True)
    got = p.data[0, :I].view(torch.uint8)
    assert torch.equal(p.data[0, :I, : H // 32].float(), scale.float().to(torch.float8_e4m3fn).float())  # numbers, not bits
    assert not torch.equal(got[:, : H // 32], scale) and (got[:, H // 32 :] == 0xAA).all()  # half the columns never written


def _load_through_vllm(ckpt: Path, vllm_config, quant_config, *, tamper=None):
    """The checkpoint's main-layer routed experts loaded the way vLLM loads a DeepSeek-V4 model:
    safetensors_weights_iterator -> DeepseekV4ForCausalLM.hf_to_vllm_mapper (DeepSeek names ->
    model.layers.N.ffn.experts.E.w1..., mtp.* dropped) -> DeepseekV4Model.load_weights with the
    FusedMoE expert mapping -> FusedMoE weight loaders -> process_weights_after_loading."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.fused_moe import fused_moe_make_expert_params_mapping
    from vllm.model_executor.layers.fused_moe.layer import FusedMoEFactory
    from vllm.model_executor.model_loader.weight_utils import safetensors_weights_iterator
    from vllm.models.deepseek_v4.nvidia.model import DeepseekV4ForCausalLM, DeepseekV4Model

    class Holder(torch.nn.Module):  # the part of DeepseekV4Model that load_weights touches
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList()
            for i in range(L):
                block, ffn = torch.nn.Module(), torch.nn.Module()
                ffn.experts = FusedMoEFactory(E, TOPK, H, I, params_dtype=torch.bfloat16, quant_config=quant_config, prefix=f"model.layers.{i}.ffn.experts")
                block.ffn = ffn
                self.layers.append(block)
            self.config, self.quant_config, self.use_sequence_parallel = SimpleNamespace(**C), quant_config, True

        def get_expert_mapping(self):
            return fused_moe_make_expert_params_mapping(self, ckpt_gate_proj_name="w1", ckpt_down_proj_name="w2", ckpt_up_proj_name="w3", num_experts=E)

    files = sorted(str(p) for p in ckpt.glob("*.safetensors"))
    with set_current_vllm_config(vllm_config):
        holder = Holder()
        named = DeepseekV4ForCausalLM.hf_to_vllm_mapper.apply(safetensors_weights_iterator(files, use_tqdm_on_load=False))
        experts = ((n.removeprefix("model."), t) for n, t in named if ".ffn.experts." in n)
        loaded = DeepseekV4Model.load_weights(holder, tamper(experts) if tamper else experts)
        for block in holder.layers:
            re = block.ffn.experts.routed_experts
            re.quant_method.process_weights_after_loading(re)
    return holder, loaded


def test_synthetic_checkpoint_loads_through_vllms_loader_and_runs(ckpt, vllm_config, store):
    from safetensors.torch import load_file

    ours, _ = _configs(ckpt)
    holder, loaded = _load_through_vllm(ckpt, vllm_config, ours)
    assert {n.split(".ffn.")[1] for n in loaded} == {f"experts.routed_experts.{w}_{s}" for w in ("w13", "w2") for s in ("weight", "weight_scale", "weight_scale_2", "input_scale")}
    assert len(FakeMoERunner.instances) == L and ops.registered_keys() == [f"model.layers.{i}.ffn.experts" for i in range(L)]
    tensors = {}
    for p in ckpt.glob("*.safetensors"):
        tensors.update(load_file(str(p)))
    g = torch.Generator().manual_seed(11)
    for i, block in enumerate(holder.layers):
        re = block.ffn.experts.routed_experts
        deq = lambda e, w: dequant(*(tensors[f"layers.{i}.ffn.experts.{e}.{w}.{s}"] for s in ("weight", "weight_scale", "weight_scale_2")))  # noqa: E731
        w13 = torch.stack([torch.cat([deq(e, "w1"), deq(e, "w3")]) for e in range(E)])
        w2 = torch.stack([deq(e, "w2") for e in range(E)])
        x = torch.randn(7, H, generator=g).to(torch.bfloat16)
        ids = torch.stack([torch.randperm(E, generator=g)[:TOPK] for _ in range(7)]).to(torch.int32)
        w = torch.rand(7, TOPK, generator=g)
        y = re.quant_method.apply(re, x, w, ids, None, None)
        ref = moe_reference(x, ids, w, w13, w2)
        assert ref.abs().sum() > 0 and torch.equal(y, ref), f"layer {i}"


def test_unequal_w1_w3_weight_scale_2_is_refused_naming_the_expert(ckpt, vllm_config, store):
    ours, _ = _configs(ckpt)

    def tamper(weights):
        for name, t in weights:
            if name == "layers.2.ffn.experts.5.w3.weight_scale_2":
                t = t * 2
            yield name, t

    with pytest.raises(ValueError, match=r"model\.layers\.2\.ffn\.experts: expert 5 has w3\.weight_scale_2 = .* != w1\.weight_scale_2"):
        _load_through_vllm(ckpt, vllm_config, ours, tamper=tamper)


def test_fp8_shaped_expert_listed_nvfp4_is_refused_naming_the_tensor(tmp_path, vllm_config, store):
    """The same malformed checkpoint, refused at load by vLLM's loader (shape) and, before any
    server starts, by `nvfp4-build plan` / runtime.checkpoint naming the tensor."""
    from nvfp4_aot.runtime.checkpoint import Checkpoint, CheckpointError

    root = write_public_synthetic(tmp_path / "bad")
    for s in ("weight_scale", "weight_scale_2", "input_scale"):
        rewrite_tensor(root, f"layers.0.ffn.experts.2.w2.{s}", None)
    rewrite_tensor(root, "layers.0.ffn.experts.2.w2.weight", torch.zeros(H, I, dtype=torch.float8_e4m3fn))
    with pytest.raises(CheckpointError, match=rf"layers\.0\.ffn\.experts\.2\.w2\.weight: F8_E4M3 \[{H}, {I}\], but .* lists layers\.0\.ffn\.experts as NVFP4"):
        Checkpoint(root).discovery
    ours, _ = _configs(root)
    with pytest.raises(Exception):
        _load_through_vllm(root, vllm_config, ours)


def test_dsv4_clamped_swiglu_reaches_the_runner(ckpt, vllm_config, store):
    """DeepSeek-V4's experts clamp SwiGLU (config.json swiglu_limit 10.0, passed by vLLM as
    FusedMoE(swiglu_limit=)): the runner gets it (moe_silu_mul's limit), the output is the clamped
    one, and differs from the unclamped one on inputs that reach the clamp."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.fused_moe.layer import FusedMoEFactory

    from vllm_fakes import random_nvfp4

    ours, _ = _configs(ckpt)
    g = torch.Generator().manual_seed(2)
    ts = [(random_nvfp4(I, H, gen=g, scale_2=0.05), random_nvfp4(I, H, gen=g, scale_2=0.05), random_nvfp4(H, I, gen=g)) for _ in range(E)]
    with set_current_vllm_config(vllm_config):
        re = FusedMoEFactory(E, TOPK, H, I, params_dtype=torch.bfloat16, quant_config=ours, prefix="model.layers.0.ffn.experts",
                             swiglu_limit=C["swiglu_limit"]).routed_experts
        for e, (w1, w3, w2) in enumerate(ts):
            for shard, tensors in (("w1", w1), ("w3", w3), ("w2", w2)):
                stem = "w2" if shard == "w2" else "w13"
                for suffix, t in zip(("weight", "weight_scale", "weight_scale_2", "input_scale"), tensors):
                    assert re.weight_loader(getattr(re, f"{stem}_{suffix}"), t, f"x.{stem}_{suffix}", shard, e, return_success=True)
        re.quant_method.process_weights_after_loading(re)
    runner = FakeMoERunner.instances[-1]
    assert runner.swiglu_limit == 10.0
    x = (torch.randn(9, H, generator=g) * 4).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(E, generator=g)[:TOPK] for _ in range(9)]).to(torch.int32)
    w = torch.rand(9, TOPK, generator=g)
    y = re.quant_method.apply(re, x, w, ids, None, None)
    w13 = torch.stack([torch.cat([dequant(*a[:3]), dequant(*b[:3])]) for a, b, _ in ts])
    w2 = torch.stack([dequant(*c[:3]) for _, _, c in ts])
    assert torch.equal(y, moe_reference(x, ids, w, w13, w2, swiglu_limit=10.0))
    assert not torch.equal(y, moe_reference(x, ids, w, w13, w2))  # the clamp was reached


def test_a_store_without_this_ranks_expert_count_is_a_startup_error(ckpt, vllm_config, monkeypatch):
    """The coverage check covers the planned experts per rank: a store built for another EP size
    (another local expert count) stops the layer at start-up naming the layer, its local experts
    and the plan command for this rank."""
    from nvfp4_aot.vllm_plugin.artifacts import CoverageError

    vllm_config.compilation_config.static_forward_context.clear()
    install_fake_runtime(monkeypatch, FakeStore(root="/srv/artifacts", experts={E // 2}))
    ours, _ = _configs(ckpt)
    with pytest.raises(CoverageError) as err:
        _load_through_vllm(ckpt, vllm_config, ours)
    msg = str(err.value)
    assert "'model.layers.0.ffn.experts'" in msg and f"{E} local experts of {E} (EP 1, rank 0)" in msg and f"moe_route.experts={E}" in msg
    assert "nvfp4-build plan" in msg and "--ep-size 1" in msg and "-o /srv/artifacts" in msg
    assert ops.registered_keys() == []
