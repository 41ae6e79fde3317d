"""Kernel signatures: the exported function's arguments and their shape expressions.

Part of the store contract (with runtime/store_format.py and runtime/nvfp4.py): a family declares
its `Signature` at build time, the builder writes it into each index record (`to_json`), and the
runtime reads it back (`from_json`) to validate calls without importing the family or the DSL.
Shape expressions are a tiny language: integer literals, symbol names, + - * // %, and
cdiv(a, b) / round_up(a, b); nothing else parses, so a signature read from an index file can be
evaluated safely.

Imports only the standard library (the build side imports this without torch).
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping

# torch dtype names (without "torch.") an argument may have; checked without importing torch.
DTYPES = frozenset({"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
                    "int64", "int32", "int16", "int8", "uint8", "bool"})  # fmt: skip


class SignatureError(ValueError):
    """A signature (e.g. one read back from an index record) is malformed; the message names the field."""


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
            raise SignatureError(f"unsupported shape expression {expr!r}")


@lru_cache(maxsize=None)
def compile_dim(expr: str) -> Callable[[Mapping[str, int]], int]:
    """Compile a shape expression such as "K // 2" or "round_up(M, 128)" once into a function
    of the symbol table (the runtime evaluates these on every call)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise SignatureError(f"unsupported shape expression {expr!r}") from None
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
    def from_json(d: Any, where: str = "arg") -> "Arg":
        """Inverse of to_json, every field's type checked (SignatureError names the field)."""
        d = _object(d, where, _ARG_FIELDS, ("scratch",))
        name, dtype, shape = d["name"], d["dtype"], d["shape"]
        if not isinstance(name, str) or not name.isidentifier():
            raise SignatureError(f"{where}.name: must be an identifier, got {_short(name)}")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise SignatureError(f"{where}.dtype: must be one of {sorted(DTYPES)}, got {_short(dtype)}")
        if not isinstance(shape, list) or not 1 <= len(shape) <= MAX_RANK:
            raise SignatureError(f"{where}.shape: must be a list of 1 to {MAX_RANK} dims, got {_short(shape)}")
        for j, dim in enumerate(shape):
            if isinstance(dim, str):
                if len(dim) > MAX_EXPR_LEN:
                    raise SignatureError(f"{where}.shape[{j}]: invalid shape expression (over {MAX_EXPR_LEN} characters)")
                try:
                    compile_dim(dim)
                except SignatureError as e:
                    raise SignatureError(f"{where}.shape[{j}]: invalid shape expression: {e}") from None
            elif not _is_int(dim) or not 0 <= dim < 1 << 63:
                raise SignatureError(f"{where}.shape[{j}]: must be a non-negative int or a shape expression, got {_short(dim)}")
        align = d["align"]
        if not _is_int(align) or not 1 <= align <= 1 << 20 or align & (align - 1):
            raise SignatureError(f"{where}.align: must be a power of two, got {_short(align)}")
        flags = {f: d.get(f, False) for f in ("output", "scratch")}
        for f, v in flags.items():
            if not isinstance(v, bool):
                raise SignatureError(f"{where}.{f}: must be true or false, got {_short(v)}")
        return Arg(name, dtype, tuple(shape), align, flags["output"], flags["scratch"])


_ARG_FIELDS = ("name", "dtype", "shape", "align", "output", "scratch")
_SIG_FIELDS = ("args", "static", "dynamic")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Bounds on what an index record may declare (a record is data read from disk).
MAX_ARGS, MAX_RANK, MAX_EXPR_LEN = 64, 8, 100


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _object(d: Any, where: str, fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise SignatureError(f"{where}: must be an object, got {_short(d)}")
    unknown = sorted(set(d) - set(fields), key=str)
    if unknown:
        raise SignatureError(f"{where}.{unknown[0]}: unknown field (expected {list(fields)})")
    missing = [f for f in fields if f not in d and f not in optional]
    if missing:
        raise SignatureError(f"{where}.{missing[0]}: missing")
    return d


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
    def from_json(d: Any, where: str = "signature") -> "Signature":
        """Inverse of to_json, validated: every field's type, every shape expression parses and
        uses only the signature's symbols, every dynamic symbol is some argument's bare dim, and
        argument names are unique. Raises SignatureError naming the field."""
        d = _object(d, where, _SIG_FIELDS)
        static, dynamic, args_raw = d["static"], d["dynamic"], d["args"]
        if not isinstance(static, Mapping) or not all(
                isinstance(k, str) and k.isidentifier() and _is_int(v) and 0 <= v < 1 << 63 for k, v in static.items()):
            raise SignatureError(f"{where}.static: must map symbol names to non-negative ints, got {_short(static)}")
        if not isinstance(dynamic, list) or not all(isinstance(x, str) and x.isidentifier() for x in dynamic) or "M" not in dynamic:
            raise SignatureError(f"{where}.dynamic: must be a list of symbol names that includes the token count 'M', got {_short(dynamic)}")
        if not isinstance(args_raw, list) or not 1 <= len(args_raw) <= MAX_ARGS:
            raise SignatureError(f"{where}.args: must be a non-empty list of at most {MAX_ARGS} arguments, got {_short(args_raw)}")
        args = tuple(Arg.from_json(a, f"{where}.args[{i}]") for i, a in enumerate(args_raw))
        names = [a.name for a in args]
        if len(set(names)) != len(names):
            raise SignatureError(f"{where}.args: duplicate argument names {names}")
        known = set(static) | set(dynamic)
        for i, a in enumerate(args):
            for j, dim in enumerate(a.shape):
                if isinstance(dim, str) and not compile_dim(dim).symbols <= known:
                    unknown = sorted(compile_dim(dim).symbols - known)
                    raise SignatureError(f"{where}.args[{i}].shape[{j}]: {dim!r} uses unknown symbol(s) {unknown}")
        bare = {dim for a in args for dim in a.shape}
        unbound = [x for x in dynamic if x not in bare]
        if unbound:
            raise SignatureError(f"{where}.dynamic: symbol(s) {unbound} are no argument's dimension")
        # Every dim must evaluate to a non-negative int with each dynamic symbol at 1 (catches
        # 'M // 0' and negative dims before any call evaluates them).
        env = {**static, **dict.fromkeys(dynamic, 1)}
        for i, a in enumerate(args):
            for j, dim in enumerate(a.shape):
                if isinstance(dim, str):
                    try:
                        n = compile_dim(dim)(env)
                    except (ArithmeticError, KeyError, TypeError, ValueError, RecursionError, MemoryError) as e:
                        raise SignatureError(f"{where}.args[{i}].shape[{j}]: invalid shape expression {dim!r}: {e}") from None
                    if not _is_int(n) or n < 0:
                        raise SignatureError(f"{where}.args[{i}].shape[{j}]: shape expression {dim!r} gives {n!r} at M = 1")
        return Signature(args, {k: int(v) for k, v in static.items()}, tuple(dynamic))


__all__ = ["DTYPES", "Arg", "Signature", "SignatureError", "compile_dim", "eval_dim"]
