"""The one path from NVFP4 weights to kernel operands: a ModelOpt NVFP4 checkpoint (safetensors,
memory-mapped) -> the tensors the kernels read, per layer and per expert-parallel rank; and the
operand preparation every runner uses on weights it is handed (`operands`, `expert_operands`,
the global-scale -> alpha functions `row_alpha`, `expert_alpha`, `gate_up_alpha`). torch +
safetensors only; the layouts themselves live beside their families (kernels/*/layout.py).

Global scales (weight_scale_2, a *decode* scale) and alpha, defined here once:
  one GEMM of stacked parts (q_a + kv): [P] -> per output row [N] (`row_alpha`);
  an expert stack: [E] (one per expert) or [E, 2] = (gate, up) for the stacked gate_up GEMM
  ([:, 0] covers rows [0, N/2), [:, 1] rows [N/2, N)) -> per row [E, N] (`expert_alpha`: the
  Hopper grouped GEMM's epilogue), or, for a kernel with one alpha per expert (sm_100a's
  block-scaled grouped GEMM), the gate's scale for L1 plus up/gate per expert (`gate_up_alpha`),
  which the runner folds into L2's alpha: silu(gate) * up is linear in up and L2 is linear, so
  both archs honour unequal gate/up scales exactly.

Shards are opened with `safetensors.safe_open(..., framework="pt")`, which memory-maps the file;
only the tensors asked for are read (a rank reads its own experts, not the other ranks').

    ck = Checkpoint("/models/DeepSeek-V4-Pro-NVFP4")        # headers only
    qkv = load_linear(ck, ["model.layers.0.self_attn.q_a_proj", "model.layers.0.self_attn.kv_a_proj_with_mqa"])
    moe = load_moe_experts(ck, layer=3, ep_size=8, ep_rank=2)   # either layout (runtime/checkpoint.py)
    moe.w13.blob[i], moe.w13.strip[i], moe.w13.alpha[i]      # quack_w4a16_gemm args of local expert i
    moe.w13.sf_swizzled[i]                                  # Blackwell 128x4 layout, swizzled per expert
    moe.global_to_local[g]                                  # -1 where global expert g lives on another rank

Layouts (`layouts=`, default ("quack_w4a16", "swizzled")):
  "quack_w4a16"  blob [N/64, K/64, 128, 16] + strip [N/64, K/64, 32, 4, 2] (kernels/quack_w4a16/layout.py):
                 THE Hopper W4A16 layout, one copy for our w4a16 families and quack's
  "swizzled"     q [N, K/2] as in the checkpoint + sf_swizzled [round_up(N, 128), K/16] in the 128x4
                 block-scaled layout (kernels/nvfp4_quantize/layout.py), per expert for expert stacks
Global scales: `weight_scale_2` per stacked part ([P]; the kernels' alpha = weight_scale_2, a
decode scale); `alpha` is that single value when every part agrees (a fused GEMM with one
epilogue scale needs them equal; `row_alpha` gives it per output row otherwise). `input_scale`
is returned but is not an activation scale to use (calibration values overflow real
activations): the runtime computes activation scales with nvfp4_global_scale.

Every header of a call (shapes, dtypes; config.json gives the expected sizes) is checked before
its data is read; a mismatch is a CheckpointError naming the tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from .checkpoint import FUSIONS, Checkpoint, CheckpointError, Linear, expert_range
from .errors import ArgumentError

LAYOUTS = ("quack_w4a16", "swizzled")  # what load_* prepare by default
# "w4a16_rot": quack_w4a16 with each blob word's bits in word order "rot" (runtime/word_order.py), read by our
# w4a16 / w4a16_ws variants whose problem says word_order = "rot" (quack's kernels read "quack_w4a16" only); the
# two are alternatives for one weight (same operand names), never loaded together
# "w4a16_rotq": "w4a16_rot" with its words placed transposed within each quad of lanes (word order "rotq")
OPERANDS = {"quack_w4a16": ("blob", "strip"), "w4a16_rot": ("blob", "strip"), "w4a16_rotq": ("blob", "strip"),
            "swizzled": ("sf_swizzled",)}
BLOB_LAYOUT = {"nibble": "quack_w4a16", "rot": "w4a16_rot", "rotq": "w4a16_rotq"}  # word order -> the layout holding it (keys: WORD_ORDERS)
BLOB_ORDER = {v: k for k, v in BLOB_LAYOUT.items()}  # the layout holding a word order -> that order
_TORCH_DTYPES = {"U8": torch.uint8, "F8_E4M3": torch.float8_e4m3fn, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


# ----------------------------------------------------------------------------- alpha


def parts_to_rows(scale_2: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """[..., P] per-part scales -> [..., sum(sizes)] per output row (part p covers sizes[p] rows)."""
    return torch.repeat_interleave(scale_2, torch.tensor(list(sizes), device=scale_2.device), dim=-1)


def row_alpha(scale_2: torch.Tensor, n: int, part_sizes: Sequence[int] | None = None, device: Any = None) -> torch.Tensor:
    """Per-row fp32 alpha [N] of one GEMM from weight_scale_2: a scalar, or one value per stacked
    part (e.g. q_a + kv: two global scales) with part_sizes summing to N."""
    s = scale_2.detach().float().reshape(-1).to(device or scale_2.device)
    if s.numel() == 1:
        return s.expand(n).contiguous()
    sizes = list(part_sizes or [])
    if len(sizes) != s.numel() or sum(sizes) != n:
        raise ArgumentError(f"weight_scale_2 has {s.numel()} values: pass part_sizes with as many parts summing to N={n}, got {sizes}")
    return parts_to_rows(s, sizes).contiguous()


def _per_expert(scale_2: torch.Tensor, experts: int, device: Any, what: str) -> torch.Tensor:
    """[E] or [E, P] -> fp32 [E, P], P in (1, 2) (see the module docstring)."""
    s = scale_2.detach().float().to(device or scale_2.device).reshape(experts, -1)
    if s.shape[1] not in (1, 2):
        raise ArgumentError(f"{what}: weight_scale_2 must be [E] or [E, 2] (gate, up), got {tuple(scale_2.shape)}")
    bad = ~torch.isfinite(s).all(1)
    if bad.any():
        raise ArgumentError(f"{what}: weight_scale_2 of expert {int(torch.nonzero(bad)[0])} is not finite: {s[bad][0].tolist()}")
    return s


def expert_alpha(scale_2: torch.Tensor, experts: int, n: int, device: Any = None, what: str = "w13") -> torch.Tensor:
    """fp32 [E, N] per-row alpha from weight_scale_2 [E] or [E, 2] (gate rows, then up rows)."""
    s = _per_expert(scale_2, experts, device, what)
    if s.shape[1] == 2 and n % 2:
        raise ArgumentError(f"{what}: [E, 2] (gate, up) global scales need an even N, got {n}")
    return parts_to_rows(s, (n,) if s.shape[1] == 1 else (n // 2, n // 2)).contiguous()


def gate_up_alpha(scale_2: torch.Tensor, experts: int, device: Any = None, what: str = "w13") -> tuple[torch.Tensor, torch.Tensor]:
    """For a kernel with one alpha per expert: (gate scale [E], up / gate [E]). The stacked L1
    runs with the gate's scale on both halves, so its up half comes out divided by up / gate;
    the caller multiplies that ratio into L2's alpha (exact: silu(gate) * up is linear in up)."""
    s = _per_expert(scale_2, experts, device, what)
    gate = s[:, 0].contiguous()
    if s.shape[1] == 1:
        return gate, torch.ones_like(gate)
    # a zero gate scale means a zero gate half: silu(0) * up = 0 whatever the up scale
    ratio = torch.where(gate != 0, s[:, 1] / torch.where(gate != 0, gate, torch.ones_like(gate)), torch.ones_like(gate))
    return gate, ratio.contiguous()


