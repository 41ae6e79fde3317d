"""`--quantization nvfp4_aot` for the public DeepSeek-V4 NVFP4 checkpoints (vLLM 0.32.0).

nvidia/DeepSeek-V4-{Pro,Flash}-NVFP4 are DeepSeek's block-FP8 release with the routed experts of
layers 0..L-1 re-quantized to NVFP4 (runtime/checkpoint.py, layout "dsv4_mixed"). Their
config.json keeps quant_method "fp8" and adds moe_quant_algo "NVFP4" and quantized_layers
(layers.N.ffn.experts -> NVFP4); vLLM serves them with DeepseekV4FP8Config.

`Nvfp4AotDeepseekV4Config` subclasses that config, so parsing, block-FP8 linears (Fp8LinearMethod
with E8M0 scales), KV cache, ignored layers and the expert-dtype logic stay vLLM's; only routed
experts are decided here:
  - a FusedMoE layer whose checkpoint module is listed NVFP4 in quantized_layers (vLLM prefix
    model.layers.N.ffn.experts <-> checkpoint layers.N.ffn.experts) -> our fused-MoE method;
  - every other FusedMoE layer of an NVFP4-expert checkpoint (the MTP draft's experts: vLLM
    builds them as model.layers.{L+k}.ffn.experts, the checkpoint keeps them MXFP4 under mtp.k,
    never listed) -> vLLM's Mxfp4MoEMethod, what DeepseekV4FP8Config gives these same MXFP4
    tensors in DeepSeek's own release. vLLM's config itself, reading moe_quant_algo alone, hands
    them ModelOptNvFp4FusedMoE, whose NVFP4 parameters cannot hold them (tests/vllm/
    test_vllm_dsv4.py shows the load failing): they are never handed to us either way.
Without a quantized_layers map, layers 0..num_hidden_layers-1 are taken as the NVFP4 ones.
A DeepSeek-V4 checkpoint without NVFP4 experts (moe_quant_algo absent) is refused when the
config is resolved: there is nothing for this plugin to serve.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from vllm.model_executor.layers.fused_moe import RoutedExperts
from vllm.models.deepseek_v4.quant_config import DeepseekV4FP8Config

NAME = "nvfp4_aot"
DSV4_METHODS = ("fp8", "deepseek_v4_fp8")  # vLLM rewrites "fp8" for model_type deepseek_v4
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")  # model.layers.N. (language_model.model.layers.N. in the VL model)


def is_dsv4(cfg: Mapping[str, Any]) -> bool:
    """A DeepSeek-V4-style block-FP8 quantization config (with or without NVFP4 experts)."""
    return isinstance(cfg, Mapping) and cfg.get("quant_method") in DSV4_METHODS and (
        "moe_quant_algo" in cfg or cfg.get("scale_fmt") == "ue8m0" or "quantized_layers" in cfg
    )


def nvfp4_modules(cfg: Mapping[str, Any]) -> list[str]:
    layers = cfg.get("quantized_layers") or {}
    return sorted(k for k, v in layers.items() if isinstance(v, Mapping) and str(v.get("quant_algo", "")).upper() == "NVFP4")


def check_dsv4(cfg: Mapping[str, Any]) -> None:
    """Refuse a DeepSeek-V4 config with no NVFP4 layer (the message says so)."""
    algo = str(cfg.get("moe_quant_algo") or "").upper()
    listed = nvfp4_modules(cfg)
    if algo != "NVFP4" or ("quantized_layers" in cfg and not listed):
        what = f"moe_quant_algo {algo!r}" if algo else "no moe_quant_algo"
        raise ValueError(
            f"--quantization {NAME}: this DeepSeek block-FP8 checkpoint has no NVFP4 layer (quant_method "
            f"{cfg.get('quant_method')!r}, {what}, {len(listed)} NVFP4 entries in quantized_layers); "
            f"nvfp4_aot serves NVFP4 routed experts only: serve it without --quantization {NAME}"
        )


def checkpoint_module(vllm_prefix: str, num_layers: int | None) -> str:
    """model.layers.N.X -> layers.N.X (or mtp.{N-L}.X for the MTP draft's layers)."""
    m = _LAYER.search(vllm_prefix)
    if not m:
        return vllm_prefix
    n = int(m.group(1))
    rest = vllm_prefix[m.end():]
    return f"mtp.{n - num_layers}.{rest}" if num_layers is not None and n >= num_layers else f"layers.{n}.{rest}"


class Nvfp4AotDeepseekV4Config(DeepseekV4FP8Config):
    group_size = 16
    nvfp4_layers: tuple[str, ...] = ()

    def get_name(self) -> str:
        return NAME

    def get_supported_act_dtypes(self) -> list[torch.dtype]:
        return [torch.bfloat16]

    @classmethod
    def get_min_capability(cls) -> int:
        return 90

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Nvfp4AotDeepseekV4Config":
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        check_dsv4(config)
        self = super().from_config(config)
        self.nvfp4_layers = tuple(nvfp4_modules(config))
        groups = {v.get("group_size", 16) for v in (config.get("quantized_layers") or {}).values() if isinstance(v, Mapping)}
        self.group_size = next(iter(groups)) if len(groups) == 1 else int(config.get("group_size") or 16)
        return self

    def _num_layers(self) -> int | None:
        from vllm.config import get_current_vllm_config_or_none

        vc = get_current_vllm_config_or_none()
        hf = getattr(getattr(vc, "model_config", None), "hf_config", None)
        return getattr(hf, "num_hidden_layers", None)

    def owns_experts(self, prefix: str) -> bool:
        """True when the FusedMoE layer `prefix` holds NVFP4 experts in the checkpoint."""
        num_layers = self._num_layers()
        module = checkpoint_module(prefix, num_layers)
        if self.nvfp4_layers:
            return module in self.nvfp4_layers
        m = _LAYER.search(prefix)
        return bool(m) and num_layers is not None and int(m.group(1)) < num_layers

    def get_quant_method(self, layer: torch.nn.Module, prefix: str):
        if isinstance(layer, RoutedExperts) and self.expert_dtype == "fp4" and self.moe_quant_algo == "NVFP4":
            from vllm.model_executor.layers.quantization.utils.quant_utils import is_layer_skipped

            if not is_layer_skipped(prefix=prefix, ignored_layers=self.ignored_layers, fused_mapping=self.packed_modules_mapping):
                if self.owns_experts(prefix):
                    from .moe import Nvfp4AotModelOptMoEMethod

                    return Nvfp4AotModelOptMoEMethod(self, layer, prefix, shared_w13_scale=True)
                from vllm.model_executor.layers.quantization.mxfp4 import Mxfp4MoEMethod

                return Mxfp4MoEMethod(layer.moe_config)  # the checkpoint's MXFP4 experts (MTP draft)
        return super().get_quant_method(layer, prefix)  # vLLM's own choice for everything else
