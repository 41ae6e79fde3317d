"""torch custom ops over the nvfp4-aot runtime: `torch.ops.nvfp4_aot.linear` and `.moe`.

Imports torch only (never vllm, never cutlass), so a GPU test without vLLM can build a model from
these ops under torch.compile and CUDA graphs. A runner (runtime.linear.Nvfp4Linear,
runtime.moe.MoERunner, or anything with the same call signature) is registered under a string key,
the layer's prefix, and the op receives that key, vLLM's own pattern for stateful ops: the traced
graph holds only tensors and a constant string, the weights stay with the runner.

    register_runner("model.layers.3.mlp.experts", runner, owner=layer)
    y = torch.ops.nvfp4_aot.moe(hidden, topk_ids, topk_weights, "model.layers.3.mlp.experts")

Invariants the ops keep, so that torch.compile(fullgraph=True) traces through them and a CUDA
graph capture records them as plain kernel launches:
- the output is a fresh torch allocation made inside the op (never a runner buffer, which the
  next layer would overwrite), so the op is functional (mutates_args=());
- no host synchronization, no stream switch, nothing compiled: the runner launches on torch's
  current stream from kernels already loaded and primed;
- the fake (meta) implementation depends only on the input shapes and the registered runner's
  static width, so dynamic M stays symbolic.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol

import torch

LIBRARY = "nvfp4_aot"


class LinearRunner(Protocol):
    n: int  # output features

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> Any: ...


class MoERunner(Protocol):
    def __call__(
        self, hidden: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor, out: torch.Tensor | None = None
    ) -> Any: ...


# key -> (runner, weak reference to the owning module or None). Process-wide: vLLM runs one model
# per worker process, and a key is a layer prefix, unique within a model.
_RUNNERS: dict[str, tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def register_runner(key: str, runner: Any, *, owner: Any = None) -> None:
    """Bind `key` to `runner`. Re-registering a key for the same owner (weights reloaded) replaces
    the runner; a key already held by another live owner is an error, since two layers sharing a
    key would silently run one layer's weights for the other."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"runner key must be a non-empty string, got {key!r}")
    ref = weakref.ref(owner) if owner is not None else None
    with _LOCK:
        held = _RUNNERS.get(key)
        if held is not None and held[1] is not None and ref is not None:
            prev = held[1]()
            if prev is not None and prev is not owner:
                raise ValueError(
                    f"nvfp4_aot runner key {key!r} is already registered by another module; "
                    f"layer prefixes must be unique within a process"
                )
        _RUNNERS[key] = (runner, ref)


def unregister_runner(key: str) -> None:
    with _LOCK:
        _RUNNERS.pop(key, None)


def clear_runners() -> None:
    with _LOCK:
        _RUNNERS.clear()


def registered_keys() -> list[str]:
    with _LOCK:
        return sorted(_RUNNERS)


def get_runner(key: str) -> Any:
    held = _RUNNERS.get(key)
    if held is None:
        known = registered_keys()
        raise KeyError(
            f"no nvfp4_aot runner registered for layer {key!r} (registered: {len(known)}"
            f"{', e.g. ' + repr(known[:3]) if known else ''}); runners are registered in "
            f"process_weights_after_loading or by register_runner()"
        )
    return held[0]


@torch.library.custom_op(f"{LIBRARY}::linear", mutates_args=())
def linear(x: torch.Tensor, layer: str) -> torch.Tensor:
    """bf16 [M, K] -> bf16 [M, N] through the runner registered as `layer`."""
    runner = get_runner(layer)
    out = torch.empty((x.shape[0], runner.n), dtype=torch.bfloat16, device=x.device)
    if x.shape[0]:  # M = 0 (an idle data-parallel rank) launches nothing: buckets start at 1
        runner(x.contiguous(), out=out)
    return out


@linear.register_fake
def _linear_fake(x: torch.Tensor, layer: str) -> torch.Tensor:
    return x.new_empty((x.shape[0], get_runner(layer).n), dtype=torch.bfloat16)


@torch.library.custom_op(f"{LIBRARY}::moe", mutates_args=())
def moe(hidden: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor, layer: str) -> torch.Tensor:
    """Routed experts: bf16 [M, H], int32 [M, top_k] global expert ids, fp32 [M, top_k] -> bf16
    [M, H] (sum over the k experts this rank owns; other ranks' experts contribute nothing here)."""
    runner = get_runner(layer)
    out = torch.empty(hidden.shape, dtype=torch.bfloat16, device=hidden.device)
    if hidden.shape[0]:
        runner(hidden.contiguous(), topk_ids.contiguous(), topk_weights.contiguous(), out=out)
    return out


@moe.register_fake
def _moe_fake(hidden: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor, layer: str) -> torch.Tensor:
    return hidden.new_empty(hidden.shape, dtype=torch.bfloat16)
