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

Two layouts are read (`Checkpoint.layout`):
  "modelopt"    ModelOpt's all-NVFP4 export, Hugging Face names (model.layers.N.mlp.experts.E.
                gate_proj, ...); every quantized linear is NVFP4.
  "dsv4_mixed"  the public DeepSeek-V4 NVFP4 checkpoints (nvidia/DeepSeek-V4-{Pro,Flash}-NVFP4, made
                by Model-Optimizer's deepseek_v4/quantize_to_nvfp4.py): DeepSeek's own names
                (layers.N.ffn.experts.E.w1/w2/w3, layers.N.attn.wq_a, mtp.0.*, no `model.` prefix);
                only the routed experts of layers 0..L-1 are NVFP4 (w1 + w3 share weight_scale_2);
                everything else is DeepSeek's release: block-FP8 linears (F8_E4M3 weight + F8_E8M0
                `.scale` per 128x128 block), MXFP4 MTP experts (I8 weight [N, K/2] + E8M0 `.scale`
                per 32) and BF16/F32 parts, served by vLLM's own DeepseekV4FP8Config methods.
                config.json keeps quant_method "fp8" and adds moe_quant_algo "NVFP4",
                quantized_layers (layers.N.ffn.experts -> NVFP4) and ignore.
Every module with a `.weight` is one TensorGroup, classified FORMATS (nvfp4 | fp8_block | mxfp4 |
unquantized | other) and named as vLLM 0.32 names its layer (`vllm_module`).

Paths: a shard path in model.safetensors.index.json is data; it must be a relative path inside
the checkpoint directory (no `..`, not absolute), checked lexically. A shard that is itself a
symlink is followed (the Hugging Face hub cache keeps snapshots as links into ../../blobs).
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
    (("w1", "w3"), "gate_up_proj"),  # DeepSeek-V4 names (vLLM's packed_modules_mapping)
    (("wq_a", "wkv"), "fused_wqa_wkv"),
)
# A routed expert's GEMMs, by the last name component of the Gemm: L1 (gate | up), L2 (down).
EXPERT_L1, EXPERT_L2 = ("gate_up_proj",), ("down_proj", "w2")
FORMATS = ("nvfp4", "fp8_block", "mxfp4", "unquantized", "other")
FP8_BLOCK, MX_BLOCK = 128, 32
ROLES = ("attn", "dense", "shared", "routed", "other")
_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_EXPERT_RE = re.compile(r"\.(?:mlp|ffn)\.experts\.(\d+)\.[^.]+$")
_SHARED_RE = re.compile(r"\.(?:mlp|ffn)\.shared_experts?\.[^.]+$")
_DENSE_RE = re.compile(r"\.mlp\.(gate_proj|up_proj|down_proj)$")
_ATTN_RE = re.compile(r"\.(?:self_attn|attn)\.")
_MTP_RE = re.compile(r"^mtp\.(\d+)\.")
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


@dataclass(frozen=True)
class TensorGroup:
    """One module of the checkpoint (the tensors sharing the prefix of a `.weight`)."""

    prefix: str  # checkpoint name, e.g. layers.3.attn.wq_a
    fmt: str  # one of FORMATS
    detail: str  # dtypes and shapes, e.g. "F8_E4M3 [1536, 7168] + F8_E8M0 scale [12, 56]"
    vllm: str  # the vLLM 0.32 module that owns it, e.g. model.layers.3.attn.fused_wqa_wkv


@dataclass
class Discovery:
    gemms: list[Gemm] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    unquantized: list[str] = field(default_factory=list)  # *.weight tensors in BF16/F16/F32
    groups: list[TensorGroup] = field(default_factory=list)  # every module, classified


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


def expert_proj(gemm_name: str) -> str | None:
    """'l1' / 'l2' for a routed expert's GEMM name (gate_up_proj / down_proj or w2), else None."""
    leaf = gemm_name.rpartition(".")[2]
    return "l1" if leaf in EXPERT_L1 else "l2" if leaf in EXPERT_L2 else None


