"""Manifests: which variants to build and how the runtime dispatches on the token count M.

    archs = ["sm_90a", "sm_100a"]           # default for every op

    [[op]]
    family  = "nvfp4_quantize"
    problem = { k = [7168, 3072], sf_layout = "swizzled" }   # lists expand to their product
    tuning  = { threads = 128 }             # default knobs for every bucket (optional)
    buckets = [                             # contiguous M ranges from 1; each picks knobs
      { m = [1, 255],    tuning = { threads = 64 } },
      { m = [256, 8192] },
    ]

Every (problem point x bucket x arch) is one variant (family params = problem + tuning);
identical variants are built once. Errors name the file, the line of the [[op]] and the key.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from nvfp4_aot.kernels import Family, ParamError, UnknownFamilyError, get_family
from nvfp4_aot.runtime.store_format import ARCH_RE, op_id

TOP_KEYS = {"archs", "op", "description"}
OP_KEYS = {"family", "problem", "tuning", "buckets", "archs"}
BUCKET_KEYS = {"m", "tuning"}
OP_HEADER = re.compile(r"\s*\[\[\s*op\s*\]\]")


class ManifestError(ValueError):
    """A manifest is invalid; the message starts with file:line and names the key."""


@dataclass(frozen=True)
class Variant:
    family: str
    params: Mapping[str, Any]  # every codegen parameter, plain JSON values
    arch: str

    @property
    def ident(self) -> tuple:
        return (self.family, tuple(sorted(self.params.items())), self.arch)


@dataclass(frozen=True)
class Bucket:
    lo: int
    hi: int
    params: Mapping[str, Any]  # every codegen parameter (problem + tuning + defaults)
    tuning: Mapping[str, Any] = field(default_factory=dict)  # the knobs as the manifest spells them


@dataclass(frozen=True)
class OpSpec:
    name: str
    family: str
    problem: Mapping[str, Any]
    archs: tuple[str, ...]
    buckets: tuple[Bucket, ...]
    comments: tuple[str, ...] = field(default=(), compare=False)  # written above the [[op]] table

    def variants(self) -> list[Variant]:
        return [Variant(self.family, b.params, a) for b in self.buckets for a in self.archs]


@dataclass(frozen=True)
class Manifest:
    name: str
    path: Path
    ops: tuple[OpSpec, ...]
    description: str = ""
    archs: tuple[str, ...] = ("sm_90a", "sm_100a")  # the default archs of its ops
    header: tuple[str, ...] = field(default=(), compare=False)  # comment lines written first
    footer: tuple[str, ...] = field(default=(), compare=False)  # comment lines written last

    def variants(self) -> list[Variant]:
        """Every distinct variant, each once (identical variants of different ops are built once)."""
        seen: dict[tuple, Variant] = {}
        for op in self.ops:
            for v in op.variants():
                seen.setdefault(v.ident, v)
        return list(seen.values())

    def variant_counts(self) -> dict[str, int]:
        """Distinct variants per arch, in the order of `archs` (then any other arch)."""
        counts = {a: 0 for a in self.archs}
        for v in self.variants():
            counts[v.arch] = counts.get(v.arch, 0) + 1
        return counts


def default_manifest_path() -> Path:
    from importlib.resources import files

    return Path(str(files("nvfp4_aot.manifests") / "default.toml"))


def load_manifest(path: Path | str) -> Manifest:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ManifestError(f"{path}: cannot read manifest: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{line}: not valid UTF-8 (byte {e.start}): a manifest is TOML text") from None
    return loads_manifest(text, path)


def loads_manifest(text: str, path: Path | str) -> Manifest:
    """Parse manifest text; `path` names it in errors and gives the manifest its name."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise ManifestError(f"{path}: invalid TOML: {e}") from e
    return _parse(data, path, _op_lines(text))


def _op_lines(text: str) -> list[int]:
    """Line numbers of the [[op]] headers. A line that looks like one may lie inside a multi-line
    string; it is a real header iff the text before it is a complete TOML document (checked
    only when the text has a multi-line string at all)."""
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if OP_HEADER.match(line)]
    if '"""' not in text and "'''" not in text:
        return [i + 1 for i in hits]
    real = []
    for i in hits:
        try:
            tomllib.loads("".join(lines[:i]))
        except tomllib.TOMLDecodeError:
            continue
        real.append(i + 1)
    return real


