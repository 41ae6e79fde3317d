"""Routed experts of a fused-MoE layer through the nvfp4-aot runtime (vLLM side).

vLLM routes (its router picks top-k experts and weights), then calls `apply` with global expert
ids; the runtime's MoERunner runs this rank's experts (permute, NVFP4 grouped GEMMs, SiLU·up,
combine) and returns the weighted sum. Shared experts stay ordinary vLLM linear layers (our
linear method), run by vLLM's MoE runner around this call. Data-parallel dispatch is vLLM's naive
all-gather (we provide no modular kernel), so a call sees up to dp_size x max_num_batched_tokens
tokens.

Parameters mirror vLLM 0.32.0's ModelOptNvFp4FusedMoE.create_weights exactly.
"""

from __future__ import annotations

import torch

from vllm.model_executor.layers.fused_moe import FusedMoEMethodBase
from vllm.model_executor.layers.fused_moe.activation import MoEActivation
from vllm.model_executor.parameter import ModelWeightParameter, PerTensorScaleParameter

from . import ops
from nvfp4_aot.runtime.errors import MissingVariantError
from nvfp4_aot.runtime.word_order import GROUPED_ORDERS, for_runner

from .artifacts import check_coverage, current_device, get_store, missing_problem, moe_prefill, prime, word_order
from .serving import current_vllm_config, expert_start, serving_shape

