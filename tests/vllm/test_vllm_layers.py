"""Linear and fused-MoE methods inside real vLLM 0.32.0 layers on the CPU (skipped without vLLM).

The runtime is replaced by CPU stand-ins (vllm_fakes) doing the exact NVFP4 math, so a checkpoint
tensor loaded into the wrong place, a dropped global scale or a wrong expert offset changes the
output. GPU execution of the real runtime is tests/gpu's business.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from vllm_fakes import require_vllm  # noqa: E402

require_vllm()

import torch  # noqa: E402
from vllm_fakes import (  # noqa: E402
    FakeMoERunner,
    FakeNvfp4Linear,
    FakeStore,
    dequant,
    install_fake_runtime,
    moe_reference,
    random_nvfp4,
)

import nvfp4_aot.vllm_plugin as plugin  # noqa: E402
from nvfp4_aot.vllm_plugin import ops  # noqa: E402
from nvfp4_aot.vllm_plugin.artifacts import CoverageError  # noqa: E402
from nvfp4_aot.vllm_plugin.serving import expert_start  # noqa: E402

QCFG = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "ignore": []}
CAPTURE = [1, 2, 4, 8, 16]
MAX_TOKENS = 256
H, I, E, TOPK = 64, 32, 8, 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_vllm_config():
    """A CPU vLLM config with capture sizes and max_num_batched_tokens set, and a 1-rank gloo
    world (vLLM's parallel layers ask for their TP group)."""
    from vllm.config import DeviceConfig, VllmConfig, set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.distributed.parallel_state import model_parallel_is_initialized

    vc = VllmConfig(device_config=DeviceConfig(device="cpu"))
    vc.scheduler_config.max_num_batched_tokens = MAX_TOKENS
    vc.compilation_config.cudagraph_capture_sizes = CAPTURE
    with set_current_vllm_config(vc):
        if not model_parallel_is_initialized():
            init_distributed_environment(1, 0, f"tcp://127.0.0.1:{_free_port()}", 0, "gloo")
            initialize_model_parallel(1, 1)
    plugin.register()
    return vc


@pytest.fixture(scope="module")
def vllm_config():
    return make_vllm_config()


@pytest.fixture
def store(monkeypatch):
    s = FakeStore()
    install_fake_runtime(monkeypatch, s)
    ops.clear_runners()
    yield s
    ops.clear_runners()


def _cfg():
    from vllm.model_executor.layers.quantization import get_quantization_config

    return get_quantization_config("nvfp4_aot").from_config(QCFG)


def _params(mod: torch.nn.Module) -> dict:
    out = {}
    for name, p in mod.named_parameters():
        dims = (getattr(p, "input_dim", None), getattr(p, "output_dim", None))
        out[name.rsplit(".", 1)[-1]] = (tuple(p.shape), p.dtype, type(p).__name__, dims)
    return out


@pytest.mark.parametrize("parts,k", [([512, 512], 256), ([1536, 576], 7168), ([256], 128)])
def test_linear_params_match_vllm_modelopt(vllm_config, store, parts, k):
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.linear import MergedColumnParallelLinear
    from vllm.model_executor.layers.quantization import modelopt as mo

    with set_current_vllm_config(vllm_config), torch.device("meta"):
        ours = MergedColumnParallelLinear(k, parts, bias=False, quant_config=_cfg(), prefix="m.l0.proj")
        ref = torch.nn.Module()
        shapes = mo.Shapes(parts, k, torch.bfloat16)
        mo.KNvfp4Static().create_weights(ref, mo.WEIGHT, mo.CkptCtx(group_size=16), shapes, None)
        mo.KNvfp4Dynamic().create_weights(ref, mo.ACT, mo.CkptCtx(group_size=16), shapes, None)
    assert _params(ours) == _params(ref)
    assert ours.weight.device.type == "meta" and ours.weight.shape == (sum(parts), k // 2)
    assert ours.weight.weight_loader.__name__ == "weight_loader_v2"  # sharding-aware loader selected


def test_moe_params_match_vllm_modelopt(vllm_config, store):
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.fused_moe.layer import FusedMoEFactory
    from vllm.model_executor.layers.quantization.modelopt import ModelOptNvFp4FusedMoE

    with set_current_vllm_config(vllm_config), torch.device("meta"):
        ours = FusedMoEFactory(E, TOPK, H, I, params_dtype=torch.bfloat16, quant_config=_cfg(), prefix="m.l0.experts")
        ref = torch.nn.Module()
        stub = SimpleNamespace(
            quant_config=SimpleNamespace(is_checkpoint_nvfp4_serialized=True, group_size=16),
            moe=SimpleNamespace(is_act_and_mul=True),
            use_global_sf=False,
        )
        ModelOptNvFp4FusedMoE.create_weights(stub, ref, E, H, I, torch.bfloat16, weight_loader=None, global_num_experts=E)
    assert _params(ours.routed_experts) == _params(ref)
    assert ours.routed_experts.w13_weight.shape == (E, 2 * I, H // 2)


def _load_linear(layer, shards):
    """Feed per-shard ModelOpt tensors through the layer's own (vLLM) weight loaders."""
    for shard_id, (w, s, s2, a) in enumerate(shards):
        for name, t in (("weight", w), ("weight_scale", s), ("weight_scale_2", s2), ("input_scale", a)):
            p = getattr(layer, name)
            p.weight_loader(p, t, shard_id) if len(shards) > 1 else p.weight_loader(p, t)


def test_fused_linear_end_to_end(vllm_config, store):
    """q_a + kv_a style fused projection with two different global scales, and a row-parallel
    linear: loaded by vLLM, handed to the runtime, run through the custom op."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.linear import MergedColumnParallelLinear, RowParallelLinear

    g = torch.Generator().manual_seed(3)
    qa, kva = random_nvfp4(96, H, gen=g, scale_2=0.02), random_nvfp4(32, H, gen=g, scale_2=0.005)
    down = random_nvfp4(H, 128, gen=g)
    with set_current_vllm_config(vllm_config):
        fused = MergedColumnParallelLinear(H, [96, 32], bias=False, quant_config=_cfg(), prefix="m.l0.attn.fused_qkv_a_proj")
        row = RowParallelLinear(128, H, bias=False, quant_config=_cfg(), prefix="m.l0.mlp.down_proj")
        _load_linear(fused, [qa, kva])
        _load_linear(row, [down])
        for layer in (fused, row):
            layer.quant_method.process_weights_after_loading(layer)
    assert not hasattr(fused, "input_scale")  # calibration scale dropped
    runner = FakeNvfp4Linear.instances[0]
    assert runner.part_sizes == [96, 32] and runner.max_tokens == MAX_TOKENS
    assert ops.registered_keys() == ["m.l0.attn.fused_qkv_a_proj", "m.l0.mlp.down_proj"]
    assert store.primed == 0  # priming is for CUDA devices only

    x = torch.randn(5, H, generator=g).to(torch.bfloat16)
    y, _ = fused(x)
    w_ref = torch.cat([dequant(*qa[:3]), dequant(*kva[:3])])
    assert torch.equal(y, (x.float() @ w_ref.T).to(torch.bfloat16))
    z, _ = row(torch.randn(3, 128, generator=g).to(torch.bfloat16))
    assert z.shape == (3, H) and z.dtype == torch.bfloat16


def _moe_layer(vllm_config, g, *, prefix="m.l0.mlp.experts"):
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.fused_moe.layer import FusedMoEFactory

    gate = [random_nvfp4(I, H, gen=g, scale_2=0.01 + e * 1e-3) for e in range(E)]
    # unequal to the gate's (ModelOpt exports them equal; a checkpoint need not): honoured, not dropped
    up = [random_nvfp4(I, H, gen=g, scale_2=0.017 + e * 1e-3) for e in range(E)]
    down = [random_nvfp4(H, I, gen=g, scale_2=0.02) for e in range(E)]
    with set_current_vllm_config(vllm_config):
        moe = FusedMoEFactory(E, TOPK, H, I, params_dtype=torch.bfloat16, quant_config=_cfg(), prefix=prefix)
        re = moe.routed_experts
        for e in range(E):
            for shard, ts in (("w1", gate[e]), ("w3", up[e]), ("w2", down[e])):
                stem = "w2" if shard == "w2" else "w13"
                for suffix, t in zip(("weight", "weight_scale", "weight_scale_2", "input_scale"), ts):
                    p = getattr(re, f"{stem}_{suffix}")
                    assert re.weight_loader(p, t, f"{prefix}.{stem}_{suffix}", shard, e, return_success=True)
        re.quant_method.process_weights_after_loading(re)
    w13 = torch.stack([torch.cat([dequant(*gate[e][:3]), dequant(*up[e][:3])]) for e in range(E)])
    w2 = torch.stack([dequant(*down[e][:3]) for e in range(E)])
    return re, w13, w2


def test_moe_end_to_end(vllm_config, store):
    g = torch.Generator().manual_seed(5)
    re, w13, w2 = _moe_layer(vllm_config, g)
    runner = FakeMoERunner.instances[0]
    assert (runner.expert_start, runner.top_k, runner.max_tokens) == (0, TOPK, MAX_TOKENS)
    assert not hasattr(re, "w13_input_scale") and not hasattr(re, "w2_input_scale")
    assert re.quant_method.topk_indices_dtype == torch.int32
    m = 11
    x = torch.randn(m, H, generator=g).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(E, generator=g)[:TOPK] for _ in range(m)]).to(torch.int32)
    w = torch.rand(m, TOPK, generator=g)
    y = re.quant_method.apply(re, x, w, ids, None, None)
    ref = moe_reference(x, ids, w, w13, w2)
    assert ref.abs().sum() > 0 and torch.equal(y, ref)


def test_moe_prefill_is_on_unless_turned_off(vllm_config, store, monkeypatch):
    """MoERunner's quack prefill tiers read the one weight copy: on unless NVFP4_AOT_MOE_PREFILL=0;
    any other value than 0/1 is a clear start-up error."""
    from vllm_plugin.artifacts import MOE_PREFILL_ENV, moe_prefill

    monkeypatch.setenv(MOE_PREFILL_ENV, "0")
    assert moe_prefill() is False
    _moe_layer(vllm_config, torch.Generator().manual_seed(6), prefix="m.l8.mlp.experts")
    assert FakeMoERunner.instances[-1].prefill is False
    monkeypatch.delenv(MOE_PREFILL_ENV, raising=False)
    _moe_layer(vllm_config, torch.Generator().manual_seed(7), prefix="m.l9.mlp.experts")
    assert FakeMoERunner.instances[-1].prefill is True
    monkeypatch.setenv(MOE_PREFILL_ENV, "yes")
    with pytest.raises(RuntimeError, match="must be 0 or 1"):
        moe_prefill()


def _fake_linear(vllm_config, prefix):
    """A RowParallelLinear [H, 128] through the plugin's method: the FakeNvfp4Linear it built."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.linear import RowParallelLinear

    with set_current_vllm_config(vllm_config):
        layer = RowParallelLinear(128, H, bias=False, quant_config=_cfg(), prefix=prefix)
        _load_linear(layer, [random_nvfp4(H, 128, gen=torch.Generator().manual_seed(1))])
        layer.quant_method.process_weights_after_loading(layer)
    return FakeNvfp4Linear.instances[-1]


def test_word_order_is_the_runners_default_unless_set(vllm_config, store, monkeypatch):
    """NVFP4_AOT_WORD_ORDER: unset gives each runner its own default word order (None reaches both);
    "rot" reaches both; another value is a clear start-up error."""
    from vllm_plugin.artifacts import WORD_ORDER_ENV, word_order

    monkeypatch.delenv(WORD_ORDER_ENV, raising=False)
    assert word_order() is None  # the runners resolve None to their own WORD_ORDER (tests/runtime)
    assert _fake_linear(vllm_config, "m.l12.mlp.down_proj").word_order is None
    _moe_layer(vllm_config, torch.Generator().manual_seed(7), prefix="m.l11.mlp.experts")
    assert FakeMoERunner.instances[-1].word_order is None
    monkeypatch.setenv(WORD_ORDER_ENV, "rot")
    assert _fake_linear(vllm_config, "m.l13.mlp.down_proj").word_order == "rot"
    _moe_layer(vllm_config, torch.Generator().manual_seed(8), prefix="m.l14.mlp.experts")
    assert FakeMoERunner.instances[-1].word_order == "rot"
    monkeypatch.setenv(WORD_ORDER_ENV, "zig")
    with pytest.raises(RuntimeError, match="must be one of"):
        word_order()


def test_linear_quack_is_the_default_and_ours_opt_in(vllm_config, store, monkeypatch):
    """Dense layers above M = 32 run quack's kernels unless NVFP4_AOT_LINEAR_QUACK=0 (ours);
    other values: a clear error."""
    from vllm_plugin.artifacts import LINEAR_QUACK_ENV, linear_quack

    monkeypatch.delenv(LINEAR_QUACK_ENV, raising=False)
    assert linear_quack() is True and _fake_linear(vllm_config, "m.l10.mlp.down_proj").quack is True
    monkeypatch.setenv(LINEAR_QUACK_ENV, "0")
    assert _fake_linear(vllm_config, "m.l11.mlp.down_proj").quack is False
    monkeypatch.setenv(LINEAR_QUACK_ENV, "yes")
    with pytest.raises(RuntimeError, match="must be 0 or 1"):
        linear_quack()


def test_coverage_gap_is_a_startup_error_naming_the_fix(vllm_config, monkeypatch):
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.linear import RowParallelLinear

    install_fake_runtime(monkeypatch, FakeStore(root="/srv/artifacts", max_m=8))
    ops.clear_runners()
    with set_current_vllm_config(vllm_config):
        layer = RowParallelLinear(H, 32, bias=False, quant_config=_cfg(), prefix="m.l7.o_proj")
        _load_linear(layer, [random_nvfp4(32, H, gen=torch.Generator().manual_seed(0))])
        with pytest.raises(CoverageError) as err:
            layer.quant_method.process_weights_after_loading(layer)
    msg = str(err.value)
    assert "'m.l7.o_proj'" in msg and "gemm n=32 k=64 M=16" in msg and f"M={MAX_TOKENS}" in msg
    assert "M=8\n" not in msg  # covered counts are not reported
    assert "nvfp4-build plan" in msg and "--arch sm_100a" in msg and "--capture-sizes 1,2,4,8,16" in msg
    assert f"--max-num-batched-tokens {MAX_TOKENS}" in msg and "-o /srv/artifacts" in msg
    assert ops.registered_keys() == []  # nothing half-registered


def test_expert_start_from_expert_map():
    assert expert_start(None, 8, 8) == 0
    rank1_of_2 = torch.tensor([-1] * 4 + [0, 1, 2, 3])
    assert expert_start(rank1_of_2, 4, 8) == 4
    with pytest.raises(ValueError, match="linear"):
        expert_start(torch.tensor([0, -1, 1, -1, 2, -1, 3, -1]), 4, 8)  # round-robin placement
    with pytest.raises(ValueError, match="no expert map"):
        expert_start(None, 4, 8)


def test_zero_jit_plugin_path_without_cutlass():
    """Register, build, load, process and run a linear and a MoE layer through vLLM in a process
    where importing cutlass fails: no CuTe DSL import, hence no cute.compile, on our path."""
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from conftest import BLOCK_CUTLASS

    here = Path(__file__).parent
    body = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(here)!r})
        sys.argv = ["zero_jit"]
        import pytest, torch
        import test_vllm_layers as t
        class MP:  # minimal monkeypatch
            def setitem(self, d, k, v): d[k] = v
            def setattr(self, o, n, v): setattr(o, n, v)
            def setenv(self, k, v): __import__("os").environ[k] = v
        t.install_fake_runtime(MP(), t.FakeStore())
        vc = t.make_vllm_config()
        t.test_fused_linear_end_to_end(vc, t.FakeStore())
        t.test_moe_end_to_end(vc, t.FakeStore())
        bad = sorted(m for m in sys.modules if m == "cutlass" or m.startswith("cutlass."))
        print("cutlass modules:", bad)
        assert not bad
    """)
    r = subprocess.run([sys.executable, "-c", BLOCK_CUTLASS + body], capture_output=True, text=True, cwd=here)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "cutlass modules: []" in r.stdout
