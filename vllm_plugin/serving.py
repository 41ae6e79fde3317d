"""What the running vLLM asks of the kernels, read from its config (token counts, EP placement).

The vLLM config is captured when a quant method is built (model construction always runs under
set_current_vllm_config) and read again at process_weights_after_loading, so that capture sizes
finalized in between are the ones checked.
"""

from __future__ import annotations

from typing import Any

from .artifacts import ServingShape


def current_vllm_config() -> Any:
    from vllm.config import get_current_vllm_config_or_none

    return get_current_vllm_config_or_none()


def serving_shape(vllm_config: Any, *, ep_size: int | None = None, ep_rank: int | None = None) -> ServingShape:
    """Token counts and placement of this server. Without a vLLM config (a bare unit test) the
    defaults of vLLM's SchedulerConfig stand in, with no CUDA graphs."""
    if vllm_config is None:
        from vllm.config import SchedulerConfig

        return ServingShape("<checkpoint>", SchedulerConfig.DEFAULT_MAX_NUM_BATCHED_TOKENS, ())
    model_config = getattr(vllm_config, "model_config", None)
    model = getattr(model_config, "model", None) or "<checkpoint>"
    sched = vllm_config.scheduler_config
    comp = vllm_config.compilation_config
    sizes: tuple[int, ...] = ()
    if not getattr(model_config, "enforce_eager", False):
        sizes = tuple(sorted(set(comp.cudagraph_capture_sizes or ())))
    if ep_size is None:
        ep_size, ep_rank = _ep_placement(vllm_config)
    tp_size = getattr(vllm_config.parallel_config, "tensor_parallel_size", 1)
    return ServingShape(str(model), int(sched.max_num_batched_tokens), sizes, ep_size, ep_rank or 0, tp_size)


def _ep_placement(vllm_config: Any) -> tuple[int, int]:
    if not getattr(vllm_config.parallel_config, "enable_expert_parallel", False):
        return 1, 0
    try:
        from vllm.distributed import get_ep_group

        group = get_ep_group()
        return group.world_size, group.rank_in_group
    except (AssertionError, ImportError):  # EP group not initialized (config-only use)
        return 1, 0


def expert_start(expert_map: Any, num_local: int, num_global: int) -> int:
    """First global expert id this rank owns. The runner takes global ids and one offset, so the
    rank's experts must be one contiguous range in order (vLLM's "linear" placement). Reads the map
    to the host: start-up only, never in a forward pass."""
    if expert_map is None:
        if num_local != num_global:
            raise ValueError(f"nvfp4_aot: {num_local} local experts of {num_global} but no expert map")
        return 0
    local = [int(v) for v in expert_map.tolist()]
    owned = [g for g, slot in enumerate(local) if slot >= 0]
    start = owned[0] if owned else 0
    if (
        len(owned) != num_local
        or owned != list(range(start, start + num_local))
        or [local[g] for g in owned] != list(range(num_local))
    ):
        raise ValueError(
            "nvfp4_aot: this rank's experts are not one contiguous range of global ids in order "
            f"(owned: {owned[:8]}{'...' if len(owned) > 8 else ''}); serve with "
            "--expert-placement-strategy linear and without EPLB"
        )
    return start
