"""A Hugging Face checkpoint directory read through safetensors headers: which NVFP4 linears
it holds and which GEMMs the model runs with them. Shared by `nvfp4-build plan` (headers only)
and the weight loader (runtime/weights.py, which memory-maps the data).

Importing this module imports neither torch nor cutlass: headers are read with
`safetensors.safe_open(..., framework="numpy")`, which parses the JSON header and never touches
tensor data.

A ModelOpt NVFP4 linear `P` is four tensors:
    P.weight          U8      [N, K/2]   E2M1 codes, element 2j in the low nibble of byte j
    P.weight_scale    F8_E4M3 [N, K/16]  one block scale per 16 along K (row-major)
    P.weight_scale_2  F32     [] or [1]  per-tensor decode scale (alpha = 1 / global scale)
    P.input_scale     F32     [] or [1]  calibration activation scale (optional; unused: the
                                         runtime computes activation scales from activations)

GEMMs: the linears that the model runs as one GEMM are stacked along N (FUSIONS: gate/up of
every MLP and expert; q_a + kv_a of the attention), in the order listed.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

from .nvfp4 import SF_BLOCK

INDEX_FILE = "model.safetensors.index.json"
# (parts stacked along N, in this order) -> name of the fused GEMM (vLLM's names)
FUSIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("gate_proj", "up_proj"), "gate_up_proj"),
    (("q_a_proj", "kv_a_proj_with_mqa"), "fused_qkv_a_proj"),
)
ROLES = ("attn", "dense", "shared", "routed", "other")
_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_EXPERT_RE = re.compile(r"\.mlp\.experts\.(\d+)\.[^.]+$")
_SHARED_RE = re.compile(r"\.mlp\.shared_experts?\.[^.]+$")
_DENSE_RE = re.compile(r"\.mlp\.(gate_proj|up_proj|down_proj)$")
_ATTN_RE = re.compile(r"\.self_attn\.")
_SCALARS = ((), (1,))


class CheckpointError(ValueError):
    """The checkpoint is unreadable, malformed, or inconsistent with its config; the message
    names the file or tensor."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # safetensors dtype string: U8, F8_E4M3, F32, BF16, ...
    shape: tuple[int, ...]
    file: Path


@dataclass(frozen=True)
class Linear:
    """One NVFP4 linear found in the headers (its four tensors checked)."""

    prefix: str
    n: int
    k: int
    has_input_scale: bool


@dataclass(frozen=True)
class Gemm:
    """One GEMM the model runs: a linear, or linears stacked along N (`parts`)."""

    role: str  # attn | dense | shared | routed | other
    name: str  # e.g. model.layers.3.mlp.experts.7.gate_up_proj (a fused name) or the prefix
    parts: tuple[str, ...]  # checkpoint prefixes stacked along N, in order
    n: int
    k: int
    layer: int | None
    expert: int | None


@dataclass(frozen=True)
class Unsupported:
    what: str  # tensor name or name pattern
    reason: str


@dataclass
class Discovery:
    gemms: list[Gemm] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    unquantized: list[str] = field(default_factory=list)  # *.weight tensors in BF16/F16/F32


def expert_range(num_experts: int, ep_size: int, ep_rank: int) -> range:
    """Global expert ids held by `ep_rank`: contiguous blocks of num_experts / ep_size (vLLM's
    default linear placement). Local id = global id - range.start."""
    if ep_size < 1 or num_experts % ep_size:
        raise ValueError(f"ep_size={ep_size} must divide the {num_experts} routed experts")
    if not 0 <= ep_rank < ep_size:
        raise ValueError(f"ep_rank={ep_rank} must be in [0, {ep_size})")
    per = num_experts // ep_size
    return range(ep_rank * per, (ep_rank + 1) * per)


def layer_of(name: str) -> int | None:
    m = _LAYER_RE.search(name)
    return int(m.group(1)) if m else None


def role_of(prefix: str) -> tuple[str, int | None]:
    """(role, expert id) of a linear prefix."""
    m = _EXPERT_RE.search(prefix)
    if m:
        return "routed", int(m.group(1))
    if _SHARED_RE.search(prefix):
        return "shared", None
    if _DENSE_RE.search(prefix):
        return "dense", None
    if _ATTN_RE.search(prefix):
        return "attn", None
    return "other", None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    except ValueError as e:
        raise CheckpointError(f"{path}: {what} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} must be a JSON object")
    return data


