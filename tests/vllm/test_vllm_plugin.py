"""Plugin discovery, registration and checkpoint claiming against vLLM 0.32.0 (skipped without it)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from types import SimpleNamespace

import pytest

from vllm_fakes import require_vllm  # noqa: E402

require_vllm()

import nvfp4_aot.vllm_plugin as plugin  # noqa: E402
from vllm.model_executor.layers import quantization as vq  # noqa: E402

HF_QUANT_CONFIG = {  # hf_quant_config.json as ModelOpt <= 0.29 writes it
    "producer": {"name": "modelopt", "version": "0.29.0"},
    "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None, "group_size": 16, "exclude_modules": ["lm_head", "model.layers.0.mlp.gate"]},
}
CONFIG_JSON_QUANT = {  # config.json quantization_config as ModelOpt >= 0.31 writes it
    "quant_method": "modelopt",
    "quant_algo": "NVFP4",
    "group_size": 16,
    "ignore": ["lm_head"],
}
FP8_QUANT = {"quant_method": "modelopt", "quant_algo": "FP8", "ignore": []}


def _as_vllm_sees_it(cfg: dict) -> dict:
    """vLLM adds quant_method to hf_quant_config.json contents (model_arch_config_convertor)."""
    cfg = {**cfg}
    if "producer" in cfg:
        cfg["quant_method"] = "modelopt_fp4"
    return cfg


def _selected(quant_cfg: dict, user_quant: str | None) -> str:
    """Run vLLM's own checkpoint-method selection (ModelConfig._verify_quantization)."""
    from vllm.config.model import ModelConfig

    stub = SimpleNamespace(
        quantization=user_quant,
        model_arch_config=SimpleNamespace(quantization_config=_as_vllm_sees_it(quant_cfg)),
        hf_config=None,
        allow_deprecated_quantization=False,
    )
    ModelConfig._verify_quantization(stub)
    return stub.quantization


@pytest.fixture(autouse=True)
def registered():
    plugin.register()


def test_entry_point_is_declared():
    eps = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert eps.get("nvfp4_aot") == "nvfp4_aot.vllm_plugin:register"


def test_vllm_loads_plugin_idempotently_in_a_fresh_process():
    """vLLM's own loader, twice (the flag reset as in a second engine), plus direct calls."""
    code = (
        "import vllm.plugins as p\n"
        "from vllm.model_executor.layers import quantization as q\n"
        "assert 'nvfp4_aot' not in q.QUANTIZATION_METHODS\n"
        "p.load_general_plugins(); p.plugins_loaded = False; p.load_general_plugins()\n"
        "import nvfp4_aot.vllm_plugin as plugin; plugin.register(); plugin.register()\n"
        "assert q.QUANTIZATION_METHODS.count('nvfp4_aot') == 1, q.QUANTIZATION_METHODS\n"
        "print(q.get_quantization_config('nvfp4_aot').__name__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "Nvfp4AotConfig"


def test_get_quantization_config():
    from nvfp4_aot.vllm_plugin.config import Nvfp4AotConfig

    assert vq.get_quantization_config("nvfp4_aot") is Nvfp4AotConfig
    assert vq.QUANTIZATION_METHODS.count("nvfp4_aot") == 1


@pytest.mark.parametrize("raw", [HF_QUANT_CONFIG, CONFIG_JSON_QUANT], ids=["hf_quant_config", "config_json"])
def test_from_config_reads_modelopt_nvfp4(raw):
    cfg = vq.get_quantization_config("nvfp4_aot").from_config(raw)
    assert cfg.get_name() == "nvfp4_aot" and cfg.group_size == 16
    assert "lm_head" in cfg.exclude_modules and cfg.is_layer_excluded("lm_head")
    assert not cfg.is_layer_excluded("model.layers.3.mlp.experts")


@pytest.mark.parametrize("raw", [HF_QUANT_CONFIG, CONFIG_JSON_QUANT], ids=["hf_quant_config", "config_json"])
def test_claims_nvfp4_checkpoint_only_when_asked(raw):
    assert _selected(raw, "nvfp4_aot") == "nvfp4_aot"
    assert _selected(raw, None) == "modelopt_fp4"  # vLLM's own method keeps it by default


def test_asking_for_a_non_nvfp4_checkpoint_is_an_error():
    with pytest.raises(ValueError, match="serves ModelOpt NVFP4 checkpoints.*'FP8'"):
        _selected(FP8_QUANT, "nvfp4_aot")
    assert _selected(FP8_QUANT, None) == "modelopt"


def test_missing_artifacts_env_fails_at_model_construction(monkeypatch):
    from nvfp4_aot.vllm_plugin import artifacts
    from vllm.model_executor.layers.linear import LinearBase

    monkeypatch.delenv(artifacts.ARTIFACTS_ENV, raising=False)
    artifacts.reset_stores()
    cfg = vq.get_quantization_config("nvfp4_aot").from_config(CONFIG_JSON_QUANT)
    layer = LinearBase.__new__(LinearBase)
    with pytest.raises(RuntimeError, match="NVFP4_AOT_ARTIFACTS"):
        cfg.get_quant_method(layer, "model.layers.0.self_attn.o_proj")


def test_quant_method_per_layer_kind(monkeypatch):
    from vllm_fakes import FakeStore, install_fake_runtime

    from nvfp4_aot.vllm_plugin.linear import Nvfp4AotLinearMethod
    from vllm.model_executor.layers.attention import Attention
    from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod
    from vllm.model_executor.layers.quantization.modelopt import ModelOptKVCacheMethod

    install_fake_runtime(monkeypatch, FakeStore())
    cfg = vq.get_quantization_config("nvfp4_aot").from_config(HF_QUANT_CONFIG)
    lin = LinearBase.__new__(LinearBase)
    assert isinstance(cfg.get_quant_method(lin, "model.layers.0.mlp.down_proj"), Nvfp4AotLinearMethod)
    assert isinstance(cfg.get_quant_method(lin, "model.layers.0.mlp.gate"), UnquantizedLinearMethod)
    assert isinstance(cfg.get_quant_method(Attention.__new__(Attention), "model.layers.0.self_attn.attn"), ModelOptKVCacheMethod)
    assert cfg.get_quant_method(SimpleNamespace(), "model.norm") is None