def _parse(data: Mapping[str, Any], path: Path, op_lines: list[int]) -> Manifest:
    def err(where: str, msg: str, line: int | None = None) -> ManifestError:
        return ManifestError(f"{path}:{line or 1}: {where}: {msg}")

    extra = sorted(set(data) - TOP_KEYS)
    if extra:
        raise err(extra[0], f"unknown top-level key (allowed: {sorted(TOP_KEYS)})")
    default_archs = _archs(data.get("archs", ["sm_90a", "sm_100a"]), lambda m: err("archs", m))
    ops_raw = data.get("op")
    if not isinstance(ops_raw, list) or not ops_raw:
        raise err("op", "a manifest needs at least one [[op]] table")
    ops: list[OpSpec] = []
    names: dict[str, str] = {}
    for i, raw in enumerate(ops_raw):
        line = op_lines[i] if i < len(op_lines) else None
        for spec in _parse_op(raw, f"op[{i}]", default_archs, lambda w, m, line=line: err(w, m, line)):
            if spec.name in names:
                raise err(f"op[{i}]", f"{spec.name} is already defined by {names[spec.name]}", line)
            names[spec.name] = f"op[{i}]"
            ops.append(spec)
    description = data.get("description", "")
    return Manifest(path.stem, path, tuple(ops), description if isinstance(description, str) else "", default_archs)


def _archs(value: Any, err) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise err(f"must be a non-empty list of archs like 'sm_90a', got {value!r}")
    bad = [a for a in value if not isinstance(a, str) or not ARCH_RE.fullmatch(a)]
    if bad:
        raise err(f"{bad[0]!r} is not an arch-specific target like 'sm_90a' or 'sm_100a'")
    return tuple(dict.fromkeys(value))


def _table(value: Any, where: str, err) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise err(where, f"must be a table, got {value!r}")
    return dict(value)


def _parse_op(raw: Any, where: str, default_archs, err) -> list[OpSpec]:
    if not isinstance(raw, dict):
        raise err(where, "must be a table")
    extra = sorted(set(raw) - OP_KEYS)
    if extra:
        raise err(f"{where}.{extra[0]}", f"unknown key (allowed: {sorted(OP_KEYS)})")
    if not isinstance(raw.get("family"), str):
        raise err(f"{where}.family", "missing or not a string")
    try:
        fam = get_family(raw["family"])
    except UnknownFamilyError as e:
        raise err(f"{where}.family", str(e)) from None
    archs = _archs(raw["archs"], lambda m: err(f"{where}.archs", m)) if "archs" in raw else default_archs
    problem = _table(raw.get("problem"), f"{where}.problem", err)
    not_problem = sorted(set(problem) - set(fam.problem_keys))
    if not_problem:
        raise err(f"{where}.problem.{not_problem[0]}", f"not a problem parameter of {fam.name} (those are {list(fam.problem_keys)})")
    tuning = _table(raw.get("tuning"), f"{where}.tuning", err)
    buckets_raw = raw.get("buckets", [{"m": [1, fam.max_m]}])
    if not isinstance(buckets_raw, list) or not buckets_raw:
        raise err(f"{where}.buckets", "must be a non-empty list of { m = [lo, hi], tuning = {...} }")
    ranges = _bucket_ranges(buckets_raw, fam, f"{where}.buckets", err)

    keys = list(problem)
    axes = [v if isinstance(v, list) else [v] for v in problem.values()]
    empty = [k for k, a in zip(keys, axes) if not a]
    if empty:
        raise err(f"{where}.problem.{empty[0]}", "is an empty list: the op would expand to 0 variants")
    specs = []
    for point in itertools.product(*axes):
        prob = dict(zip(keys, point))
        buckets = []
        for bi, ((lo, hi), b) in enumerate(zip(ranges, buckets_raw)):
            bwhere = f"{where}.buckets[{bi}]"
            btuning = _table(b.get("tuning"), f"{bwhere}.tuning", err)
            clash = sorted(set(btuning) & set(fam.problem_keys)) or sorted(set(tuning) & set(fam.problem_keys))
            if clash:
                raise err(bwhere, f"{clash[0]!r} is a problem parameter; set it under problem")
            values = {**tuning, **btuning, **prob}
            params = _check_params(fam, values, archs, bwhere, err)
            buckets.append(Bucket(lo, hi, params, {**tuning, **btuning}))
        # The op's identity uses every problem parameter, defaults included, so that a caller
        # asking for the full problem finds it whether or not the manifest spelled a default.
        full = {k: buckets[0].params[k] for k in fam.problem_keys}
        specs.append(OpSpec(op_id(fam.name, full), fam.name, full, archs, tuple(buckets)))
    return specs


