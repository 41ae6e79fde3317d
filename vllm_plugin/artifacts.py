"""The artifact store the plugin serves from, and the start-up coverage check.

vLLM-free (torch + nvfp4_aot.runtime only). The store comes from NVFP4_AOT_ARTIFACTS (a directory
or an installed store package's name);
it is opened and verified once per process and device (hashes, arch, ABI: runtime.open), before
the first layer's weights are loaded, so a wrong or tampered store fails in seconds rather than
after the weight load.
"""

from __future__ import annotations

import os
import shlex
import threading
from dataclasses import dataclass
from typing import Any, Iterable

ARTIFACTS_ENV = "NVFP4_AOT_ARTIFACTS"
# MoERunner's prefill tiers (runtime/moe.py: w4a16_ws, then quack's grouped kernel; both read the one
# prepared weight copy): "1"/unset on, "0" serves every T on the decode grouped GEMM.
MOE_PREFILL_ENV = "NVFP4_AOT_MOE_PREFILL"
# Nvfp4Linear above M = 16 (runtime/linear.py WS_FROM / QUACK_FROM): "1"/unset quack's dense W4A16 kernels except where our w4a16_ws_gemm
# measured at least as fast (runtime/linear.py, kernels/w4a16_ws/tiles.py WS_OVER_QUACK: every M on the five DeepSeek-V4
# shapes since session 17; H200, docs/PERFORMANCE.md), "0" our w4a16_ws_gemm at every such M; where the store
# lacks one of the two the other serves.
LINEAR_QUACK_ENV = "NVFP4_AOT_LINEAR_QUACK"
# One blob word order for both runners (runtime/word_order.py): unset = each runner's own default (MoERunner
# "rot", Nvfp4Linear "nibble"); a value needs a store planned with `nvfp4-build plan --word-order VALUE`. "rotq" is
# Nvfp4Linear's alone: MoERunner keeps its default (word_order.for_runner).
WORD_ORDER_ENV = "NVFP4_AOT_WORD_ORDER"

_STORES: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


class CoverageError(RuntimeError):
    """The store lacks kernel variants this server will call: raised at start-up, never at run time."""


def artifacts_dir() -> str:
    """$NVFP4_AOT_ARTIFACTS: an artifact directory or the name of an installed store package."""
    path = os.environ.get(ARTIFACTS_ENV)
    if not path:
        raise RuntimeError(
            f"--quantization nvfp4_aot needs the artifact directory (or an installed store's name, "
            f"see `nvfp4-build pack`) in ${ARTIFACTS_ENV} (built by `nvfp4-build compile`, checked "
            f"by `nvfp4-build verify`); it is not set"
        )
    return path


def moe_prefill() -> bool:
    """$NVFP4_AOT_MOE_PREFILL: "1"/unset keeps MoERunner's prefill tiers on (w4a16_ws, then quack's
    grouped GEMM; they read the one weight copy), "0" serves every T on our decode grouped GEMM."""
    v = os.environ.get(MOE_PREFILL_ENV, "1")
    if v not in ("0", "1"):
        raise RuntimeError(f"${MOE_PREFILL_ENV} must be 0 or 1, got {v!r}")
    return v == "1"


def linear_quack() -> bool:
    """$NVFP4_AOT_LINEAR_QUACK: "1"/unset serves dense layers above the decode range (M = 16; 8 on q_a + kv and
    q_b: Nvfp4Linear.decode_upto) on quack's kernels where the store has them, except the layer shapes and M where
    ours measured at least as fast (runtime/linear.py, kernels/w4a16_ws/tiles.py WS_OVER_QUACK: every M on the
    five DeepSeek-V4 shapes); "0" on ours (w4a16_ws_gemm) at every M above the decode range."""
    v = os.environ.get(LINEAR_QUACK_ENV, "1")
    if v not in ("0", "1"):
        raise RuntimeError(f"${LINEAR_QUACK_ENV} must be 0 or 1, got {v!r}")
    return v == "1"


def word_order() -> str | None:
    """$NVFP4_AOT_WORD_ORDER: both runners' blob word order (runtime/word_order.py); unset: None (each
    runner's default)."""
    from nvfp4_aot.runtime.word_order import WORD_ORDERS

    v = os.environ.get(WORD_ORDER_ENV)
    if v is not None and v not in WORD_ORDERS:
        raise RuntimeError(f"${WORD_ORDER_ENV} must be one of {WORD_ORDERS}, got {v!r}")
    return v


def _open(path: str, device: Any) -> Any:
    from nvfp4_aot import runtime

    return runtime.open(path, device=device)


