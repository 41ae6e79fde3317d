"""`nvfp4-build plan`: derive the manifest a model needs from its checkpoint's headers.

    checkpoint headers (runtime/checkpoint.py: NVFP4 linears, fused into the GEMMs the model runs)
      -> distinct GEMM problems (N, K) and activation widths K, each with the largest token count
         any of its uses sees (routed experts: max_num_batched_tokens x top-k token-slots)
      -> token buckets: vLLM's CUDA-graph capture sizes mapped onto each family's tile table,
         consecutive sizes with the same choice merged (contiguous from M = 1)
      -> one [[op]] per (family, problem) with the archs whose family accepts every bucket
         (`Family.can_implement` decides; nothing here restates a family's rules)
      -> everything no family can run goes to the "unsupported" list (stderr + manifest tail).

Assumed deployment (written into the manifest header): vLLM with expert parallelism and
data-parallel attention, so attention, dense-MLP and shared-expert GEMMs have their full
checkpoint shapes on every rank; routed experts are split in contiguous blocks over the EP
ranks, and every rank runs the same (N, K) problems.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from nvfp4_aot.kernels import UnknownFamilyError, get_family
from nvfp4_aot.runtime.checkpoint import Checkpoint, Gemm, compress_ints, expert_range, name_patterns

# Tile tables: (largest M of the row, or None for "everything larger", tuning knobs).
Table = Sequence[tuple["int | None", Mapping[str, Any]]]
# NVFP4-weight GEMM families in order of preference, each with its M -> tuning table (the
# quack table is manifests/default.toml's: narrow token tiles for decode, wide for prefill).
GEMM_FAMILIES: dict[str, Table] = {
    "quack_w4a16_gemm": (
        (16, {"tile_m": 64, "tile_n": 16}),
        (32, {"tile_m": 64, "tile_n": 32}),
        (64, {"tile_m": 64, "tile_n": 64}),
        (256, {"tile_m": 128, "tile_n": 128}),
        (None, {"tile_m": 128, "tile_n": 256}),
    ),
    # Blackwell NVFP4 x NVFP4 (activations quantized by nvfp4_quantize); dense per (N, K) as
    # for Hopper, the grouped family will serve routed experts once the MoE runner exists.
    # Tiles as in manifests/default.toml (untested on hardware: no Blackwell GPU here).
    "quack_nvfp4_gemm": (
        (256, {"tile_m": 128, "tile_n": 128}),
        (None, {"tile_m": 256, "tile_n": 256, "cluster_m": 2}),
    ),
}
QUANTIZE = ("nvfp4_quantize", {"sf_layout": "swizzled"}, ((128, {"threads": 64}), (None, {"threads": 128})))
GLOBAL_SCALE = ("nvfp4_global_scale", {}, ((None, {}),))
ROLE_TEXT = {
    "attn": "attention",
    "dense": "dense MLP",
    "shared": "shared expert",
    "routed": "routed experts",
    "other": "linear",
}


class PlanError(ValueError):
    """The settings do not fit the checkpoint (e.g. --ep-size does not divide the experts)."""


@dataclass(frozen=True)
class Settings:
    archs: tuple[str, ...] = ("sm_90a", "sm_100a")
    ep_size: int = 1
    ep_rank: int | None = None  # None: every rank
    max_num_batched_tokens: int = 8192
    capture_sizes: tuple[int, ...] | None = None  # None: vLLM's default for max_capture_size
    max_capture_size: int = 512


@dataclass
class Op:
    family: str
    problem: dict[str, Any]
    archs: list[str]
    buckets: list[tuple[int, int, dict[str, Any]]]
    comments: list[str]


@dataclass
class Plan:
    header: list[str]
    ops: list[Op] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    unquantized: list[str] = field(default_factory=list)
    archs: tuple[str, ...] = ()
    name: str = "plan"

    def variant_counts(self) -> dict[str, int]:
        """Distinct variants per arch, counted the way the manifest loader dedups them."""
        seen: dict[str, set] = {a: set() for a in self.archs}
        for op in self.ops:
            for _, _, tuning in op.buckets:
                key = (op.family, tuple(sorted({**tuning, **op.problem}.items())))
                for a in op.archs:
                    seen[a].add(key)
        return {a: len(s) for a, s in seen.items()}


# ----------------------------------------------------------------------------- buckets


def vllm_capture_sizes(max_capture_size: int) -> list[int]:
    """vLLM's default CUDA-graph capture sizes: [1, 2, 4] + 8..248 step 8 + 256.. step 16."""
    sizes = [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, max_capture_size + 1, 16))
    return [s for s in sizes if s <= max_capture_size]