def single_alpha(ws2: torch.Tensor, parts: Sequence[str]) -> torch.Tensor:
    """[..., P] per-part scales -> [R] (one per GEMM), if the parts of each GEMM agree."""
    w = ws2.reshape(-1, ws2.shape[-1])
    if not torch.equal(w, w[:, :1].expand_as(w)):
        raise CheckpointError(
            f"{' + '.join(parts)}: the stacked parts have different weight_scale_2 {ws2.tolist()}; "
            "one GEMM applies one alpha (use row_alpha, or run the parts separately)"
        )
    return w[:, 0].contiguous()


# ----------------------------------------------------------------------------- operands


def operands(q: torch.Tensor, sf: torch.Tensor, layout: str) -> dict[str, torch.Tensor]:
    """One NVFP4 matrix (q uint8 [N, K/2], sf E4M3 [N, K/16] row-major) -> the named operands of
    `layout` (OPERANDS[layout]); raises ValueError when the shape has no such layout."""
    sf = sf.view(torch.uint8) if sf.dtype != torch.uint8 else sf
    if layout in BLOB_ORDER:
        from nvfp4_aot.kernels.quack_w4a16.layout import prepare_weights

        from .word_order import word_order

        blob, strip = prepare_weights(q, sf)
        return {"blob": word_order(blob, BLOB_ORDER[layout]), "strip": strip}
    if layout == "swizzled":
        from nvfp4_aot.kernels.nvfp4_quantize.layout import swizzle_sf

        return {"sf_swizzled": swizzle_sf(sf)}
    raise ValueError(f"unknown layout {layout!r}; known: {sorted(OPERANDS)}")


