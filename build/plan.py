"""`nvfp4-build plan`: derive the manifest a model needs from its checkpoint's headers.

    checkpoint headers (runtime/checkpoint.py: NVFP4 linears, fused into the GEMMs the model runs)
      -> distinct GEMM problems (N, K), activation widths K and MoE layer shapes, each with the
         largest token count any of its uses sees (routed experts: max_num_batched_tokens x top-k
         token-slots)
      -> token buckets: vLLM's CUDA-graph capture sizes mapped onto each family's tile table,
         consecutive sizes with the same choice merged (contiguous from M = 1)
      -> the [[op]]s the runtime opens, per arch, as the serving classes declare them
         (runtime/declare.py: `Nvfp4Linear.ops` per dense (N, K), `MoERunner.ops` per MoE shape
         and EP layout, for sm_90a and sm_100a alike; nothing here restates a runner's op list,
         padding or thresholds), tuned by each family's tile table (`Family.tile_table`), each
         with the archs whose family accepts every bucket (`Family.can_implement` decides)
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
from typing import Any, Mapping, Sequence

from nvfp4_aot.kernels import UnknownFamilyError, get_family
from nvfp4_aot.kernels.family import Table
from nvfp4_aot.runtime.checkpoint import Checkpoint, CheckpointError, Gemm, compress_ints, expert_proj, expert_range, name_patterns
from nvfp4_aot.runtime.declare import OpDecl
from nvfp4_aot.runtime.linear import Nvfp4Linear
from nvfp4_aot.runtime.moe import MoERunner
from nvfp4_aot.runtime.word_order import GROUPED_ORDERS, for_runner

from .manifest import Manifest, OpSpec, op_spec

ROLE_TEXT = {
    "attn": "attention",
    "dense": "dense MLP",
    "shared": "shared expert",
    "routed": "routed experts",
    "other": "linear",
}


class PlanError(ValueError):
    """The command-line settings do not fit the checkpoint (e.g. --ep-size does not divide the
    experts): a usage error. Problems of the checkpoint itself (its config.json included) are
    CheckpointErrors."""


# What serves the modules of a DeepSeek-V4 mixed checkpoint that are not NVFP4 (runtime/checkpoint.py
# FORMATS), as vLLM 0.32's DeepseekV4FP8Config assigns them: informational manifest lines.
VLLM_SERVED = {
    "fp8_block": "block FP8 (F8_E4M3, F8_E8M0 scale per 128x128): vLLM's Fp8LinearMethod",
    "mxfp4": "MXFP4 (I8 E2M1 pairs, F8_E8M0 scale per 32): vLLM's Mxfp4MoEMethod (the MTP draft's routed experts)",
    "unquantized": "BF16/F32: vLLM's unquantized layers and parameters",
}


@dataclass(frozen=True)
class Settings:
    archs: tuple[str, ...] = ("sm_90a", "sm_100a")
    ep_size: int = 1
    ep_rank: int | None = None  # None: every rank
    max_num_batched_tokens: int = 8192
    capture_sizes: tuple[int, ...] | None = None  # None: vLLM's default for max_capture_size
    max_capture_size: int = 512
    # sm_90a: the blob word order both runners prepare (runtime/word_order.py); None: each runner's default
    word_order: str | None = None


@dataclass
class Plan:
    """The planned Manifest plus what nothing serves (also in the manifest's footer)."""

    manifest: Manifest
    unsupported: list[str] = field(default_factory=list)
    unquantized: list[str] = field(default_factory=list)
    served_by_vllm: list[str] = field(default_factory=list)  # DeepSeek-V4 mixed layout only

    @property
    def name(self) -> str:
        return self.manifest.name


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


def runner_manifest(name: str, decls: Sequence[OpDecl], max_tokens: int, arch: str = "sm_90a",
                    capture_sizes: Sequence[int] | None = None, header: Sequence[str] = ()) -> Manifest:
    """A manifest of exactly these runner declarations, without a checkpoint (GPU-test stores, A/B
    stores of one runner shape): each op once, on `arch`, bucketed as `plan` buckets it (the family's
    tile table over the capture sizes, default vLLM's up to 512, up to the M the op sees at
    max_tokens)."""
    sizes = list(capture_sizes or vllm_capture_sizes(512))
    specs, seen = [], set()
    for d in decls:
        key = (d.family, tuple(sorted(d.problem.items())))
        if key in seen:  # one op opened by two decls (the unpadded tier's route is the decode path's)
            continue
        seen.add(key)
        buckets = make_buckets(get_family(d.family).tile_table(d.problem), d.m_of(max_tokens), sizes, d.padded)
        specs.append(op_spec(d.family, d.problem, (arch,), buckets, (f"{d.family}: {d.text}",)))
    return Manifest(name, Path(f"{name}.toml"), tuple(specs), f"{name} (runner declarations)", (arch,), tuple(header))


# ----------------------------------------------------------------------------- planning


@dataclass
class _Use:
    """GEMMs of one role and name pattern sharing one (N, K) (or one input K)."""

    role: str
    gemms: list[Gemm]
    text: str | None = None  # _describe's result, computed once


@dataclass
class _Planned:
    """An [[op]] being planned: merged over the archs (and runners) that declare it."""

    family: str
    problem: Mapping[str, Any]
    buckets: list[tuple[int, int, dict[str, Any]]]
    comments: list[str]
    archs: list[str] = field(default_factory=list)


def _moe_shapes(routed: Sequence[Gemm]) -> tuple[dict[tuple[int, int], list[int]], list[int]]:
    """MoE layers by MoERunner shape (hidden H, intermediate I): each layer's routed experts must
    be a stacked gate_up_proj [2I, H] and a down_proj [H, I]. Also the layers that are not."""
    by_layer: dict[Any, dict[str, set[tuple[int, int]]]] = {}
    for g in routed:
        by_layer.setdefault(g.layer, {}).setdefault(g.name.rpartition(".")[2], set()).add((g.n, g.k))
    shapes: dict[tuple[int, int], list[int]] = {}
    bad = []
    for layer, leaves in sorted(by_layer.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        projs = {expert_proj(leaf): shapes_ for leaf, shapes_ in leaves.items()}
        l1, l2 = projs.get("l1", set()), projs.get("l2", set())
        if len(leaves) == 2 and set(projs) == {"l1", "l2"} and len(l1) == len(l2) == 1:
            (n1, h), (n2, k2) = next(iter(l1)), next(iter(l2))
            if n1 % 2 == 0 and (n2, k2) == (h, n1 // 2):
                shapes.setdefault((h, n1 // 2), []).append(layer)
                continue
        bad.append(layer)
    return shapes, bad


class Planner:
    """Checkpoint + settings -> Plan. Every op comes from a serving class's declaration
    (runtime/declare.py); the planner only groups the GEMMs, sizes buckets and checks families."""

    def __init__(self, ck: Checkpoint, s: Settings, command: str = ""):
        self.ck, self.s, self.command = ck, s, command
        disc = ck.discovery
        if not disc.gemms:
            declared = ck.quant.producer or "none declared"
            raise CheckpointError(f"{ck.root}: no NVFP4 linears (ModelOpt weight/weight_scale/weight_scale_2 tensors) found; quantization: {declared}")
        routed = [g for g in disc.gemms if g.role == "routed"]
        self.top_k = ck.top_k
        self.n_exp = ck.num_experts or (max(g.expert for g in routed) + 1 if routed else 0)  # type: ignore[type-var]
        self.ep = ""
        keep: set = set()
        if routed:
            if not self.top_k:
                raise CheckpointError(f"{ck.root / 'config.json'}: routed experts found but no num_experts_per_tok (top-k)")
            if self.n_exp % s.ep_size:
                raise PlanError(f"--ep-size {s.ep_size} does not divide the {self.n_exp} routed experts")
            if s.ep_rank is not None and not 0 <= s.ep_rank < s.ep_size:
                raise PlanError(f"--ep-rank {s.ep_rank} is not in [0, {s.ep_size})")
            per = self.n_exp // s.ep_size
            if s.ep_rank is not None:
                r = expert_range(self.n_exp, s.ep_size, s.ep_rank)
                keep = set(r)
                self.ep = f"; EP rank {s.ep_rank} of {s.ep_size} holds experts {r.start}-{r.stop - 1}"
            else:
                keep = set(range(self.n_exp))
                self.ep = f"; EP rank r of {s.ep_size} holds experts {per}r..{per}r+{per - 1}" if s.ep_size > 1 else ""
        self.gemms = [g for g in disc.gemms if g.role != "routed" or g.expert in keep]
        self.tokens = s.max_num_batched_tokens
        given = s.capture_sizes if s.capture_sizes is not None else vllm_capture_sizes(min(s.max_capture_size, self.tokens))
        # only captured sizes pad a batch (the graph replayed); a batch above the largest one runs
        # eagerly at its own M, so it gets its own bucket (max_num_batched_tokens is the cap, not a size)
        self.sizes = sorted(x for x in set(given) if x <= self.tokens)
        self.ops: dict[tuple, _Planned] = {}
        self.unsupported: list[str] = []
        self.swiglu_limit = _swiglu_limit(ck)

    # -- helpers -------------------------------------------------------------------
    def describe(self, use: _Use) -> str:
        """Checkpoint tensor prefixes of a use, e.g. model.layers.{0-60}.mlp.experts.{0-383}.gate_proj
        + up_proj (stacked along N: gate_up_proj), and what bounds its token count."""
        if use.text is None:
            text = ", ".join(name_patterns(g.parts[0] for g in use.gemms))
            parts = use.gemms[0].parts
            if len(parts) > 1:
                leaves = [p.rpartition(".")[2] for p in parts[1:]]
                text += " + " + " + ".join(leaves) + f" (stacked along N: {use.gemms[0].name.rpartition('.')[2]})"
            if use.role == "routed":
                note = f"; M <= {self.tokens * self.top_k} token-slots{self.ep}"
            else:
                note = f"; M <= {self.tokens} tokens"
            use.text = f"{text}  [{ROLE_TEXT[use.role]}{note}]"
        return use.text

    def _reasons(self, family: str, problem: Mapping[str, Any], buckets, arch: str) -> list[str]:
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

    def _buckets(self, d: OpDecl) -> list[tuple[int, int, dict[str, Any]]]:
        cap = d.m_of(self.tokens)
        try:
            fam = get_family(d.family)
        except (UnknownFamilyError, ImportError):
            return make_buckets(((None, {}),), cap, self.sizes, d.padded)
        if cap > fam.max_m:
            line = f"{d.family} {d.what()}: token counts {fam.max_m + 1}..{cap} exceed the family's max_m {fam.max_m}; its buckets stop at {fam.max_m}"
            if line not in self.unsupported:
                self.unsupported.append(line)
            cap = fam.max_m
        return make_buckets(fam.tile_table(d.problem), cap, self.sizes, d.padded)

    def add(self, d: OpDecl, arch: str, comments: list[str], note: str) -> bool:
        """Plan `d` on `arch` if its family can run every bucket there; else report it."""
        key = (d.family, tuple(sorted(d.problem.items())))
        op = self.ops.get(key)
        buckets = op.buckets if op is not None else self._buckets(d)
        reasons = self._reasons(d.family, d.problem, buckets, arch)
        if reasons:
            self.unsupported.append(f"{arch}: {d.family} cannot implement {d.what()} ({'; '.join(reasons)}){note}")
            return False
        if op is None:
            op = self.ops[key] = _Planned(d.family, d.problem, buckets, comments)
        if arch not in op.archs:
            op.archs.append(arch)
        return True

    def drop(self, decls: Sequence[OpDecl], arch: str) -> None:
        for d in decls:
            key = (d.family, tuple(sorted(d.problem.items())))
            op = self.ops.get(key)
            if op is not None and arch in op.archs:
                op.archs.remove(arch)
                if not op.archs:  # planned for no arch (yet): a later arch appends it afresh
                    del self.ops[key]

    @staticmethod
    def title(d: OpDecl, extra: str = "") -> str:
        what = f"k={d.problem['k']}" if d.keyed == "input" else " ".join(f"{k}={v}" for k, v in d.problem.items())
        return f"{d.family} {what}:" + (f" {d.text}{extra}:" if d.text else "")

    # -- dense GEMMs: Nvfp4Linear ------------------------------------------------------
    def plan_linears(self) -> None:
        by_nk: dict[tuple[int, int], dict[tuple, _Use]] = {}
        by_k: dict[int, dict[tuple, _Use]] = {}
        for g in self.gemms:
            if g.role == "routed":
                continue
            key = (g.role, tuple(p.rpartition(".")[2] for p in g.parts), g.name.rpartition(".")[2])
            for groups, gk in ((by_nk, (g.n, g.k)), (by_k, g.k)):
                groups.setdefault(gk, {}).setdefault(key, _Use(g.role, [])).gemms.append(g)  # type: ignore[attr-defined]

        def ordered(uses) -> list[_Use]:
            return sorted(uses, key=lambda u: (list(ROLE_TEXT).index(u.role), self.describe(u)))

        def users(uses) -> str:
            return "; ".join(sorted({self.describe(u).split("  [")[0] for u in uses}))

        for k, uses in sorted(by_k.items()):  # ops shared by every GEMM of one input width
            n = min(n for n, kk in by_nk if kk == k)
            lines = [f"  {self.describe(u)}" for u in ordered(uses.values())]
            for arch in self.s.archs:
                for d in Nvfp4Linear.ops(n, k, arch, word_order=self.s.word_order):
                    if d.keyed == "input":
                        self.add(d, arch, [self.title(d)] + lines, "")
        for (n, k), uses in sorted(by_nk.items()):
            lines = [f"  {self.describe(u)}" for u in ordered(uses.values())]
            who = f" <- {users(uses.values())}"
            # a GEMM of stacked parts (q_a + kv, gate + up) has one global scale per part, equal or
            # not (only the data says): Nvfp4Linear then opens quack's scalar- or per-row-alpha
            # kernel (its choice, declared by its ops), so both are planned for it
            kinds = sorted({True} | {False for u in uses.values() if len(u.gemms[0].parts) > 1}, reverse=True)
            for arch in self.s.archs:
                decls = list({(d.family, d.attr): d for kind in kinds for d in Nvfp4Linear.ops(n, k, arch, one_scale=kind, word_order=self.s.word_order)
                              if d.keyed == "gemm"}.values())
                need = [d for d in decls if not d.optional]
                extra = [d for d in decls if d.optional]
                ok = True
                for d in need:
                    note = who if not extra else (f"; {d.runner} cannot serve these (it opens {d.family} first), so no "
                                                  f"{' / '.join(x.family for x in extra)} either{who}")
                    ok = self.add(d, arch, [self.title(d)] + lines, note) and ok
                for d in extra if ok else ():
                    self.add(d, arch, [self.title(d)] + lines, f"; {d.runner} runs {need[0].family} for every M{who}")

    # -- routed experts: MoERunner -----------------------------------------------------
    def plan_moe(self) -> None:
        routed = [g for g in self.gemms if g.role == "routed"]
        if not routed:
            return
        shapes, bad = _moe_shapes(routed)
        if bad:
            names = name_patterns(g.name for g in routed if g.layer in bad)
            self.unsupported += [f"{a}: MoERunner needs each layer's routed experts as gate_up_proj [2I, H] + down_proj [H, I] <- {', '.join(names)}"
                                 for a in self.s.archs if MoERunner.ops(1, 1, 1, 1, a)]
        experts, top_k, T = self.n_exp // self.s.ep_size, self.top_k, self.tokens
        for (h, i), layers in sorted(shapes.items()):
            mine = [g for g in routed if g.layer in layers]
            uses = {"w13": _Use("routed", [g for g in mine if expert_proj(g.name) == "l1"]),
                    "w2": _Use("routed", [g for g in mine if expert_proj(g.name) == "l2"])}
            where = ", ".join(p.rpartition(".")[0] for p in name_patterns(g.name for g in uses["w13"].gemms))
            experts_line = f"  {where}  [routed experts: {experts} local, top-{top_k}, hidden {h}, intermediate {i}{self.ep}]"
            for arch in self.s.archs:
                decls = MoERunner.ops(h, i, experts, top_k, arch, swiglu_limit=self.swiglu_limit, max_tokens=T,
                                      word_order=for_runner(self.s.word_order, GROUPED_ORDERS))
                if not decls and MoERunner.ops(h, i, experts, top_k, arch):
                    self.unsupported.append(f"{arch}: MoERunner h={h}, i={i}: config.json swiglu_limit {self.swiglu_limit} "
                                            f"(clamped SwiGLU) has no path on {arch} <- {where}")

                def add_all(ds) -> bool:
                    ok = True
                    for d in ds:
                        rows = {"tokens": f"M = tokens <= {T}",
                                "slots": f"M = token-slots (tokens x top-{top_k}) <= {d.m_of(T)}",
                                "capacity": f"M = grouped rows (token-slots, each expert padded to {d.pad}) <= {d.m_of(T)}"}[d.rows]
                        lines = [f"  {self.describe(uses[d.weights])}"] if d.weights else [experts_line]
                        ok = self.add(d, arch, [self.title(d, f"; {rows}")] + lines, f" <- {where}") and ok
                    return ok

                need = [d for d in decls if not d.optional]
                extra = [d for d in decls if d.optional]  # the prefill path: all of it or none
                if need and not add_all(need):  # the runner opens all of its ops: without one, none serves
                    self.drop(decls, arch)
                    self.unsupported.append(f"{arch}: MoERunner h={h}, i={i}: nothing planned for it (it needs all {len(need)} ops) <- {where}")
                elif extra and not add_all(extra):
                    self.drop(extra, arch)
                    self.unsupported.append(f"{arch}: MoERunner h={h}, i={i}: no prefill path (it needs all {len(extra)} "
                                            f"prefill ops); its decode path serves every token count <- {where}")

    def plan(self) -> Plan:
        self.plan_linears()
        self.plan_moe()
        by_reason: dict[str, list[str]] = {}
        for u in self.ck.discovery.unsupported:
            by_reason.setdefault(u.reason, []).append(u.what)
        for reason, names in sorted(by_reason.items()):
            self.unsupported.append(f"{', '.join(name_patterns(names))}: {reason}")
        unquantized = name_patterns(self.ck.discovery.unquantized)
        served: list[str] = []
        if self.ck.layout == "dsv4_mixed":  # the unquantized weights are listed with what serves them
            unquantized = []
            for fmt, text in VLLM_SERVED.items():
                groups = [g for g in self.ck.discovery.groups if g.fmt == fmt]
                if groups:
                    served.append(f"{', '.join(name_patterns(g.prefix for g in groups))}  [{text}]")
        footer = [f"Unsupported: nothing is planned for these ({len(self.unsupported)}):"]
        footer += [f"  {u}" for u in self.unsupported] or ["  (none)"]
        footer.append(f"Not quantized (BF16/F16/F32 2-D weights, run by other paths): {len(unquantized)} patterns")
        footer += [f"  {u}" for u in unquantized]
        if served:
            footer.append(f"Served by vLLM's own kernels (DeepseekV4FP8Config's methods; nothing in this store): {len(served)} groups")
            footer += [f"  {u}" for u in served]
        specs: list[OpSpec] = [op_spec(o.family, o.problem, o.archs, o.buckets, o.comments) for o in self.ops.values()]
        name = self.ck.root.name
        manifest = Manifest(name, Path(f"{name}.toml"), tuple(specs), f"planned from {name}", tuple(self.s.archs),
                            tuple(self.header()), tuple(footer))
        return Plan(manifest, self.unsupported, unquantized, served)

    def header(self) -> list[str]:
        ck, s, gemms = self.ck, self.s, self.gemms
        model = ck.cfg("model_type", default="?")
        arch_names = ",".join(ck.cfg("architectures", default=[]) or [])
        q = ck.quant
        layers = sorted({g.layer for g in gemms if g.layer is not None})
        lines = [
            "Generated by `nvfp4-build plan`: edit the command line, not this file.",
            f"  {self.command}" if self.command else "",
            f"Checkpoint: {ck.root.name} (model_type {model}{', ' + arch_names if arch_names else ''}; "
            f"{ck.num_layers} layers in config.json; quantization: {q.producer or '?'} {q.algo or '?'}"
            f"{f' group {q.group_size}' if q.group_size else ''})",
            f"NVFP4 GEMMs the model runs: {len(gemms)} (layers {compress_ints(layers) or '-'}), "
            f"{len({(g.n, g.k) for g in gemms})} distinct (N, K); fused: gate_proj + up_proj, q_a_proj + kv_a_proj_with_mqa (stacked along N)."
            if ck.layout == "modelopt" else
            f"NVFP4 GEMMs the model runs: {len(gemms)} (layers {compress_ints(layers) or '-'}), {len({(g.n, g.k) for g in gemms})} "
            "distinct (N, K): the routed experts, w1 + w3 stacked along N (vLLM: gate_up_proj; one shared weight_scale_2).",
        ]
        if ck.layout == "dsv4_mixed":
            lines.append("Layout: DeepSeek-V4 block-FP8 checkpoint with NVFP4 routed experts (config.json moe_quant_algo NVFP4); "
                         "vLLM's DeepseekV4FP8Config serves everything else (listed at the end).")
        if self.n_exp:
            lines.append(f"Routed experts: {self.n_exp} per MoE layer, top-k {self.top_k}{self.ep or '; no expert parallelism'}")
            if s.ep_size > 1:
                lines.append("  (global expert id g -> local id g - first expert of the rank); every rank runs the same (N, K) problems.")
        lines += [
            "Assumed: attention, dense-MLP and shared-expert GEMMs replicated at full size on every rank (data-parallel attention).",
            f"Token buckets: CUDA-graph capture sizes {_sizes_text(self.sizes)} (vLLM pads a batch up to the next one),",
            f"  max_num_batched_tokens {s.max_num_batched_tokens}; the grouped GEMMs and silu ops reach max_num_batched_tokens x top-k",
            "  token-slots (sm_90a: unpadded, but for the quack grouped GEMM's tier in word order nibble, padded to its tile_n;",
            "  sm_100a: each expert's rows padded to 128); moe_route / moe_permute* / moe_combine see tokens.",
        ]
        if s.word_order is not None:
            both = for_runner(s.word_order, GROUPED_ORDERS) is not None
            lines.append(f"sm_90a weights of {'both runners' if both else 'Nvfp4Linear'} in blob word order {s.word_order!r} "
                         f"(runtime/word_order.py), not {'each runner' if both else 'its'}'s default: "
                         f"{'runners open' if both else 'it opens'} these ops only when built with word_order={s.word_order!r}"
                         f"{'' if both else ' (MoERunner reads its own default order)'}.")
        return [x for x in lines if x]


def _swiglu_limit(ck: Checkpoint) -> float:
    """config.json swiglu_limit (DeepSeek-V4: 10.0): the experts' clamped SwiGLU; 0 when absent."""
    v = ck.cfg("swiglu_limit")
    if v is None:
        return 0.0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
        raise CheckpointError(f"{ck.root / 'config.json'}: swiglu_limit = {json.dumps(v)} is not a positive number")
    return float(v)


def plan_checkpoint(ckpt_dir: Path | str, s: Settings, command: str = "") -> Plan:
    return Planner(Checkpoint(ckpt_dir), s, command).plan()


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


def render(plan: Plan) -> str:
    """The planned manifest as TOML (build/manifest.py's writer)."""
    from .manifest import dumps_manifest

    return dumps_manifest(plan.manifest)