def vllm_module(prefix: str, num_layers: int | None = None) -> str:
    """The vLLM 0.32 module that loads checkpoint module `prefix` (DeepSeek-V4 names remapped as
    vllm/models/deepseek_v4/nvidia/model.py and mtp.py do; Hugging Face names are vLLM's own):
    layers.N.X -> model.layers.N.X, mtp.K.X -> model.layers.{L+K}.X (the MTP draft model),
    routed experts -> their FusedMoE layer (...ffn.experts), stacked parts -> the fused module."""
    name = prefix
    m = _MTP_RE.match(name)
    if m:
        name = f"model.layers.{(num_layers if num_layers is not None else 0) + int(m.group(1))}.{name[m.end():]}"
    elif name.startswith("layers."):
        name = "model." + name
    e = _EXPERT_RE.search(name)
    if e:
        return name[: e.start()] + name[e.start() : e.end()].split(".experts.")[0] + ".experts"
    parent, _, leaf = name.rpartition(".")
    if parent.endswith(".compressor") and leaf in ("wkv", "wgate"):
        return f"{parent}.fused_wkv_wgate"
    for parts, fused in FUSIONS:
        if leaf in parts:
            return f"{parent}.{fused}"
    if parent.endswith(".shared_experts") and leaf == "w2":
        return f"{parent}.down_proj"
    return {"embed": "model.embed_tokens", "head": "lm_head", "norm": "model.norm"}.get(name, name)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    except ValueError as e:  # also UnicodeDecodeError
        raise CheckpointError(f"{path}: {what} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} must be a JSON object")
    return data


@dataclass(frozen=True)
class QuantConfig:
    """The checkpoint's declared quantization: hf_quant_config.json and config.json's
    quantization_config, both read (the DeepSeek-V4 checkpoints carry both); None fields when
    undeclared."""

    producer: str | None
    algo: str | None  # NVFP4, FP8, MIXED_PRECISION, ...
    group_size: int | None
    exclude: tuple[str, ...]
    per_layer: Mapping[str, str]  # MIXED_PRECISION: module -> algo
    method: str | None = None  # config.json quant_method (DeepSeek-V4: "fp8")
    moe_algo: str | None = None  # config.json moe_quant_algo (DeepSeek-V4 NVFP4 checkpoints: "NVFP4")
    source: str = "quantization config"  # where per_layer comes from, for messages

    def listed(self, prefix: str) -> tuple[str, str] | None:
        """(module, algo) of the quantized_layers entry covering `prefix` (the module itself or
        its nearest dotted ancestor), or None."""
        probe = prefix
        while probe:
            if probe in self.per_layer:
                return probe, self.per_layer[probe]
            probe = probe.rpartition(".")[0]
        return None

    def algo_of(self, prefix: str) -> str | None:
        hit = self.listed(prefix)
        if hit:
            return hit[1]
        if any(fnmatch.fnmatchcase(prefix, pat) for pat in self.exclude):
            return None
        return None if self.algo == "MIXED_PRECISION" else self.algo

    @property
    def mixed_dsv4(self) -> bool:
        """DeepSeek-V4's block-FP8 checkpoint with NVFP4 routed experts (see the module doc)."""
        return self.method in ("fp8", "deepseek_v4_fp8") and self.moe_algo == "NVFP4"

    @staticmethod
    def read(root: Path, config: Mapping[str, Any]) -> "QuantConfig":
        qc = config.get("quantization_config") or {}
        if not isinstance(qc, dict):
            raise CheckpointError(f"{root / 'config.json'}: quantization_config must be a JSON object")
        q, producer, source = dict(qc), qc.get("quant_method"), "config.json quantization_config"
        p = root / "hf_quant_config.json"
        if p.exists():
            raw = _read_json(p, "hf_quant_config.json")
            prod, hq = raw.get("producer") or {}, raw.get("quantization") or {}
            if not isinstance(prod, dict) or not isinstance(hq, dict):
                raise CheckpointError(f"{p}: producer and quantization must be JSON objects")
            producer, source = prod.get("name"), "hf_quant_config.json"
            q = {**q, **hq, "quantized_layers": {**(q.get("quantized_layers") or {}), **(hq.get("quantized_layers") or {})}}
        layers = q.get("quantized_layers") or {}
        exclude = [*(q.get("exclude_modules") or ()), *(qc.get("ignore") or ()), *(q.get("ignore") or ())]
        if not isinstance(layers, dict) or not all(isinstance(x, str) for x in exclude):
            raise CheckpointError(f"{root}: {source}: quantized_layers must be an object, exclude_modules/ignore lists of strings")
        return QuantConfig(
            producer=producer,
            algo=(str(q["quant_algo"]).upper() if q.get("quant_algo") else None),
            group_size=q.get("group_size"),
            exclude=tuple(dict.fromkeys(exclude)),
            per_layer={k: str(v.get("quant_algo", "")).upper() for k, v in layers.items() if isinstance(v, dict)},
            method=(str(qc["quant_method"]) if qc.get("quant_method") else None),
            moe_algo=(str(qc["moe_quant_algo"]).upper() if qc.get("moe_quant_algo") else None),
            source=source,
        )


def _shard_path(root: Path, shard: str, example: str) -> Path:
    """`shard` (from the index) as a path inside `root`, refused if it could leave it."""
    parts = Path(shard).parts
    if not shard or Path(shard).is_absolute() or ".." in parts or "\x00" in shard or shard.startswith("~"):
        raise CheckpointError(
            f"{root / INDEX_FILE}: shard path {shard!r} (for {example}) is not a relative path inside the checkpoint directory"
        )
    return root / shard