def expert_operands(q: torch.Tensor, sf: torch.Tensor, layout: str, device: Any = None) -> dict[str, torch.Tensor]:
    """operands() of each expert of a stack (q [E, N, K/2], sf [E, N, K/16]), stacked along E.
    Per expert: a layout tile (e.g. a 128-row scale atom) never spans two experts."""
    per = [operands(q[e].to(device or q.device), sf[e].to(device or sf.device), layout) for e in range(q.shape[0])]
    return {name: torch.stack([p[name] for p in per]).contiguous() for name in OPERANDS[layout]}


def _dequant(q: torch.Tensor, sf: torch.Tensor) -> torch.Tensor:
    from nvfp4_aot.kernels.quack_w4a16.layout import dequantize

    return dequantize(q, sf)


class _Files:
    """Open safetensors handles (memory-mapped) of one checkpoint."""

    def __init__(self, ck: Checkpoint):
        self.ck, self.handles = ck, {}

    def get(self, name: str) -> torch.Tensor:
        from safetensors import SafetensorError, safe_open

        info = self.ck.info(name)
        try:
            f = self.handles.get(info.file)
            if f is None:
                f = self.handles[info.file] = safe_open(str(info.file), framework="pt")
            t = f.get_tensor(name)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise CheckpointError(f"{name}: cannot read from {info.file.name} ({e})") from None
        if t.dtype != _TORCH_DTYPES.get(info.dtype, t.dtype):
            raise CheckpointError(f"{name}: read as {t.dtype}, header says {info.dtype} [{info.file.name}]")
        return t


def _files(ck: Checkpoint) -> _Files:
    f = ck.__dict__.get("_weight_files")
    if f is None:
        f = ck.__dict__["_weight_files"] = _Files(ck)
    return f


def _scalar(files: _Files, name: str) -> torch.Tensor:
    v = files.get(name).float().reshape(-1)
    if not torch.isfinite(v).all():
        raise CheckpointError(f"{name}: per-tensor scale {v.tolist()} is not finite")
    return v