def _bucket_ranges(buckets_raw: list, fam: Family, where: str, err) -> list[tuple[int, int]]:
    ranges = []
    expect = 1
    for bi, b in enumerate(buckets_raw):
        bwhere = f"{where}[{bi}]"
        if not isinstance(b, dict) or set(b) - BUCKET_KEYS:
            raise err(bwhere, f"must be a table with keys {sorted(BUCKET_KEYS)}")
        m = b.get("m")
        if not (isinstance(m, list) and len(m) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in m)):
            raise err(f"{bwhere}.m", f"must be [lo, hi] integers, got {m!r}")
        lo, hi = m
        if lo != expect:
            raise err(f"{bwhere}.m", f"buckets must be contiguous from M=1: expected lo={expect}, got {lo}")
        if hi < lo:
            raise err(f"{bwhere}.m", f"hi={hi} < lo={lo}")
        if hi > fam.max_m:
            raise err(f"{bwhere}.m", f"hi={hi} exceeds {fam.name}'s largest token count {fam.max_m}")
        ranges.append((lo, hi))
        expect = hi + 1
    return ranges


def _check_params(fam: Family, values: dict, archs, where: str, err) -> dict[str, Any]:
    bad = sorted(k for k, v in values.items() if isinstance(v, (list, dict)))
    if bad:
        raise err(where, f"{fam.name}: parameter {bad[0]!r} must be a single value, got {values[bad[0]]!r}")
    try:
        params = fam.parse_params(values)
    except (ParamError, TypeError, ValueError) as e:
        raise err(where, f"{fam.name}: {e}") from None
    for arch in archs:
        try:
            reasons = fam.can_implement(params, arch)
        except (TypeError, ValueError, ArithmeticError) as e:  # a value of the right type the family cannot take
            reasons = [f"{type(e).__name__}: {e}"]
        if reasons:
            raise err(where, f"{fam.name} cannot implement {values} on {arch}: {'; '.join(reasons)}")
    return dict(sorted(vars(params).items()))


# ----------------------------------------------------------------------------- writer
# The one writer of the format parsed above: loads_manifest(dumps_manifest(m)) == m for every
# Manifest (comments are written, not read back).


def toml_value(v: Any) -> str:
    """One TOML value, inline (tables as inline tables, in insertion order)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def dumps_manifest(m: Manifest) -> str:
    """Manifest -> TOML text: header comments, a variant count, then each op (its comments,
    family, archs, problem, buckets with their tunings as spelled), then footer comments."""
    counts = m.variant_counts()
    out = [f"# {line}" for line in m.header]
    out.append("# Variants: " + ", ".join(f"{a} {n}" for a, n in counts.items()) + f" ({len(m.ops)} ops)")
    out.append("")
    if m.description:
        out.append(f"description = {toml_value(m.description)}")
    out.append(f"archs = {toml_value(list(m.archs))}")
    for op in m.ops:
        out.append("")
        out += [f"# {c}" for c in op.comments]
        out.append("[[op]]")
        out.append(f"family = {toml_value(op.family)}")
        out.append(f"archs = {toml_value(list(op.archs))}")
        out.append(f"problem = {toml_value(dict(op.problem))}")
        out.append("buckets = [")
        for b in op.buckets:
            row = {"m": [b.lo, b.hi], **({"tuning": dict(b.tuning)} if b.tuning else {})}
            out.append(f"  {toml_value(row)},")
        out.append("]")
    if m.footer:
        out.append("")
        out += [f"# {line}" for line in m.footer]
    return "\n".join(out) + "\n"


def op_spec(family: str, problem: Mapping[str, Any], archs: Sequence[str], buckets: Sequence[tuple[int, int, Mapping[str, Any]]],
            comments: Sequence[str] = ()) -> OpSpec:
    """An OpSpec from (lo, hi, tuning) rows, with each bucket's params completed by the family
    exactly as the parser completes them (so a planned Manifest equals the one loaded back)."""
    fam = get_family(family)
    rows = []
    for lo, hi, tuning in buckets:
        params = dict(sorted(vars(fam.parse_params({**tuning, **problem})).items()))
        rows.append(Bucket(lo, hi, params, dict(tuning)))
    full = {k: rows[0].params[k] for k in fam.problem_keys}
    return OpSpec(op_id(family, full), family, dict(problem), tuple(archs), tuple(rows), tuple(comments))