class Checkpoint:
    """A checkpoint directory: config.json, optional hf_quant_config.json, safetensors shards
    (listed by model.safetensors.index.json when present, else every *.safetensors file).
    Opening reads headers only; every shard header is checked (corrupt or truncated files,
    missing shards, index/shard disagreements and shard paths leaving the directory are
    CheckpointErrors)."""

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
            if not all(isinstance(v, str) for v in wm.values()):
                bad = next(k for k, v in wm.items() if not isinstance(v, str))
                raise CheckpointError(f"{index_path}: weight_map[{bad!r}] is not a file name")
            weight_map = {str(k): v for k, v in wm.items()}
            shards = sorted(set(weight_map.values()))
        else:
            shards = sorted(p.name for p in self.root.glob("*.safetensors"))
        if not shards:
            raise CheckpointError(f"{self.root}: no *.safetensors files")
        self.tensors: dict[str, TensorInfo] = {}
        for shard in shards:
            example = next((k for k, v in (weight_map or {}).items() if v == shard), shard)
            path = _shard_path(self.root, shard, example)
            if not path.is_file():
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
                if info is None or info.file != self.root / shard:
                    where = f"found in {info.file.name}" if info else "not in any shard"
                    raise CheckpointError(f"{name}: {INDEX_FILE} puts it in {shard}, {where}")

    # -- config ---------------------------------------------------------------------
    def cfg(self, *keys: str, default: Any = None) -> Any:
        """The first of `keys` present in config.json (or its text_config)."""
        for src in (self.config, self.config.get("text_config") or {}):
            if not isinstance(src, dict):
                continue
            for k in keys:
                if src.get(k) is not None:
                    return src[k]
        return default

    def cfg_int(self, *keys: str) -> int | None:
        """cfg(*keys) as a positive integer (None when absent); anything else is a
        CheckpointError naming the field."""
        v = self.cfg(*keys)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            key = next(k for k in keys if self.cfg(k) is not None)
            raise CheckpointError(f"{self.root / 'config.json'}: {key} = {json.dumps(v)} is not a positive integer")
        return v

    @property
    def num_experts(self) -> int | None:
        return self.cfg_int("n_routed_experts", "num_local_experts", "num_experts")

    @property
    def top_k(self) -> int | None:
        return self.cfg_int("num_experts_per_tok", "moe_topk", "top_k")

    @property
    def num_layers(self) -> int | None:
        return self.cfg_int("num_hidden_layers")

    @property
    def hidden_size(self) -> int | None:
        return self.cfg_int("hidden_size")

    @property
    def moe_intermediate_size(self) -> int | None:
        return self.cfg_int("moe_intermediate_size")

    @property
    def layout(self) -> str:
        """'dsv4_mixed' (public DeepSeek-V4 NVFP4 checkpoints) or 'modelopt' (all-NVFP4)."""
        return "dsv4_mixed" if self.quant.mixed_dsv4 else "modelopt"

    def vllm_module(self, prefix: str) -> str:
        return vllm_module(prefix, self.num_layers)

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
        from .checkpoint_groups import discover

        return discover(self)

    def moe_layers(self) -> list[int]:
        return sorted({g.layer for g in self.discovery.gemms if g.role == "routed" and g.layer is not None})

    def expert_names(self, layer: int) -> tuple[str, tuple[str, ...], str]:
        """How `layer`'s routed experts are named: (base with {expert}, L1 parts, L2 leaf), e.g.
        ('layers.3.ffn.experts.{expert}', ('w1', 'w3'), 'w2'). The two known schemes are probed
        by expert 0's name (no discovery needed); anything else is read from the discovery."""
        for base, l1, l2 in ((f"model.layers.{layer}.mlp.experts.{{expert}}", ("gate_proj", "up_proj"), "down_proj"),
                             (f"layers.{layer}.ffn.experts.{{expert}}", ("w1", "w3"), "w2")):
            if f"{base.format(expert=0)}.{l1[0]}.weight" in self.tensors:
                return base, l1, l2
        for g in self.discovery.gemms:
            if g.role == "routed" and g.layer == layer and expert_proj(g.name) == "l1":
                base = g.parts[0].rpartition(".")[0].rpartition(".")[0]
                leaves = tuple(p.rpartition(".")[2] for p in g.parts)
                return base + ".{expert}", leaves, "w2" if leaves == ("w1", "w3") else "down_proj"
        raise CheckpointError(f"{self.root}: layer {layer} has no NVFP4 routed experts")


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