def pick(table: Table, m: int) -> Mapping[str, Any]:
    for hi, tuning in table:
        if hi is None or m <= hi:
            return tuning
    raise ValueError(f"tile table has no row for M={m}")


def make_buckets(table: Table, cap: int, capture_sizes: Sequence[int], padded: bool) -> list[tuple[int, int, dict[str, Any]]]:
    """Contiguous buckets [1, cap]. With `padded`, a token count up to the largest capture size
    runs as the next capture size (the CUDA graph it replays), so it gets that size's tiles;
    larger counts (eager) and unpadded counts (routed token-slots) get their own."""
    sizes = sorted(s for s in set(capture_sizes) if s <= cap)
    out: list[tuple[int, int, dict[str, Any]]] = []
    for m in range(1, cap + 1):
        eff = m
        if padded and sizes and m <= sizes[-1]:
            eff = sizes[bisect.bisect_left(sizes, m)]
        t = dict(pick(table, eff))
        if out and out[-1][2] == t:
            out[-1] = (out[-1][0], m, t)
        else:
            out.append((m, m, t))
    return out


# ----------------------------------------------------------------------------- planning


@dataclass
class _Use:
    """GEMMs of one role and name pattern sharing one (N, K) (or one input K)."""

    role: str
    gemms: list[Gemm]
    cap: int
    text: str | None = None  # _describe's result, computed once


def _describe(use: _Use, ep: str) -> str:
    """Checkpoint tensor prefixes of a use, e.g. model.layers.{0-60}.mlp.experts.{0-383}.gate_proj
    + up_proj (stacked along N: gate_up_proj), and what bounds its token count."""
    if use.text is not None:
        return use.text
    first = name_patterns(g.parts[0] for g in use.gemms)
    text = ", ".join(first)
    parts = use.gemms[0].parts
    if len(parts) > 1:
        leaves = [p.rpartition(".")[2] for p in parts[1:]]
        text += " + " + " + ".join(leaves) + f" (stacked along N: {use.gemms[0].name.rpartition('.')[2]})"
    note = ROLE_TEXT[use.role]
    if use.role == "routed":
        note += f"; M <= {use.cap} token-slots{ep}"
    else:
        note += f"; M <= {use.cap} tokens"
    use.text = f"{text}  [{note}]"
    return use.text


def _family_ok(family: str, problem: Mapping[str, Any], buckets, arch: str) -> list[str]:
    """Reasons `family` cannot run every bucket of `problem` on `arch` (its can_implement)."""
    try:
        fam = get_family(family)
    except (UnknownFamilyError, ImportError) as e:
        return [str(e)]
    reasons: list[str] = []
    for _, _, tuning in buckets:
        params = fam.parse_params({**tuning, **problem})
        reasons += [r for r in fam.can_implement(params, arch) if r not in reasons]
    return reasons


def _cap_to_family(family: str, cap: int, what: str, unsupported: list[str]) -> int:
    try:
        max_m = get_family(family).max_m
    except (UnknownFamilyError, ImportError):
        return cap
    if cap > max_m:
        unsupported.append(f"{family} {what}: token counts {max_m + 1}..{cap} exceed the family's max_m {max_m}; its buckets stop at {max_m}")
        return max_m
    return cap


