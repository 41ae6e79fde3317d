"""`nvfp4-build plan`: derive the manifest a model needs from its checkpoint's headers.

    checkpoint headers (runtime/checkpoint.py: NVFP4 linears, fused into the GEMMs the model runs)
      -> distinct GEMM problems (N, K), activation widths K and MoE layer shapes, each with the
         largest token count any of its uses sees (routed experts: max_num_batched_tokens x top-k
         token-slots)
      -> token buckets: vLLM's CUDA-graph capture sizes mapped onto each family's tile table,
         consecutive sizes with the same choice merged (contiguous from M = 1)
      -> the [[op]]s the runtime opens, per arch:
           sm_90a (W4A16, bf16 activations): runtime/linear.py Nvfp4Linear's w4a16_gemm +
             quack_w4a16_gemm per dense (N, K); runtime/moe.py MoERunner's moe_route,
             moe_permute, w4a16_grouped_gemm (L1, L2), moe_silu_mul, moe_combine per MoE shape
           sm_100a (NVFP4 x NVFP4): quack_nvfp4_gemm per (N, K) (routed experts one dense call
             per expert, no runner yet) + nvfp4_quantize / nvfp4_global_scale per input K
         each with the archs whose family accepts every bucket (`Family.can_implement` decides;
         nothing here restates a family's rules)
      -> everything no family can run goes to the "unsupported" list (stderr + manifest tail).

Assumed deployment (written into the manifest header): vLLM with expert parallelism and
data-parallel attention, so attention, dense-MLP and shared-expert GEMMs have their full
checkpoint shapes on every rank; routed experts are split in contiguous blocks over the EP
ranks, and every rank runs the same problems.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from nvfp4_aot.kernels import UnknownFamilyError, get_family
from nvfp4_aot.runtime.checkpoint import Checkpoint, Gemm, compress_ints, expert_range, name_patterns

# Tile tables: (largest M of the row, or None for "everything larger", tuning knobs). Tunings
# are manifests/default.toml's (benchmarks/w4a16_sweep.py on an H100 for the w4a16 families).
Table = Sequence[tuple["int | None", Mapping[str, Any]]]
HOPPER = ("sm_90a",)  # archs runtime/linear.py and runtime/moe.py serve with W4A16 (bf16 activations)
# quack's WGMMA W4A16 GEMM (Nvfp4Linear above M = QUACK_FROM): quack's tile_n tiles the token
# count (swap-AB), so decode buckets get narrow token tiles, prefill wide ones.
QUACK_W4A16: Table = (
    (16, {"tile_m": 64, "tile_n": 16}),
    (32, {"tile_m": 64, "tile_n": 32}),
    (64, {"tile_m": 64, "tile_n": 64}),
    (256, {"tile_m": 128, "tile_n": 128}),
    (None, {"tile_m": 128, "tile_n": 256}),
)
# Our W4A16 decode GEMM (kernels/w4a16), dense: N < K (e.g. 2048 / 6144 x 7168) has few 16-row
# slices for a long K, so 8 warps split K; otherwise 4 warps, 2 row blocks from 17 tokens.
W4A16_NARROW: Table = (
    (8, {"warps": 8, "rb": 1, "nt": 1}),
    (16, {"warps": 8, "rb": 1, "nt": 2}),
    (None, {"warps": 8, "rb": 1, "nt": 4}),
)
W4A16_WIDE: Table = (
    (8, {"warps": 4, "rb": 1, "nt": 1}),
    (16, {"warps": 4, "rb": 1, "nt": 2}),
    (None, {"warps": 4, "rb": 2, "nt": 4}),
)
# Grouped, M = token-slots: <= 192 is <= 4 tokens per expert at 48 local experts, <= 768 <= 16.
W4A16_GROUPED: Table = (
    (192, {"warps": 4, "rb": 1, "nt": 1}),
    (768, {"warps": 4, "rb": 4, "nt": 2}),
    (3072, {"warps": 8, "rb": 1, "nt": 8, "split": "n"}),
    (None, {"warps": 4, "rb": 2, "nt": 16, "split": "wg"}),
)
# MoE glue (CUDA cores): decode (M <= 128) narrower CTAs / fewer loads in flight, then prefill.
MOE_ROUTE: Table = ((128, {"threads": 128}), (None, {"threads": 512}))
MOE_PERMUTE: Table = ((128, {"threads": 128, "unroll": 1}), (None, {"threads": 256, "unroll": 2}))
MOE_SILU_MUL: Table = ((128, {"threads": 128, "unroll": 1}), (None, {"threads": 256, "unroll": 2}))
MOE_COMBINE: Table = ((128, {"threads": 128}), (None, {"threads": 256}))
MOE_PAD = 1  # runtime/moe.py PAD: the Hopper runner's groups are unpadded
# Blackwell NVFP4 x NVFP4 (activations quantized by nvfp4_quantize), dense per (N, K); 1-CTA MMA
# for decode, 2-CTA for prefill (untested on hardware: no Blackwell GPU here).
QUACK_NVFP4: Table = (
    (256, {"tile_m": 128, "tile_n": 128}),
    (None, {"tile_m": 256, "tile_n": 256, "cluster_m": 2}),
)
QUANTIZE = ("nvfp4_quantize", {"sf_layout": "swizzled"}, ((128, {"threads": 64}), (None, {"threads": 128})))
GLOBAL_SCALE = ("nvfp4_global_scale", {}, ((None, {}),))


def w4a16_table(n: int, k: int) -> Table:
    return W4A16_NARROW if n < k else W4A16_WIDE


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


def _moe_shapes(routed: Sequence[Gemm]) -> tuple[dict[tuple[int, int], list[int]], list[int]]:
    """MoE layers by MoERunner shape (hidden H, intermediate I): each layer's routed experts must
    be a stacked gate_up_proj [2I, H] and a down_proj [H, I]. Also the layers that are not."""
    by_layer: dict[Any, dict[str, set[tuple[int, int]]]] = {}
    for g in routed:
        by_layer.setdefault(g.layer, {}).setdefault(g.name.rpartition(".")[2], set()).add((g.n, g.k))
    shapes: dict[tuple[int, int], list[int]] = {}
    bad = []
    for layer, leaves in sorted(by_layer.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        l1, l2 = leaves.get("gate_up_proj", set()), leaves.get("down_proj", set())
        if set(leaves) == {"gate_up_proj", "down_proj"} and len(l1) == len(l2) == 1:
            (n1, h), (n2, k2) = next(iter(l1)), next(iter(l2))
            if n1 % 2 == 0 and (n2, k2) == (h, n1 // 2):
                shapes.setdefault((h, n1 // 2), []).append(layer)
                continue
        bad.append(layer)
    return shapes, bad


def _plan_moe(gemms: Sequence[Gemm], hopper: Sequence[str], experts: int, top_k: int, tokens: int, ep: str,
              add_op: Callable[..., list[str]], ops: list[Op], unsupported: list[str]) -> None:
    """runtime/moe.py MoERunner's ops per MoE shape, with the token counts its missing() checks:
    route / permute / combine see M = tokens, the grouped GEMMs and silu_mul M = tokens x top-k
    rows (groups unpadded, pad = 1)."""
    routed = [g for g in gemms if g.role == "routed"]
    shapes, bad = _moe_shapes(routed)
    if bad:
        names = name_patterns(g.name for g in routed if g.layer in bad)
        unsupported += [f"{a}: MoERunner needs each layer's routed experts as gate_up_proj [2I, H] + down_proj [H, I] <- {', '.join(names)}" for a in hopper]
    rows = tokens * top_k
    for (h, i), layers in sorted(shapes.items()):
        mine = [g for g in routed if g.layer in layers]
        l1 = _Use("routed", [g for g in mine if g.name.endswith(".gate_up_proj")], rows)
        l2 = _Use("routed", [g for g in mine if g.name.endswith(".down_proj")], rows)
        where = ", ".join(p.rpartition(".")[0] for p in name_patterns(g.name for g in l1.gemms))
        experts_line = f"  {where}  [routed experts: {experts} local, top-{top_k}, hidden {h}, intermediate {i}{ep}]"
        runner = "MoERunner (runtime/moe.py) "
        need = (lambda a: f" <- {where}")
        tok, slots = f"M = tokens <= {tokens}", f"M = token-slots (tokens x top-{top_k}) <= {rows}"
        steps = [
            ("moe_route", {"experts": experts, "topk": top_k, "pad": MOE_PAD}, MOE_ROUTE, tokens, True, [],
             f"{runner}routing: topk ids -> rows grouped by local expert; {tok}:"),
            ("moe_permute", {"h": h, "topk": top_k, "experts": experts, "pad": MOE_PAD}, MOE_PERMUTE, tokens, True, [],
             f"{runner}gathers the hidden states into the grouped rows; {tok}:"),
            ("w4a16_grouped_gemm", {"n": 2 * i, "k": h, "experts": experts}, W4A16_GROUPED, rows, False, [l1],
             f"{runner}L1 (gate | up), all local experts in one launch; {slots}:"),
            ("moe_silu_mul", {"i": i}, MOE_SILU_MUL, rows, False, [],
             f"{runner}silu(gate) * up between L1 and L2; {slots}:"),
            ("w4a16_grouped_gemm", {"n": h, "k": i, "experts": experts}, W4A16_GROUPED, rows, False, [l2],
             f"{runner}L2 (down); {slots}:"),
            ("moe_combine", {"h": h, "topk": top_k}, MOE_COMBINE, tokens, True, [],
             f"{runner}top-k weighted sum of each token's rows; {tok}:"),
        ]
        first = len(ops)
        runnable = set(hopper)
        for family, problem, table, cap, padded, uses, text in steps:
            what = ", ".join(f"{k}={v}" for k, v in problem.items())
            title = [f"{family} {what.replace(', ', ' ')}: {text}"] + ([] if uses else [experts_line])
            runnable &= set(add_op(family, problem, table, uses, what, title, hopper, cap=cap, padded=padded, note=need))
        # the runner opens all six ops: where one is missing, none of them serves anything
        for op in ops[first:]:
            op.archs = [a for a in op.archs if a in runnable]
        ops[first:] = [op for op in ops[first:] if op.archs]
        unsupported += [f"{a}: MoERunner h={h}, i={i}: nothing planned for it (it needs all six ops) <- {where}" for a in hopper if a not in runnable]


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
    hopper = [a for a in s.archs if a in HOPPER]
    nvfp4 = [a for a in s.archs if a not in HOPPER]  # NVFP4 x NVFP4: activations quantized

    def add_op(family: str, problem: dict, table: Table, uses: Iterable[_Use], what: str, title: str | list[str],
               archs: Sequence[str], cap: int | None = None, padded: bool | None = None,
               note: Callable[[str], str] = lambda arch: "") -> list[str]:
        """Plan `family` for `problem` on the `archs` its can_implement accepts; report the others
        (`note(arch)`: who needs it). Returns the archs planned."""
        uses = sorted(uses, key=lambda u: (list(ROLE_TEXT).index(u.role), _describe(u, ep)))
        cap = _cap_to_family(family, cap or max(u.cap for u in uses), what, unsupported)
        if padded is None:
            padded = all(u.role != "routed" for u in uses)
        buckets = make_buckets(table, cap, sizes, padded)
        ok = []
        for arch in archs:
            reasons = _family_ok(family, problem, buckets, arch)
            if reasons:
                unsupported.append(f"{arch}: {family} cannot implement {what} ({'; '.join(reasons)}){note(arch)}")
            else:
                ok.append(arch)
        if ok:
            comments = ([title] if isinstance(title, str) else title) + [f"  {_describe(u, ep)}" for u in uses]
            plan.ops.append(Op(family, problem, ok, buckets, comments))
        return ok

    if nvfp4:
        for k, uses in sorted(by_k.items()):
            for family, extra, table in (QUANTIZE, GLOBAL_SCALE):
                title = f"{family} k={k}: activations entering the NVFP4 x NVFP4 GEMMs with input width {k} (Hopper's W4A16 takes bf16):"
                add_op(family, {"k": k, **extra}, table, uses.values(), f"k={k}", title, nvfp4)

    for (n, k), uses in sorted(by_nk.items()):
        what = f"n={n}, k={k}"
        users = "; ".join(sorted({_describe(u, ep).split("  [")[0] for u in uses.values()}))
        dense = [u for u in uses.values() if u.role != "routed"]
        if hopper and dense:  # runtime/linear.py Nvfp4Linear
            linear = f" <- {'; '.join(sorted({_describe(u, ep).split('  [')[0] for u in dense}))}"
            title = f"w4a16_gemm n={n} k={k}: Nvfp4Linear (runtime/linear.py) for M <= 64; every M without quack_w4a16_gemm or one global scale:"
            have = add_op("w4a16_gemm", {"n": n, "k": k}, w4a16_table(n, k), dense, what, title, hopper,
                          note=lambda a: f"; Nvfp4Linear cannot serve these (it opens w4a16_gemm first), so no quack_w4a16_gemm either{linear}")
            if have:  # only where Nvfp4Linear can open w4a16_gemm
                title = f"quack_w4a16_gemm n={n} k={k}: Nvfp4Linear for M > 64 (layers with one global scale):"
                add_op("quack_w4a16_gemm", {"n": n, "k": k}, QUACK_W4A16, dense, what, title, have,
                       note=lambda a: f"; Nvfp4Linear runs w4a16_gemm for every M{linear}")
        if nvfp4:
            routed_note = " (routed experts: one dense call per expert until a Blackwell MoE runner replaces this op)"
            title = f"quack_nvfp4_gemm n={n} k={k}{routed_note if len(dense) < len(uses) else ''}:"
            add_op("quack_nvfp4_gemm", {"n": n, "k": k}, QUACK_NVFP4, uses.values(), what, title, nvfp4,
                   note=lambda a: f" <- {users}")

    if hopper and routed:
        _plan_moe(gemms, hopper, n_exp // s.ep_size, top_k, T, ep, add_op, plan.ops, unsupported)

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
        f"  max_num_batched_tokens {s.max_num_batched_tokens}; the grouped GEMMs, moe_silu_mul and every routed-expert op on",
        "  sm_100a reach max_num_batched_tokens x top-k token-slots (unpadded); moe_route / moe_permute / moe_combine see tokens.",
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