@dataclass(frozen=True)
class QuantConfig:
    """The checkpoint's declared quantization (hf_quant_config.json or config.json's
    quantization_config); None fields when undeclared."""

    producer: str | None
    algo: str | None  # NVFP4, FP8, MIXED_PRECISION, ...
    group_size: int | None
    exclude: tuple[str, ...]
    per_layer: Mapping[str, str]  # MIXED_PRECISION: module -> algo

    def algo_of(self, prefix: str) -> str | None:
        if prefix in self.per_layer:
            return self.per_layer[prefix]
        if any(fnmatch.fnmatchcase(prefix, pat) for pat in self.exclude):
            return None
        return None if self.algo == "MIXED_PRECISION" else self.algo

    @staticmethod
    def read(root: Path, config: Mapping[str, Any]) -> "QuantConfig":
        p = root / "hf_quant_config.json"
        if p.exists():
            raw = _read_json(p, "hf_quant_config.json")
            producer = (raw.get("producer") or {}).get("name")
            q = raw.get("quantization") or {}
        else:
            q = dict(config.get("quantization_config") or {})
            producer = q.get("quant_method")
        layers = q.get("quantized_layers") or {}
        return QuantConfig(
            producer=producer,
            algo=(str(q["quant_algo"]).upper() if q.get("quant_algo") else None),
            group_size=q.get("group_size"),
            exclude=tuple(q.get("exclude_modules") or q.get("ignore") or ()),
            per_layer={k: str(v.get("quant_algo", "")).upper() for k, v in layers.items() if isinstance(v, dict)},
        )