def plan_checkpoint(ckpt_dir: Path | str, s: Settings, command: str = "") -> Plan:
    ck = Checkpoint(ckpt_dir)
    disc = ck.discovery
    if not disc.gemms:
        declared = ck.quant.producer or "none declared"
        raise PlanError(f"{ck.root}: no NVFP4 linears (ModelOpt weight/weight_scale/weight_scale_2 tensors) found; quantization: {declared}")
    routed = [g for g in disc.gemms if g.role == "routed"]
    top_k = ck.top_k
    n_exp = ck.num_experts or (max(g.expert for g in routed) + 1 if routed else 0)  # type: ignore[type-var]
    ep = ""
    if routed:
        if not top_k:
            raise PlanError(f"{ck.root / 'config.json'}: routed experts found but no num_experts_per_tok (top-k)")
        if n_exp % s.ep_size:
            raise PlanError(f"--ep-size {s.ep_size} does not divide the {n_exp} routed experts")
        if s.ep_rank is not None and not 0 <= s.ep_rank < s.ep_size:
            raise PlanError(f"--ep-rank {s.ep_rank} is not in [0, {s.ep_size})")
        per = n_exp // s.ep_size
        if s.ep_rank is not None:
            r = expert_range(n_exp, s.ep_size, s.ep_rank)
            routed_keep = set(r)
            ep = f"; EP rank {s.ep_rank} of {s.ep_size} holds experts {r.start}-{r.stop - 1}"
        else:
            routed_keep = set(range(n_exp))
            ep = f"; EP rank r of {s.ep_size} holds experts {per}r..{per}r+{per - 1}" if s.ep_size > 1 else ""
    else:
        routed_keep = set()
    gemms = [g for g in disc.gemms if g.role != "routed" or g.expert in routed_keep]
    T = s.max_num_batched_tokens
    caps = {role: T for role in ROLE_TEXT}
    caps["routed"] = T * (top_k or 1)
    sizes = sorted(set(s.capture_sizes if s.capture_sizes is not None else vllm_capture_sizes(min(s.max_capture_size, T))) | {T})

    # uses per (n, k) and per input k, grouped by role and fused-part leaves
    by_nk: dict[tuple[int, int], dict[tuple, _Use]] = {}
    by_k: dict[int, dict[tuple, _Use]] = {}
    for g in gemms:
        key = (g.role, tuple(p.rpartition(".")[2] for p in g.parts), g.name.rpartition(".")[2])
        for groups, gk in ((by_nk, (g.n, g.k)), (by_k, g.k)):
            u = groups.setdefault(gk, {}).setdefault(key, _Use(g.role, [], caps[g.role]))  # type: ignore[arg-type]
            u.gemms.append(g)

    plan = Plan(header=[], archs=s.archs, name=ck.root.name)
    unsupported: list[str] = []

    def add_op(family: str, problem: dict, table: Table, uses: Iterable[_Use], what: str, title: str, archs: Sequence[str]):
        uses = sorted(uses, key=lambda u: (list(ROLE_TEXT).index(u.role), _describe(u, ep)))
        cap = _cap_to_family(family, max(u.cap for u in uses), what, unsupported)
        padded = all(u.role != "routed" for u in uses)
        buckets = make_buckets(table, cap, sizes, padded)
        ok, bad = [], []
        for arch in archs:
            reasons = _family_ok(family, problem, buckets, arch)
            (bad if reasons else ok).append((arch, reasons))
        for arch, reasons in bad:
            unsupported.append(f"{arch}: {family} cannot implement {what} ({'; '.join(reasons)})")
        if ok:
            comments = [title] + [f"  {_describe(u, ep)}" for u in uses]
            plan.ops.append(Op(family, problem, [a for a, _ in ok], buckets, comments))

    for k, uses in sorted(by_k.items()):
        for family, extra, table in (QUANTIZE, GLOBAL_SCALE):
            title = f"{family} k={k}: activations entering the NVFP4 GEMMs with input width {k}:"
            add_op(family, {"k": k, **extra}, table, uses.values(), f"k={k}", title, s.archs)

    for (n, k), uses in sorted(by_nk.items()):
        cap = max(u.cap for u in uses.values())
        found: dict[str, list[str]] = {}
        reasons: dict[str, list[str]] = {a: [] for a in s.archs}
        for family, table in GEMM_FAMILIES.items():
            buckets = make_buckets(table, cap, sizes, False)
            for arch in s.archs:
                if any(arch in a for a in found.values()):
                    continue
                why = _family_ok(family, {"n": n, "k": k}, buckets, arch)
                if why:
                    reasons[arch].append(f"{family}: {'; '.join(why)}")
                else:
                    found.setdefault(family, []).append(arch)
        users = "; ".join(sorted({_describe(u, ep).split("  [")[0] for u in uses.values()}))
        for arch in s.archs:
            if not any(arch in a for a in found.values()):
                unsupported.append(f"{arch}: no NVFP4 GEMM family can implement n={n}, k={k} ({' | '.join(reasons[arch])}) <- {users}")
        for family, archs in found.items():
            table = GEMM_FAMILIES[family]
            note = ""
            if any(u.role == "routed" for u in uses.values()):
                note = " (routed experts: one dense call per expert until a grouped-GEMM family replaces this op)"
            title = f"{family} n={n} k={k}{note}:"
            add_op(family, {"n": n, "k": k}, table, uses.values(), f"n={n}, k={k}", title, archs)

    by_reason: dict[str, list[str]] = {}
    for u in disc.unsupported:
        by_reason.setdefault(u.reason, []).append(u.what)
    for reason, names in sorted(by_reason.items()):
        unsupported.append(f"{', '.join(name_patterns(names))}: {reason}")
    plan.unsupported = unsupported
    plan.unquantized = name_patterns(disc.unquantized)
    plan.header = _header(ck, s, command, gemms, n_exp, top_k, sizes, ep)
    return plan


