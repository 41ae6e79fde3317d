"""Kernel families: the contract between a CuTe DSL kernel, the builder and the runtime.

A family declares its parameter space (a frozen dataclass), one validity predicate
(`can_implement`) that both the builder and the runtime call, the exported function's
signature (so the runtime can validate a call without the DSL), how to make fake compile
arguments (build side only) and a torch reference.

Invariant: importing this module, or any family's spec module, never imports cutlass.
Only `Family.compile_args` (run inside a build worker) may touch the DSL.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import operator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

# ----------------------------------------------------------------------------- signature


_BINOPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCS: dict[str, Callable[[int, int], int]] = {
    "cdiv": lambda a, b: -(-a // b),
    "round_up": lambda a, b: -(-a // b) * b,
}


def _check_ast(node: ast.AST, expr: str) -> None:
    """Only integer arithmetic, names and the helpers in _FUNCS: a signature read back from an
    index file can then be evaluated safely."""
    for n in ast.walk(node):
        ok = isinstance(n, (ast.Expression, ast.Name, ast.Load, ast.BinOp, *_BINOPS)) or (
            isinstance(n, ast.Constant) and isinstance(n.value, int)
        ) or (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _FUNCS and len(n.args) == 2 and not n.keywords)
        if not ok:
            raise ValueError(f"unsupported shape expression {expr!r}")


@lru_cache(maxsize=None)
def compile_dim(expr: str) -> Callable[[Mapping[str, int]], int]:
    """Compile a shape expression such as "K // 2" or "round_up(M, 128)" once into a function
    of the symbol table (the runtime evaluates these on every call)."""
    tree = ast.parse(expr, mode="eval")
    _check_ast(tree, expr)
    code = compile(tree, f"<dim {expr}>", "eval")
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(_FUNCS)
    glob = {"__builtins__": {}, **_FUNCS}

    def fn(env: Mapping[str, int]) -> int:
        try:
            return eval(code, glob, env)  # noqa: S307 (AST whitelisted above)
        except NameError:
            missing = sorted(names - env.keys())
            raise KeyError(f"unknown symbol {missing[0]!r} in shape expression {expr!r}") from None

    fn.symbols = names  # type: ignore[attr-defined]
    return fn


def eval_dim(expr: str | int, env: Mapping[str, int]) -> int:
    return expr if isinstance(expr, int) else compile_dim(expr)(env)


@dataclass(frozen=True)
class Arg:
    """One tensor argument of an exported function (row-major, contiguous)."""

    name: str
    dtype: str  # torch dtype name without the "torch." prefix
    shape: tuple[str | int, ...]
    align: int = 16  # required byte alignment of the data pointer
    output: bool = False
    scratch: bool = False  # workspace the caller pre-allocates once (never read as data)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "align": self.align,
            "output": self.output,
            "scratch": self.scratch,
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "Arg":
        return Arg(
            d["name"],
            d["dtype"],
            tuple(d["shape"]),
            int(d["align"]),
            bool(d["output"]),
            bool(d.get("scratch", False)),
        )


@dataclass(frozen=True)
class Signature:
    """Arguments in call order plus the dynamic symbols bound at call time.

    `static` holds the compile-time symbols (e.g. K) so that shape expressions can be
    evaluated from the signature alone (the runtime reads it from the index, not the family).
    Each dynamic symbol is bound from the first dimension that is exactly that symbol.
    """

    args: tuple[Arg, ...]
    static: Mapping[str, int]
    dynamic: tuple[str, ...] = ("M",)

    def to_json(self) -> dict[str, Any]:
        return {
            "args": [a.to_json() for a in self.args],
            "static": dict(self.static),
            "dynamic": list(self.dynamic),
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "Signature":
        return Signature(
            tuple(Arg.from_json(a) for a in d["args"]),
            {k: int(v) for k, v in d["static"].items()},
            tuple(d["dynamic"]),
        )


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

    # -- shared by builder and runtime (no DSL) --------------------------------
    def parse_params(self, values: Mapping[str, Any]) -> Any:
        return params_from_mapping(self.params_type, values)

    def can_implement(self, params: Any, arch: str) -> list[str]:
        """Reasons this variant cannot be built or run on `arch` (empty list: it can)."""
        return [] if arch in self.archs else [f"{self.name} is not available for {arch}"]

    def signature(self, params: Any) -> Signature:
        raise NotImplementedError

    def symbol(self, params: Any, key: str) -> str:
        """Exported function name; unique per key so that no two loaded modules collide."""
        return f"nvfp4aot_{self.name}_{key[:12]}"

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