class Checkpoint:
    """A checkpoint directory: config.json, optional hf_quant_config.json, safetensors shards
    (listed by model.safetensors.index.json when present, else every *.safetensors file).
    Opening reads headers only; every shard header is checked (corrupt or truncated files,
    missing shards and index/shard disagreements are CheckpointErrors)."""

    def __init__(self, root: Path | str):
        from safetensors import SafetensorError, safe_open

        self.root = Path(root)
        if not self.root.is_dir():
            raise CheckpointError(f"{self.root}: not a checkpoint directory")
        self.config = _read_json(self.root / "config.json", "config.json")
        self.quant = QuantConfig.read(self.root, self.config)
        index_path = self.root / INDEX_FILE
        weight_map: dict[str, str] | None = None
        if index_path.exists():
            wm = _read_json(index_path, INDEX_FILE).get("weight_map")
            if not isinstance(wm, dict) or not wm:
                raise CheckpointError(f"{index_path}: no weight_map")
            weight_map = {str(k): str(v) for k, v in wm.items()}
            shards = sorted(set(weight_map.values()))
        else:
            shards = sorted(p.name for p in self.root.glob("*.safetensors"))
        if not shards:
            raise CheckpointError(f"{self.root}: no *.safetensors files")
        self.tensors: dict[str, TensorInfo] = {}
        for shard in shards:
            path = self.root / shard
            if not path.is_file():
                example = next(k for k, v in (weight_map or {}).items() if v == shard)
                raise CheckpointError(f"{path}: missing shard (listed in {INDEX_FILE}, e.g. for {example})")
            try:
                f = safe_open(str(path), framework="numpy")
                names = f.keys()
                infos = [(n, f.get_slice(n)) for n in names]
                infos = [(n, s.get_dtype(), tuple(s.get_shape())) for n, s in infos]
            except (SafetensorError, OSError, ValueError) as e:
                raise CheckpointError(f"{path}: not a readable safetensors file, corrupt or truncated ({e})") from None
            for name, dtype, shape in infos:
                if name in self.tensors:
                    raise CheckpointError(f"{name}: in two shards ({self.tensors[name].file.name} and {shard})")
                self.tensors[name] = TensorInfo(name, dtype, shape, path)
        if weight_map is not None:
            for name, shard in weight_map.items():
                info = self.tensors.get(name)
                if info is None or info.file.name != shard:
                    where = f"found in {info.file.name}" if info else "not in any shard"
                    raise CheckpointError(f"{name}: {INDEX_FILE} puts it in {shard}, {where}")

    # -- config ---------------------------------------------------------------------
    def cfg(self, *keys: str, default: Any = None) -> Any:
        """The first of `keys` present in config.json (or its text_config)."""
        for src in (self.config, self.config.get("text_config") or {}):
            for k in keys:
                if src.get(k) is not None:
                    return src[k]
        return default

    @property
    def num_experts(self) -> int | None:
        return self.cfg("n_routed_experts", "num_local_experts", "num_experts")

    @property
    def top_k(self) -> int | None:
        return self.cfg("num_experts_per_tok", "moe_topk", "top_k")

    @property
    def num_layers(self) -> int | None:
        return self.cfg("num_hidden_layers")

    # -- tensors --------------------------------------------------------------------
    def info(self, name: str, dtype: str | None = None, shape: Iterable[int] | None = None, why: str = "") -> TensorInfo:
        """The header of `name`, checked against dtype/shape when given (None: not checked)."""
        t = self.tensors.get(name)
        if t is None:
            raise CheckpointError(f"{name}: missing from the checkpoint {self.root}{f' ({why})' if why else ''}")
        if dtype is not None and t.dtype != dtype:
            raise CheckpointError(f"{name}: dtype {t.dtype}, expected {dtype}{f' ({why})' if why else ''} [{t.file.name}]")
        if shape is not None and t.shape != tuple(shape):
            raise CheckpointError(f"{name}: shape {list(t.shape)}, expected {list(shape)}{f' ({why})' if why else ''} [{t.file.name}]")
        return t

    def scalar_info(self, name: str) -> TensorInfo:
        t = self.info(name, "F32", why="an fp32 per-tensor scale")
        if t.shape not in _SCALARS:
            raise CheckpointError(f"{name}: shape {list(t.shape)}, expected [] or [1] (a per-tensor scale) [{t.file.name}]")
        return t

    def linear(self, prefix: str, n: int | None = None, k: int | None = None) -> Linear:
        """Check the tensors of the NVFP4 linear `prefix` (optionally its N and K)."""
        w = self.info(f"{prefix}.weight", "U8", why="NVFP4 packed E2M1 pairs")
        if len(w.shape) != 2:
            raise CheckpointError(f"{w.name}: shape {list(w.shape)}, expected [N, K/2] [{w.file.name}]")
        wn, wk = w.shape[0], 2 * w.shape[1]
        if (n is not None and wn != n) or (k is not None and wk != k):
            raise CheckpointError(f"{w.name}: shape {list(w.shape)}, expected {[n or wn, (k or wk) // 2]} (N={n}, K={k}) [{w.file.name}]")
        if wk % SF_BLOCK:
            raise CheckpointError(f"{w.name}: K={wk} is not a multiple of {SF_BLOCK} [{w.file.name}]")
        self.info(f"{prefix}.weight_scale", "F8_E4M3", (wn, wk // SF_BLOCK), why="NVFP4 block scales, one per 16 along K")
        self.scalar_info(f"{prefix}.weight_scale_2")
        has_in = f"{prefix}.input_scale" in self.tensors
        if has_in:
            self.scalar_info(f"{prefix}.input_scale")
        return Linear(prefix, wn, wk, has_in)

    # -- discovery (headers only) ------------------------------------------------------
    @cached_property
    def discovery(self) -> Discovery:
        return _discover(self)

    def moe_layers(self) -> list[int]:
        return sorted({g.layer for g in self.discovery.gemms if g.role == "routed" and g.layer is not None})


def _classify(ck: Checkpoint, prefix: str) -> tuple[str, Linear | str]:
    """('nvfp4', Linear) | ('other', reason) | ('plain', '') for the module owning P.weight.
    A module meant as NVFP4 (a weight_scale_2, or E4M3 block scales on a non-FP8 weight) is
    checked strictly: a wrong dtype or shape there is a CheckpointError, not another format."""
    w = ck.tensors[f"{prefix}.weight"]
    scale = ck.tensors.get(f"{prefix}.weight_scale")
    has_ws2 = f"{prefix}.weight_scale_2" in ck.tensors
    declared = ck.quant.algo_of(prefix)
    if (scale is not None or has_ws2) and declared not in (None, "NVFP4"):
        return "other", f"declared {declared} by the quantization config (only NVFP4 has kernels)"
    if w.dtype == "U8" and scale is not None and scale.dtype == "U8":
        return "other", "U8 weight with U8 (E8M0?) scales: MXFP4-style, not NVFP4"
    fp8 = w.dtype in ("F8_E4M3", "F8_E5M2")
    if has_ws2 or (scale is not None and scale.dtype == "F8_E4M3" and not fp8):
        if ck.quant.group_size not in (None, SF_BLOCK):
            return "other", f"NVFP4 with group_size {ck.quant.group_size} (the kernels use {SF_BLOCK})"
        if w.dtype == "U8" and len(w.shape) != 2:
            return "other", f"{len(w.shape)}-D packed weight {list(w.shape)} (pre-stacked experts are not read)"
        return "nvfp4", ck.linear(prefix)
    if fp8:
        return "other", f"FP8 weight ({w.dtype}{', scale ' + scale.dtype + ' ' + str(list(scale.shape)) if scale else ''})"
    if w.dtype in ("I8", "U8", "I32", "I4") or scale is not None:
        return "other", f"{w.dtype} weight{' with ' + scale.dtype + ' weight_scale' if scale else ''}: not NVFP4"
    return "plain", ""


def _discover(ck: Checkpoint) -> Discovery:
    out = Discovery()
    linears: dict[str, Linear] = {}
    for name in sorted(ck.tensors):
        if name.endswith(".qweight"):
            out.unsupported.append(Unsupported(name, "packed integer weight (GPTQ/AWQ-style), not NVFP4"))
        if not name.endswith(".weight"):
            continue
        prefix = name[: -len(".weight")]
        kind, what = _classify(ck, prefix)
        if kind == "nvfp4":
            linears[prefix] = what  # type: ignore[assignment]
        elif kind == "other":
            out.unsupported.append(Unsupported(name, what))  # type: ignore[arg-type]
        elif len(ck.tensors[name].shape) == 2:
            out.unquantized.append(name)
    _check_experts(ck, linears)
    # stack the parts of each fused GEMM; everything else is its own GEMM
    by_parent: dict[str, dict[str, Linear]] = {}
    for p, lin in linears.items():
        parent, _, leaf = p.rpartition(".")
        by_parent.setdefault(parent, {})[leaf] = lin
    for parent, leaves in sorted(by_parent.items()):
        for parts, fused in FUSIONS:
            if all(x in leaves for x in parts) and len({leaves[x].k for x in parts}) == 1:
                lins = [leaves.pop(x) for x in parts]
                out.gemms.append(_gemm(f"{parent}.{fused}", lins))
        for leaf, lin in sorted(leaves.items()):
            out.gemms.append(_gemm(lin.prefix, [lin]))
    return out


def _gemm(name: str, lins: list[Linear]) -> Gemm:
    role, expert = role_of(lins[0].prefix)
    return Gemm(role, name, tuple(x.prefix for x in lins), sum(x.n for x in lins), lins[0].k, layer_of(name), expert)


def _check_experts(ck: Checkpoint, linears: Mapping[str, Linear]) -> None:
    """Every MoE layer holds experts 0..E-1 (E from config.json), each with the same NVFP4
    projections (a missing or non-NVFP4 one is named)."""
    per_layer: dict[tuple[int | None, str], dict[int, set[str]]] = {}
    for prefix in linears:
        m = _EXPERT_RE.search(prefix)
        if m:
            base = prefix[: m.start()] + ".mlp.experts"
            leaf = prefix.rpartition(".")[2]
            per_layer.setdefault((layer_of(prefix), base), {}).setdefault(int(m.group(1)), set()).add(leaf)
    want = ck.num_experts
    for (layer, base), experts in sorted(per_layer.items(), key=lambda kv: (kv[0][0] or -1, kv[0][1])):
        n = want if want is not None else max(experts) + 1
        extra = sorted(set(experts) - set(range(n)))
        if extra:
            raise CheckpointError(f"{base}.{extra[0]}: expert id beyond config.json n_routed_experts = {want}")
        leaves = sorted(set().union(*experts.values()))
        for e in range(n):
            for leaf in leaves:
                if leaf not in experts.get(e, ()):
                    raise CheckpointError(
                        f"{base}.{e}.{leaf}.weight: missing or not NVFP4 (config.json n_routed_experts = {want}; "
                        f"layer {layer} has NVFP4 {leaf} for experts {compress_ints(e2 for e2, ls in experts.items() if leaf in ls)})"
                    )


# -- naming helpers (manifest comments, error messages) ---------------------------------


def compress_ints(values: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8'."""
    vs = sorted(set(values))
    out, i = [], 0
    while i < len(vs):
        j = i
        while j + 1 < len(vs) and vs[j + 1] == vs[j] + 1:
            j += 1
        out.append(str(vs[i]) if i == j else f"{vs[i]}-{vs[j]}")
        i = j + 1
    return ",".join(out)


_NUM = re.compile(r"(?<=\.)\d+(?=\.)")


def _brace(values: set[int]) -> str:
    return str(next(iter(values))) if len(values) == 1 else "{" + compress_ints(values) + "}"


def name_patterns(names: Iterable[str]) -> list[str]:
    """Collapse numeric path components: model.layers.{0-60}.mlp.experts.{0-383}.gate_proj."""
    groups: dict[str, list[set[int]]] = {}
    for n in names:
        nums = [int(x) for x in _NUM.findall(n)]
        key = _NUM.sub("#", n)
        sets = groups.setdefault(key, [set() for _ in nums])
        for s, x in zip(sets, nums):
            s.add(x)
    out = []
    for key, sets in sorted(groups.items()):
        it = iter(sets)
        out.append(re.sub(r"#", lambda _: _brace(next(it)), key))
    return out