def _header(ck: Checkpoint, s: Settings, command: str, gemms: list[Gemm], n_exp: int, top_k, sizes, ep: str) -> list[str]:
    model = ck.cfg("model_type", default="?")
    arch_names = ",".join(ck.cfg("architectures", default=[]) or [])
    q = ck.quant
    layers = sorted({g.layer for g in gemms if g.layer is not None})
    lines = [
        "Generated by `nvfp4-build plan`: edit the command line, not this file.",
        f"  {command}" if command else "",
        f"Checkpoint: {ck.root.name} (model_type {model}{', ' + arch_names if arch_names else ''}; "
        f"{ck.num_layers} layers in config.json; quantization: {q.producer or '?'} {q.algo or '?'}"
        f"{f' group {q.group_size}' if q.group_size else ''})",
        f"NVFP4 GEMMs the model runs: {len(gemms)} (layers {compress_ints(layers) or '-'}), "
        f"{len({(g.n, g.k) for g in gemms})} distinct (N, K); fused: gate_proj + up_proj, q_a_proj + kv_a_proj_with_mqa (stacked along N).",
    ]
    if n_exp:
        lines.append(f"Routed experts: {n_exp} per MoE layer, top-k {top_k}{ep or '; no expert parallelism'}")
        if s.ep_size > 1:
            lines.append("  (global expert id g -> local id g - first expert of the rank); every rank runs the same (N, K) problems.")
    lines += [
        "Assumed: attention, dense-MLP and shared-expert GEMMs replicated at full size on every rank (data-parallel attention).",
        f"Token buckets: CUDA-graph capture sizes {_sizes_text(sizes)} (vLLM pads a batch up to the next one),",
        f"  max_num_batched_tokens {s.max_num_batched_tokens}; routed-expert ops reach max_num_batched_tokens x top-k token-slots.",
    ]
    return [x for x in lines if x]


def _sizes_text(sizes: Sequence[int]) -> str:
    """[1, 2, 4, 8, 16, ..., 256, 272, ...] -> '1,2,4, 8..248 step 8, 256..512 step 16, 8192'."""
    parts, i = [], 0
    while i < len(sizes):
        j = i
        step = sizes[i + 1] - sizes[i] if i + 1 < len(sizes) else 0
        while j + 1 < len(sizes) and sizes[j + 1] - sizes[j] == step:
            j += 1
        if j - i >= 3:
            parts.append(f"{sizes[i]}..{sizes[j]} step {step}")
            i = j + 1
        else:
            parts.append(str(sizes[i]))
            i += 1
    return "[" + ", ".join(parts) + "]"


# ----------------------------------------------------------------------------- rendering


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def render(plan: Plan) -> str:
    counts = plan.variant_counts()
    out = [f"# {line}" for line in plan.header]
    out.append("# Variants: " + ", ".join(f"{a} {n}" for a, n in counts.items()) + f" ({len(plan.ops)} ops)")
    out.append("")
    out.append(f"description = {_toml('planned from ' + plan.name)}")
    out.append(f"archs = {_toml(list(plan.archs))}")
    for op in plan.ops:
        out.append("")
        out += [f"# {c}" for c in op.comments]
        out.append("[[op]]")
        out.append(f"family = {_toml(op.family)}")
        out.append(f"archs = {_toml(op.archs)}")
        out.append(f"problem = {_toml(op.problem)}")
        out.append("buckets = [")
        for lo, hi, tuning in op.buckets:
            b = {"m": [lo, hi], **({"tuning": tuning} if tuning else {})}
            out.append(f"  {_toml(b)},")
        out.append("]")
    out.append("")
    out.append(f"# Unsupported: nothing is planned for these ({len(plan.unsupported)}):")
    out += [f"#   {u}" for u in plan.unsupported] or ["#   (none)"]
    out.append(f"# Not quantized (BF16/F16/F32 2-D weights, run by other paths): {len(plan.unquantized)} patterns")
    out += [f"#   {u}" for u in plan.unquantized]
    return "\n".join(out) + "\n"
