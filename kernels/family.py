"""Kernel families: the contract between a CuTe DSL kernel, the builder and the runtime.

A family declares its parameter space (a frozen dataclass), one validity predicate
(`can_implement`) that both the builder and the runtime call, the exported function's
signature (so the runtime can validate a call without the DSL), how to make fake compile
arguments (build side only) and a torch reference.

Invariant: importing this module, or any family's spec module, never imports cutlass.
Only `Family.compile_args` (run inside a build worker) may touch the DSL.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any, Mapping, Sequence

# The signature language is part of the store contract and lives in the runtime (which reads
# it back from index records without importing kernels/); re-exported here for families.
from nvfp4_aot.runtime.signature import Arg, Signature, compile_dim, eval_dim  # noqa: F401

# A tile table: rows of (largest token count M of the row, or None for "every larger M", tuning
# knobs). `nvfp4-build plan` maps token buckets onto it; the tunings are measured ones
# (benchmarks/*_sweep.py, docs/PERFORMANCE.md) and live beside the family they tune.
Table = Sequence[tuple["int | None", Mapping[str, Any]]]

# ----------------------------------------------------------------------------- params


class ParamError(ValueError):
    """A parameter dict does not fit a family's parameter dataclass."""


_SCALARS = {"int": int, "str": str, "bool": bool, "float": float}


def params_from_mapping(cls: type, values: Mapping[str, Any]) -> Any:
    """Build a frozen params dataclass from a plain mapping, naming any bad key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParamError(f"unknown parameter(s) {unknown}; known: {sorted(fields)}")
    missing = [
        n
        for n, f in fields.items()
        if n not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ParamError(f"missing parameter(s) {missing}")
    for name, value in values.items():
        want = fields[name].type  # a type, or its name under `from __future__ import annotations`
        want_t = want if isinstance(want, type) else _SCALARS.get(str(want))
        if want_t is float and isinstance(value, int) and not isinstance(value, bool):
            values = {**values, name: float(value)}
        elif want_t is not None and (not isinstance(value, want_t) or (want_t is int and isinstance(value, bool))):
            raise ParamError(f"parameter {name!r} must be {want_t.__name__}, got {value!r}")
    return cls(**values)


# ----------------------------------------------------------------------------- family


class Family:
    """Base class of a kernel family. Subclasses set the class attributes and override hooks.

    name:         unique family name (manifest `family = ...`).
    params_type:  frozen dataclass of every codegen parameter.
    problem_keys: the params that define *what* is computed (shapes, layouts); the rest are
                  tuning knobs the manifest picks per token bucket.
    archs:        archs this family can be compiled for.
    modules:      dotted module names whose source closure fingerprints the family's keys.
    third_party:  distribution names whose version and sources also enter the key.
    """

    name: str = ""
    params_type: type = object
    problem_keys: tuple[str, ...] = ()
    archs: tuple[str, ...] = ("sm_90a", "sm_100a")
    modules: tuple[str, ...] = ()
    third_party: tuple[str, ...] = ()
    # The largest token count one compiled variant accepts (an int32 index bound, say).
    max_m: int = 1 << 20
    # Default tunings by token count (see Table); tile_table() may pick one by problem.
    tiles: Table = ((None, {}),)

    # -- shared by builder and runtime (no DSL) --------------------------------
    def parse_params(self, values: Mapping[str, Any]) -> Any:
        return params_from_mapping(self.params_type, values)

    def can_implement(self, params: Any, arch: str) -> list[str]:
        """Reasons this variant cannot be built or run on `arch` (empty list: it can)."""
        return [] if arch in self.archs else [f"{self.name} is not available for {arch}"]

    def signature(self, params: Any) -> Signature:
        raise NotImplementedError

    def tile_table(self, problem: Mapping[str, Any]) -> Table:
        """The tunings the planner gives each token-count bucket of `problem`."""
        return self.tiles

    # -- build side only --------------------------------------------------------
    def compile_args(self, params: Any, arch: str) -> tuple[Any, Sequence[Any]]:
        """Return (callable for cute.compile, fake arguments). Runs inside a build worker."""
        raise NotImplementedError

    # -- testing and `verify --run` ------------------------------------------------
    def make_inputs(self, params: Any, m: int, device: Any, seed: int) -> dict[str, Any]:
        """Fresh random inputs and poisoned outputs for a call with token count m."""
        raise NotImplementedError

    def reference(self, params: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Expected outputs computed with torch (float32/float64) from `inputs`."""
        raise NotImplementedError

    def check(self, params: Any, got: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
        """Mismatches between kernel outputs and the reference (empty list: pass)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Family {self.name}>"


def module_file(modname: str) -> str:
    """Path of a module's source without importing it (its parent packages are imported)."""
    spec = importlib.util.find_spec(modname)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot locate module {modname!r}")
    return spec.origin