def get_store(device: Any = None) -> Any:
    """The verified store for this process and device, opened on first use."""
    from nvfp4_aot.runtime.installed import resolve
    from nvfp4_aot.runtime.store_format import StoreFormatError

    spec = artifacts_dir()
    try:
        path = os.path.realpath(resolve(spec)[0])  # a name -> its installed store dir (the cache key)
    except StoreFormatError:
        path = os.path.realpath(spec)  # neither: runtime.open below raises the error naming both
    key = (path, str(device))
    with _LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = _open(spec, device)  # by name: + package digest check
    return store


def current_device() -> Any:
    """The current CUDA device (the one vLLM bound this worker to), or None without CUDA."""
    import torch

    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None


def prime(store: Any, device: Any) -> None:
    """First call of every loaded kernel, eagerly, before vLLM captures CUDA graphs (idempotent:
    the store remembers primed kernels)."""
    if device.type == "cuda":
        store.prime(device)


def reset_stores() -> None:
    with _LOCK:
        _STORES.clear()


@dataclass(frozen=True)
class ServingShape:
    """What the server will ask of the kernels; also what `nvfp4-build plan` needs to cover it."""

    model: str  # checkpoint directory (or hub id) vLLM loads
    max_num_batched_tokens: int
    capture_sizes: tuple[int, ...]  # CUDA-graph capture sizes (empty: eager)
    ep_size: int = 1
    ep_rank: int = 0
    tp_size: int = 1  # `plan` writes unsharded dense shapes: TP > 1 needs them added by hand

    def token_counts(self, multiplier: int = 1) -> list[int]:
        """Every token count M a layer is captured at, plus the largest eager batch. Buckets are
        contiguous ranges from 1, so covering these covers every M up to the largest."""
        return sorted({m * multiplier for m in (*self.capture_sizes, self.max_num_batched_tokens)})

    def plan_command(self, arch: str, out_dir: str) -> str:
        args = ["nvfp4-build", "plan", self.model, "--arch", arch, "--ep-size", str(self.ep_size)]
        if self.ep_size > 1:
            args += ["--ep-rank", str(self.ep_rank)]
        args += ["--max-num-batched-tokens", str(self.max_num_batched_tokens)]
        if self.capture_sizes:
            args += ["--capture-sizes", ",".join(map(str, sorted(self.capture_sizes)))]
        args += ["-o", "manifest.toml"]
        return (
            f"{shlex.join(args)} && nvfp4-build compile manifest.toml -o {shlex.quote(out_dir)} "
            f"&& nvfp4-build verify {shlex.quote(out_dir)}"
        )


def check_coverage(layer: str, runner: Any, counts: Iterable[int], shape: ServingShape, store: Any) -> None:
    """Raise CoverageError naming what `runner` (for `layer`) lacks at these token counts and the
    command that builds it. A gap found here would otherwise be a failed launch mid-serving."""
    counts = sorted(set(counts))
    missing = list(runner.missing(counts))
    if not missing:
        return
    arch = getattr(store, "arch", "<arch>")
    root = str(getattr(store, "root", os.environ.get(ARTIFACTS_ENV, "<artifacts dir>")))
    listed = "\n".join(f"  - {m}" for m in missing)
    tp_note = (
        f"\n(tensor-parallel size is {shape.tp_size}: `nvfp4-build plan` plans unsharded dense shapes; "
        f"serve dense layers unsharded, e.g. --data-parallel-size with --enable-expert-parallel, or add "
        f"the sharded shapes above to a manifest)"
        if shape.tp_size > 1
        else ""
    )
    raise CoverageError(
        f"nvfp4_aot: the artifact store {root} ({arch}) does not cover layer {layer!r} at token "
        f"counts up to {counts[-1]} (max_num_batched_tokens={shape.max_num_batched_tokens}, "
        f"{len(shape.capture_sizes)} CUDA-graph capture sizes). Missing:\n{listed}\n"
        f"Build them from the checkpoint with the serving settings:\n  {shape.plan_command(arch, root)}{tp_note}"
    )


def missing_problem(layer: str, error: str, shape: ServingShape, store: Any, what: str) -> CoverageError:
    """The CoverageError for a runner whose problem (shapes, this rank's expert count) the store
    lacks entirely: names the layer, what it runs and the command that builds it."""
    arch = getattr(store, "arch", "<arch>")
    root = str(getattr(store, "root", os.environ.get(ARTIFACTS_ENV, "<artifacts dir>")))
    first = error.splitlines()[0] if error else "missing variant"
    return CoverageError(
        f"nvfp4_aot: the artifact store {root} ({arch}) has no kernels for layer {layer!r} ({what}): {first}\n"
        f"Build them from the checkpoint with the serving settings:\n  {shape.plan_command(arch, root)}"
    )
