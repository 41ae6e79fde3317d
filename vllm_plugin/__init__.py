"""vLLM plugin: serve ModelOpt NVFP4 checkpoints with nvfp4-aot's ahead-of-time compiled kernels.

    NVFP4_AOT_ARTIFACTS=/artifacts vllm serve /models/ckpt --quantization nvfp4_aot

`register` is the `vllm.general_plugins` entry point. vLLM calls it in every process (front end,
engine core, each worker), possibly more than once, so it is idempotent and cheap: it registers
the quantization config and nothing else; no store is opened, no GPU touched, no kernel compiled.

Importing this package does not import vLLM: `nvfp4_aot.vllm_plugin.ops` (the torch custom ops)
is usable without it, e.g. on a GPU machine where vLLM is not installed.
"""

from __future__ import annotations

from .artifacts import ARTIFACTS_ENV

__all__ = ["ARTIFACTS_ENV", "register"]


def register() -> None:
    from vllm.model_executor.layers.quantization import (
        _CUSTOMIZED_METHOD_TO_QUANT_CONFIG,
        register_quantization_config,
    )

    from . import ops  # noqa: F401  (defines torch.ops.nvfp4_aot.* in this process)
    from .config import NAME, Nvfp4AotConfig

    # Checked against vLLM's registry itself rather than a flag of ours: the registry is the state
    # that must not change on a second call.
    if _CUSTOMIZED_METHOD_TO_QUANT_CONFIG.get(NAME) is Nvfp4AotConfig:
        return
    register_quantization_config(NAME)(Nvfp4AotConfig)
