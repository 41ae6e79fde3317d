"""Dense NVFP4 linear layers through the nvfp4-aot runtime (vLLM side).

Parameters are exactly those vLLM 0.32.0's ModelOpt NVFP4 linear method creates (names, dtypes,
shapes, parameter classes, the NaN sentinel in weight_scale), so vLLM's weight loaders, fused
projections (qkv, gate_up, q_a + kv_a) and TP sharding load a ModelOpt checkpoint unchanged;
tests/vllm/test_create_weights.py compares the two on the meta device.
"""

from __future__ import annotations

import torch
from torch.nn import Parameter

from vllm.logger import init_logger
from vllm.model_executor.layers.linear import LinearMethodBase, register_weight_loader_v2_supported_method
from vllm.model_executor.parameter import ModelWeightParameter, PerTensorScaleParameter

from . import ops
from .artifacts import check_coverage, current_device, get_store, linear_quack, prime, word_order
from .serving import current_vllm_config, serving_shape

logger = init_logger(__name__)


# Registered for weight_loader_v2: vLLM's LinearBase picks the loader by this class's name, and
# the BasevLLMParameter subclasses below need the v2 (sharding-aware) loader.
@register_weight_loader_v2_supported_method
class Nvfp4AotLinearMethod(LinearMethodBase):
    def __init__(self, group_size: int, prefix: str):
        if group_size != 16:
            raise ValueError(f"nvfp4_aot: NVFP4 block size must be 16, the checkpoint says {group_size}")
        if not prefix:
            raise ValueError("nvfp4_aot: a quantized linear layer needs its prefix (the op's runner key)")
        self.group_size = group_size
        self.prefix = prefix
        self.vllm_config = current_vllm_config()
        self.store = get_store(current_device())  # verify the store before the weights load

    def create_weights(
        self,
        layer: torch.nn.Module,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        input_size: int,
        output_size: int,
        params_dtype: torch.dtype,
        **extra_weight_attrs,
    ) -> None:
        if input_size_per_partition % self.group_size:
            raise ValueError(
                f"nvfp4_aot: {self.prefix}: input features per partition ({input_size_per_partition}) "
                f"are not a multiple of the NVFP4 block ({self.group_size})"
            )
        wl = extra_weight_attrs.get("weight_loader")
        n, k, parts = sum(output_partition_sizes), input_size_per_partition, len(output_partition_sizes)
        layer.logical_widths = output_partition_sizes
        layer.input_size_per_partition = input_size_per_partition
        layer.output_size_per_partition = n

        def add(name: str, p: Parameter) -> None:
            layer.register_parameter(name, p)

        # E2M1 codes, two per byte along K (low nibble first), row-major [N, K/2].
        add("weight", ModelWeightParameter(data=torch.empty(n, k // 2, dtype=torch.uint8), input_dim=1, output_dim=0, weight_loader=wl))
        # One fp32 global scale per fused part (q_a and kv_a keep their own).
        add("weight_scale_2", PerTensorScaleParameter(data=torch.empty(parts, dtype=torch.float32), weight_loader=wl))
        # E4M3 block scales [N, K/16]; NaN until loaded, so a layer the checkpoint stores in bf16
        # is caught at process time instead of running on garbage scales.
        scale = ModelWeightParameter(
            data=torch.empty(n, k // self.group_size, dtype=torch.float8_e4m3fn), input_dim=1, output_dim=0, weight_loader=wl
        )
        scale.data.fill_(float("nan"))
        add("weight_scale", scale)
        # The checkpoint's calibration input_scale is loaded (a missing parameter would fail the
        # loader) and dropped: activation global scales are computed from real activations.
        input_scale = PerTensorScaleParameter(data=torch.empty(parts, dtype=torch.float32), weight_loader=wl)
        input_scale.data.fill_(float("nan"))
        add("input_scale", input_scale)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        from nvfp4_aot.runtime.linear import Nvfp4Linear

        if torch.isnan(layer.weight_scale.float()).any():
            raise RuntimeError(
                f"nvfp4_aot: {self.prefix}: NVFP4 weight_scale was never loaded (the checkpoint stores this "
                f"layer unquantized?): add it to exclude_modules in the checkpoint's quantization config"
            )
        if hasattr(layer, "input_scale"):
            del layer.input_scale
        ws2 = layer.weight_scale_2.data.to(torch.float32)
        kwargs = {}
        if ws2.numel() > 1:
            kwargs["part_sizes"] = list(layer.logical_widths)
        else:
            ws2 = ws2.reshape(())
        shape = serving_shape(current_vllm_config() or self.vllm_config)
        counts = shape.token_counts()
        runner = Nvfp4Linear(
            self.store,
            layer.weight.data,
            layer.weight_scale.data,
            ws2,
            max_tokens=counts[-1],
            device=layer.weight.device,
            quack=linear_quack(),
            word_order=word_order(),
            **kwargs,
        )
        check_coverage(self.prefix, runner, counts, shape, self.store)
        ops.register_runner(self.prefix, runner, owner=layer)
        prime(self.store, layer.weight.device)

    def apply(self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.ops.nvfp4_aot.linear(x.reshape(-1, x.shape[-1]), self.prefix)
        out = out.reshape(*x.shape[:-1], out.shape[-1])
        return out if bias is None else out + bias
