"""The `nvfp4_aot` quantization config for vLLM 0.32.0.

It reads ModelOpt NVFP4 checkpoints, both forms vLLM accepts (hf_quant_config.json's
{"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", ...}} and config.json's
{"quant_method": "modelopt", "quant_algo": "NVFP4", ...}), by subclassing vLLM's own
ModelOptNvFp4Config: parsing, exclude_modules matching, HF->vLLM name mapping and the KV-cache
scale method are vLLM's; only dense linears and routed experts change hands.

It claims a checkpoint only when asked (`--quantization nvfp4_aot`); without that vLLM's
modelopt_fp4 keeps it. The public DeepSeek-V4 NVFP4 checkpoints (block FP8 + NVFP4 routed
experts, config.json quant_method "fp8" + moe_quant_algo "NVFP4") get
vllm_plugin/deepseek_v4.py's config instead, a subclass of vLLM's DeepseekV4FP8Config.
"""

from __future__ import annotations

from typing import Any

import torch

from vllm.model_executor.layers.attention import Attention, MLAAttention
from vllm.model_executor.layers.fused_moe import RoutedExperts
from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod
from vllm.model_executor.layers.quantization.base_config import QuantizeMethodBase
from vllm.model_executor.layers.quantization.modelopt import ModelOptNvFp4Config
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

NAME = "nvfp4_aot"
# ModelOpt algos whose weights are NVFP4 (uint8 E2M1 pairs, E4M3 block scales, fp32 global).
# The activations are the runtime's business, so W4A4 and W4A16 exports are served alike.
SERVED_ALGOS = ("NVFP4", "W4A16_NVFP4")


class Nvfp4AotConfig(ModelOptNvFp4Config):
    def get_name(self) -> str:
        return NAME

    def get_supported_act_dtypes(self) -> list[torch.dtype]:
        return [torch.bfloat16]  # the kernels take and return bf16 activations

    @classmethod
    def get_min_capability(cls) -> int:
        return 90  # Hopper (sm_90a) and Blackwell (sm_100a) artifacts

    @classmethod
    def override_quantization_method(cls, hf_quant_cfg: dict[str, Any], user_quant: str | None, hf_config: Any = None):
        if user_quant != NAME:
            return None  # never take a checkpoint the user did not hand us
        from .deepseek_v4 import check_dsv4, is_dsv4

        if is_dsv4(hf_quant_cfg):
            check_dsv4(hf_quant_cfg)  # refuses one with no NVFP4 layer
            return NAME
        algo = cls._extract_modelopt_quant_algo(hf_quant_cfg)
        if algo not in SERVED_ALGOS:
            # Returning None here would let the next override (e.g. modelopt for an FP8 export)
            # silently replace the user's choice.
            raise ValueError(
                f"--quantization {NAME} serves ModelOpt NVFP4 checkpoints (quant_algo in {list(SERVED_ALGOS)}); "
                f"this checkpoint's quantization config is "
                f"{'not a ModelOpt one' if algo is None else f'quant_algo {algo!r}'}"
            )
        return NAME

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        from .deepseek_v4 import Nvfp4AotDeepseekV4Config, is_dsv4

        if is_dsv4(config):
            return Nvfp4AotDeepseekV4Config.from_config(config)
        return super().from_config(config)

    def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> QuantizeMethodBase | None:
        from .linear import Nvfp4AotLinearMethod
        from .moe import Nvfp4AotModelOptMoEMethod

        if isinstance(layer, (Attention, MLAAttention)):
            return super().get_quant_method(layer, prefix)  # KV-cache scales, as ModelOpt
        is_linear = isinstance(layer, (LinearBase, ParallelLMHead))
        if self.is_layer_excluded(prefix) or any(
            s in prefix for s in ("vision_tower", "vision_model", "vit_large_projector")
        ):  # the same unquantized towers vLLM's ModelOpt skips
            return UnquantizedLinearMethod() if is_linear else None
        if is_linear:
            return Nvfp4AotLinearMethod(self.group_size, prefix)
        if isinstance(layer, RoutedExperts):
            return Nvfp4AotModelOptMoEMethod(self, layer, prefix)
        return None