# The class name must contain "ModelOpt": RoutedExperts.weight_loader picks the ModelOpt loading
# rules (per-tensor weight_scale_2, two-shard w13 input scales) by that substring.
class Nvfp4AotModelOptMoEMethod(FusedMoEMethodBase):
    use_global_sf = False  # input scales are per local expert (and dropped after loading)

    def __init__(self, quant_config, layer: torch.nn.Module, prefix: str, *, shared_w13_scale: bool = False):
        super().__init__(layer.moe_config)
        # DeepSeek-V4's NVFP4 export writes one weight_scale_2 for w1 and w3: a difference there
        # is a malformed checkpoint (refused), elsewhere a warning as in vLLM's ModelOpt method.
        self.shared_w13_scale = shared_w13_scale
        self.quant_config = quant_config
        self.group_size = group_size = quant_config.group_size
        self.prefix = prefix
        moe = layer.moe_config
        problems = []
        if moe.activation != MoEActivation.SILU:
            problems.append(f"activation {moe.activation.value!r} (runs only gated SiLU)")
        if moe.has_bias:
            problems.append("expert biases")
        if moe.is_lora_enabled:
            problems.append("LoRA on experts")
        for attr in ("swiglu_alpha", "swiglu_beta"):
            if getattr(layer, attr, None) is not None:
                problems.append(attr)
        # DeepSeek-V4's clamped SwiGLU (silu(min(gate, L)) * clamp(up, -L, L)): moe_silu_mul's limit
        self.swiglu_limit = getattr(layer, "swiglu_limit", None)
        if getattr(layer, "apply_router_weight_on_input", False):
            problems.append("apply_router_weight_on_input")
        if group_size != 16:
            problems.append(f"NVFP4 block size {group_size} (must be 16)")
        if problems:
            raise NotImplementedError(f"nvfp4_aot: MoE layer {prefix!r} uses {', '.join(problems)}")
        self.vllm_config = current_vllm_config()
        self.store = get_store(current_device())

    def uses_weight_scale_2_pattern(self) -> bool:
        return True

    @property
    def topk_indices_dtype(self) -> torch.dtype | None:
        return torch.int32  # the runner's routing kernels take int32 ids

    def create_weights(
        self,
        layer: torch.nn.Module,
        num_experts: int,
        hidden_size: int,
        intermediate_size_per_partition: int,
        params_dtype: torch.dtype,
        **extra_weight_attrs,
    ) -> None:
        e, h, i, g = num_experts, hidden_size, intermediate_size_per_partition, self.group_size
        wl = extra_weight_attrs.get("weight_loader")
        layer.num_experts = num_experts
        layer.params_dtype = params_dtype
        layer.quant_config = self.quant_config

        def block(name: str, *shape: int, dtype: torch.dtype) -> None:
            p = ModelWeightParameter(data=torch.empty(*shape, dtype=dtype), input_dim=1, output_dim=2, weight_loader=wl)
            layer.register_parameter(name, p)

        def per_tensor(name: str, *shape: int) -> None:
            layer.register_parameter(name, PerTensorScaleParameter(data=torch.empty(*shape, dtype=torch.float32), weight_loader=wl))

        block("w13_weight", e, 2 * i, h // 2, dtype=torch.uint8)  # gate rows, then up rows
        block("w2_weight", e, h, i // 2, dtype=torch.uint8)
        block("w13_weight_scale", e, 2 * i, h // g, dtype=torch.float8_e4m3fn)
        block("w2_weight_scale", e, h, i // g, dtype=torch.float8_e4m3fn)
        per_tensor("w13_weight_scale_2", e, 2)  # [:, 0] gate, [:, 1] up
        per_tensor("w2_weight_scale_2", e)
        per_tensor("w13_input_scale", e, 2)  # loaded (the checkpoint has them) and dropped
        per_tensor("w2_input_scale", e)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        from nvfp4_aot.runtime.moe import MoERunner

        # [E, 2] = (gate, up) global scales, passed whole: the runner honours unequal ones on
        # both archs (runtime/weights.py: per-row alpha on sm_90a, up/gate folded into L2 on sm_100a)
        ws2 = layer.w13_weight_scale_2.data
        if self.shared_w13_scale and not torch.equal(ws2[:, 0], ws2[:, 1]):
            # DeepSeek-V4's NVFP4 export writes one scale for w1 and w3: a difference is a defect
            local = int((ws2[:, 0] != ws2[:, 1]).nonzero()[0, 0])
            start = expert_start(layer.expert_map, layer.local_num_experts, layer.global_num_experts)
            raise ValueError(
                f"nvfp4_aot: {self.prefix}: expert {start + local} has w3.weight_scale_2 = {ws2[local, 1].item()!r} != "
                f"w1.weight_scale_2 = {ws2[local, 0].item()!r}; the DeepSeek-V4 NVFP4 export writes one shared scale "
                f"(the checkpoint is malformed)"
            )
        for name in ("w13_input_scale", "w2_input_scale"):
            if hasattr(layer, name):
                delattr(layer, name)
        moe = layer.moe_config
        par = moe.moe_parallel_config
        shape = serving_shape(current_vllm_config() or self.vllm_config, ep_size=par.ep_size, ep_rank=par.ep_rank)
        # Naive DP dispatch all-gathers the tokens of every DP (and PCP) rank before routing.
        counts = shape.token_counts(multiplier=par.dp_size * par.pcp_size)
        try:
            runner = MoERunner(
                self.store,
                w13=layer.w13_weight.data,
                w13_scale=layer.w13_weight_scale.data,
                w13_scale_2=ws2.to(torch.float32).contiguous(),
                w2=layer.w2_weight.data,
                w2_scale=layer.w2_weight_scale.data,
                w2_scale_2=layer.w2_weight_scale_2.data.to(torch.float32),
                expert_start=expert_start(layer.expert_map, layer.local_num_experts, layer.global_num_experts),
                top_k=layer.top_k,
                max_tokens=counts[-1],
                device=layer.w13_weight.device,
                prefill=moe_prefill(),
                word_order=for_runner(word_order(), GROUPED_ORDERS),  # "rotq" is Nvfp4Linear's alone
                **({"swiglu_limit": float(self.swiglu_limit)} if self.swiglu_limit else {}),
            )
        except MissingVariantError as e:  # an op of this rank's problem (local experts, shapes) is absent
            raise missing_problem(self.prefix, str(e), shape, self.store,
                                  f"{layer.local_num_experts} local experts of {layer.global_num_experts} (EP {par.ep_size}, rank {par.ep_rank})") from None
        check_coverage(self.prefix, runner, counts, shape, self.store)
        ops.register_runner(self.prefix, runner, owner=layer)
        prime(self.store, layer.w13_weight.device)

    def get_fused_moe_quant_config(self, layer: torch.nn.Module) -> None:
        return None  # no modular kernel: vLLM's MoE runner calls apply() directly

    def apply(
        self,
        layer: torch.nn.Module,
        x: torch.Tensor,
        topk_weights: torch.Tensor,
        topk_ids: torch.Tensor,
        shared_experts=None,
        shared_experts_input: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # Shared experts are not run here: without a modular kernel vLLM runs them itself.
        return torch.ops.nvfp4_aot.moe(x, topk_ids.to(torch.int32), topk_weights.to(torch.float32), self.prefix)