@dataclass
class LinearWeights:
    """One GEMM's weights: `parts` (checkpoint prefixes) stacked along N in order."""

    parts: tuple[str, ...]
    rows: tuple[int, ...]  # N of each part
    q: torch.Tensor  # uint8 [N, K/2], checkpoint layout (E2M1 pairs)
    sf: torch.Tensor  # uint8 [N, K/16] E4M3 bits, row-major
    weight_scale_2: torch.Tensor  # fp32 [P]: per-part decode scale (alpha)
    input_scale: torch.Tensor | None  # fp32 [P] (calibration; see module docstring)
    blob: torch.Tensor | None = None  # "quack_w4a16"
    strip: torch.Tensor | None = None  # "quack_w4a16"
    sf_swizzled: torch.Tensor | None = None  # "swizzled"

    @property
    def n(self) -> int:
        return self.q.shape[0]

    @property
    def k(self) -> int:
        return 2 * self.q.shape[1]

    @property
    def alpha(self) -> torch.Tensor:
        """fp32 [1]: the GEMM's decode scale (every part's weight_scale_2 must agree)."""
        return single_alpha(self.weight_scale_2, self.parts)

    def row_alpha(self) -> torch.Tensor:
        """fp32 [N]: each output row's decode scale."""
        return row_alpha(self.weight_scale_2, self.n, self.rows)

    def dequantize(self) -> torch.Tensor:
        """fp32 [N, K]: e2m1(q) * e4m3(sf) * weight_scale_2 of the row's part."""
        return _dequant(self.q, self.sf) * self.row_alpha().unsqueeze(1)


def _layouts(q: torch.Tensor, sf: torch.Tensor, layouts: Iterable[str], what: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for lay in layouts:
        if lay not in OPERANDS:
            raise ValueError(f"unknown layout {lay!r}; known: {sorted(OPERANDS)}")
        if set(OPERANDS[lay]) & set(out):
            raise ValueError(f"layout {lay!r} names operands {OPERANDS[lay]} another of {list(layouts)} already holds: "
                             "pick one of the alternatives")
        try:
            out.update(operands(q, sf, lay))
        except ValueError as e:
            raise CheckpointError(f"{what}: shape [{q.shape[0]}, {2 * q.shape[1]}] has no {lay!r} layout ({e})") from None
    return out


def _read_linear(ck: Checkpoint, lin: Linear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    files = _files(ck)
    q = files.get(f"{lin.prefix}.weight")
    sf = files.get(f"{lin.prefix}.weight_scale").view(torch.uint8)
    ws2 = _scalar(files, f"{lin.prefix}.weight_scale_2")
    ins = _scalar(files, f"{lin.prefix}.input_scale") if lin.has_input_scale else None
    return q, sf, ws2, ins


def load_linear(ck: Checkpoint, parts: str | Sequence[str], *, n: int | Sequence[int] | None = None, k: int | None = None, layouts: Iterable[str] = LAYOUTS) -> LinearWeights:
    """The NVFP4 linear `parts` (a prefix, or prefixes stacked along N), checked against the
    expected N (per part) and K when given."""
    parts = (parts,) if isinstance(parts, str) else tuple(parts)
    ns = [n] * len(parts) if n is None or isinstance(n, int) else list(n)
    if len(ns) != len(parts):
        raise ValueError(f"{len(ns)} row counts for {len(parts)} parts")
    lins = [ck.linear(p, pn, k) for p, pn in zip(parts, ns)]
    if len({x.k for x in lins}) != 1:
        raise CheckpointError(f"{' + '.join(parts)}: parts have different K {[x.k for x in lins]}; they cannot be stacked")
    read = [_read_linear(ck, x) for x in lins]
    q = read[0][0] if len(read) == 1 else torch.cat([r[0] for r in read])
    sf = read[0][1] if len(read) == 1 else torch.cat([r[1] for r in read])
    ws2 = torch.cat([r[2] for r in read])
    ins = torch.cat([r[3] for r in read]) if all(r[3] is not None for r in read) else None
    return LinearWeights(parts, tuple(x.n for x in lins), q, sf, ws2, ins, **_layouts(q, sf, layouts, " + ".join(parts)))


@dataclass
class ExpertStack:
    """One projection of every local expert, stacked along a leading expert dim E_local."""

    parts: tuple[str, ...]  # leaf names stacked along N (gate_proj, up_proj) or (down_proj,)
    rows: tuple[int, ...]
    q: torch.Tensor  # uint8 [E, N, K/2]
    sf: torch.Tensor  # uint8 [E, N, K/16] row-major
    weight_scale_2: torch.Tensor  # fp32 [E, P]
    input_scale: torch.Tensor | None  # fp32 [E, P]
    blob: torch.Tensor | None = None  # [E, N/64, K/64, 128, 16]
    strip: torch.Tensor | None = None  # [E, N/64, K/64, 32, 4, 2]
    sf_swizzled: torch.Tensor | None = None  # [E, round_up(N, 128), K/16], swizzled per expert
    packed: torch.Tensor | None = None  # [E, N/16, K/256, 576]

    @property
    def alpha(self) -> torch.Tensor:
        """fp32 [E]: each expert's decode scale (its parts' weight_scale_2 must agree)."""
        return single_alpha(self.weight_scale_2, self.parts)

    def row_alpha(self) -> torch.Tensor:
        """fp32 [E, N]: each expert's per-row decode scale (expert_alpha's convention)."""
        return expert_alpha(self.weight_scale_2, self.q.shape[0], self.q.shape[1])

    def dequantize(self, i: int) -> torch.Tensor:
        """fp32 [N, K] of local expert i."""
        return _dequant(self.q[i], self.sf[i]) * self.row_alpha()[i].unsqueeze(1)


@dataclass
class MoEWeights:
    layer: int
    ep_size: int
    ep_rank: int
    num_experts: int
    local_to_global: torch.Tensor  # int64 [E_local]
    global_to_local: torch.Tensor  # int32 [num_experts], -1 for experts of other ranks
    w13: ExpertStack  # gate_proj + up_proj stacked: N = 2 I, K = hidden
    w2: ExpertStack  # down_proj: N = hidden, K = I


def load_moe_experts(
    ck: Checkpoint,
    layer: int,
    ep_size: int = 1,
    ep_rank: int = 0,
    *,
    prefix: str | None = None,
    layouts: Iterable[str] = LAYOUTS,
) -> MoEWeights:
    """The routed experts of `layer` held by `ep_rank` (contiguous blocks of E / ep_size),
    checked against config.json (n_routed_experts, hidden_size, moe_intermediate_size).
    Names come from the checkpoint (Checkpoint.expert_names: ModelOpt's
    model.layers.N.mlp.experts.E.{gate,up,down}_proj or DeepSeek-V4's layers.N.ffn.experts.E.
    {w1,w3,w2}); `prefix` ("...{layer}...{expert}", ModelOpt leaf names) overrides. Only this
    rank's expert tensors are read. In the DeepSeek-V4 layout w1 and w3 must share
    weight_scale_2 (the producer writes one; a difference is an error naming the tensor)."""
    layouts = tuple(layouts)
    n_exp = ck.num_experts
    hidden = ck.hidden_size
    inter = ck.moe_intermediate_size or ck.cfg_int("intermediate_size")
    if not (n_exp and hidden and inter):
        raise CheckpointError(f"{ck.root / 'config.json'}: needs n_routed_experts, hidden_size and moe_intermediate_size")
    try:
        rng = expert_range(n_exp, ep_size, ep_rank)
    except ValueError as e:
        raise ValueError(f"layer {layer}: {e}") from None
    if prefix is None:
        base, l1, l2 = ck.expert_names(layer)
    else:
        (gate, up), _ = FUSIONS[0]
        base, l1, l2 = prefix.format(layer=layer, expert="{expert}"), (gate, up), "down_proj"
    beyond = base.format(expert=n_exp) + f".{l1[0]}.weight"
    if beyond in ck.tensors:
        raise CheckpointError(f"{beyond}: expert {n_exp} exists but config.json n_routed_experts = {n_exp}")
    projs = (("w13", l1, inter, hidden), ("w2", (l2,), hidden, inter))
    for _, leaves, n, k in projs:  # every header first: a bad tensor fails before any data is read
        for e in rng:
            for p in (f"{base.format(expert=e)}.{leaf}" for leaf in leaves):
                if f"{p}.weight" not in ck.tensors:
                    raise CheckpointError(f"{p}.weight: missing (layer {layer} expert {e} of config.json n_routed_experts = {n_exp}; EP rank {ep_rank} holds {rng.start}-{rng.stop - 1})")
                ck.linear(p, n, k)
    stacks = {}
    for key, leaves, n, k in projs:
        per_expert = [load_linear(ck, [f"{base.format(expert=e)}.{leaf}" for leaf in leaves], n=n, k=k, layouts=()) for e in rng]
        if key == "w13" and ck.layout == "dsv4_mixed":
            for w in per_expert:
                if not torch.equal(w.weight_scale_2[:1].expand_as(w.weight_scale_2), w.weight_scale_2):
                    raise CheckpointError(
                        f"{w.parts[1]}.weight_scale_2 = {w.weight_scale_2[1].item()!r} differs from {w.parts[0]}.weight_scale_2 = "
                        f"{w.weight_scale_2[0].item()!r}: the stacked gate/up GEMM applies one global scale (the DeepSeek-V4 "
                        "NVFP4 export writes one for both)"
                    )
        stacks[key] = _stack(per_expert, leaves, layouts)
    g2l = torch.full((n_exp,), -1, dtype=torch.int32)
    g2l[rng.start : rng.stop] = torch.arange(len(rng), dtype=torch.int32)
    return MoEWeights(layer, ep_size, ep_rank, n_exp, torch.arange(rng.start, rng.stop), g2l, stacks["w13"], stacks["w2"])


def _stack(ws: list[LinearWeights], leaves: Sequence[str], layouts: Sequence[str]) -> ExpertStack:
    q = torch.stack([w.q for w in ws])
    sf = torch.stack([w.sf for w in ws])
    ins = torch.stack([w.input_scale for w in ws]) if all(w.input_scale is not None for w in ws) else None
    extra: dict[str, Any] = {}
    for w in ws:  # per expert: a swizzle tile never spans two experts
        for name, t in _layouts(w.q, w.sf, layouts, " + ".join(w.parts)).items():
            extra.setdefault(name, []).append(t)
    return ExpertStack(tuple(leaves), ws[0].rows, q, sf, torch.stack([w.weight_scale_2 for w in ws]), ins, **{k: torch.stack(v) for k, v in extra.items()})


def load_layer(ck: Checkpoint, layer: int, ep_size: int = 1, ep_rank: int = 0, *, layouts: Iterable[str] = LAYOUTS) -> dict[str, Any]:
    """Every NVFP4 GEMM of `layer` as the planner groups them: {GEMM name: LinearWeights} for
    attention, dense and shared-expert GEMMs (fused parts stacked), plus "experts": MoEWeights
    when the layer has routed experts."""
    layouts = tuple(layouts)
    out: dict[str, Any] = {}
    gemms = [g for g in ck.discovery.gemms if g.layer == layer and g.role != "routed"]
    for g in gemms:  # headers were checked by discovery; read only now
        out[g.name] = load_linear(ck, g.parts, n=[ck.linear(p).n for p in g.parts], k=g.k, layouts=layouts)
    if layer in ck.moe_layers():
        out["experts"] = load_moe_experts(ck, layer, ep_size, ep_rank, layouts=layouts)
    return out
