"""Discovery over a checkpoint's headers (runtime/checkpoint.py's `Checkpoint.discovery`): every
module classified by format, the NVFP4 linears checked and stacked into the GEMMs the model runs,
the routed experts of each layer checked for completeness and shape.

Format rules, per module P (the tensors sharing P.weight's prefix):
  nvfp4        P.weight_scale_2 present, or F8_E4M3 P.weight_scale on a non-FP8 weight; then every
               tensor is checked strictly (Checkpoint.linear): a wrong dtype or shape is an error
  mxfp4        I8/U8 weight [N, K/2] with an F8_E8M0 (or U8) scale [N, K/32] (`.scale` or
               `.weight_scale`): DeepSeek's source format of routed experts (the MTP layer's stay so)
  fp8_block    F8_E4M3 weight with a 2-D scale [ceil(N/128), ceil(K/128)] (`.scale` or
               `.weight_scale_inv`, E8M0 or F32): DeepSeek's block FP8
  unquantized  BF16/F16/F32 weight, no scale
  other        anything else (named with its dtypes in the reason)
A module the quantization config lists as NVFP4 (quantized_layers, the module or an ancestor) whose
tensors are not NVFP4 is a CheckpointError naming the tensor, never another format.

Imports neither torch nor cutlass.
"""

from __future__ import annotations

from typing import Mapping

from .checkpoint import (
    FUSIONS,
    SF_BLOCK,
    Checkpoint,
    CheckpointError,
    Discovery,
    FP8_BLOCK,
    Gemm,
    Linear,
    MX_BLOCK,
    TensorGroup,
    TensorInfo,
    Unsupported,
    _EXPERT_RE,
    compress_ints,
    layer_of,
    role_of,
)

_L1_LEAVES, _L2_LEAVES = ("gate_proj", "up_proj", "w1", "w3"), ("down_proj", "w2")


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _detail(w: TensorInfo, scale: TensorInfo | None) -> str:
    return f"{w.dtype} {list(w.shape)}" + (f" + {scale.name.rpartition('.')[2]} {scale.dtype} {list(scale.shape)}" if scale else "")


def classify(ck: Checkpoint, prefix: str) -> tuple[str, Linear | None, str]:
    """(format, the checked NVFP4 Linear or None, detail or reason) of module `prefix`."""
    t = ck.tensors
    w = t[f"{prefix}.weight"]
    scale = t.get(f"{prefix}.weight_scale")
    block = t.get(f"{prefix}.scale") or t.get(f"{prefix}.weight_scale_inv")
    has_ws2 = f"{prefix}.weight_scale_2" in t
    listed = ck.quant.listed(prefix)
    declared = ck.quant.algo_of(prefix)
    fp8 = w.dtype in ("F8_E4M3", "F8_E5M2")
    nvfp4_like = has_ws2 or (scale is not None and scale.dtype == "F8_E4M3" and not fp8)
    if listed and listed[1] == "NVFP4" and not nvfp4_like:
        raise CheckpointError(
            f"{w.name}: {_detail(w, scale or block)}, but {ck.quant.source} lists {listed[0]} as NVFP4 "
            f"(expected a U8 weight [N, K/2], an F8_E4M3 weight_scale [N, K/16] and an F32 weight_scale_2) [{w.file.name}]"
        )
    if nvfp4_like:
        if declared not in (None, "NVFP4"):
            return "other", None, f"declared {declared} by the quantization config (only NVFP4 has kernels)"
        if ck.quant.group_size not in (None, SF_BLOCK) and not listed:
            return "other", None, f"NVFP4 with group_size {ck.quant.group_size} (the kernels use {SF_BLOCK})"
        if w.dtype == "U8" and len(w.shape) != 2:
            return "other", None, f"{len(w.shape)}-D packed weight {list(w.shape)} (pre-stacked experts are not read)"
        return "nvfp4", ck.linear(prefix), _detail(w, scale)
    mx = scale or block
    if (w.dtype in ("I8", "U8") and mx is not None and mx.dtype in ("F8_E8M0", "U8") and len(w.shape) == 2
            and mx.shape == (w.shape[0], 2 * w.shape[1] // MX_BLOCK)):
        return "mxfp4", None, _detail(w, mx)
    if fp8 and block is not None and len(w.shape) == 2 and block.shape == (_cdiv(w.shape[0], FP8_BLOCK), _cdiv(w.shape[1], FP8_BLOCK)):
        return "fp8_block", None, _detail(w, block)
    if fp8:
        return "other", None, f"FP8 weight ({w.dtype}{', scale ' + mx.dtype + ' ' + str(list(mx.shape)) if mx else ''})"
    if w.dtype == "U8" and mx is not None and mx.dtype == "U8":
        return "other", None, "U8 weight with U8 (E8M0?) scales: MXFP4-style, not NVFP4"
    if w.dtype in ("I8", "U8", "I32", "I4") or mx is not None:
        return "other", None, f"{w.dtype} weight{' with ' + mx.dtype + ' ' + mx.name.rpartition('.')[2] if mx else ''}: not NVFP4"
    return "unquantized", None, _detail(w, None)


_FOREIGN = {  # format -> why a ModelOpt all-NVFP4 layout cannot serve it
    "fp8_block": "block-FP8 weight",
    "mxfp4": "MXFP4 weight (E8M0 scales per 32), not NVFP4",
}


def discover(ck: Checkpoint) -> Discovery:
    out = Discovery()
    linears: dict[str, Linear] = {}
    mixed = ck.layout == "dsv4_mixed"
    for name in sorted(ck.tensors):
        if name.endswith(".qweight"):
            out.unsupported.append(Unsupported(name, "packed integer weight (GPTQ/AWQ-style), not NVFP4"))
        if not name.endswith(".weight"):
            continue
        prefix = name[: -len(".weight")]
        fmt, lin, detail = classify(ck, prefix)
        out.groups.append(TensorGroup(prefix, fmt, detail, ck.vllm_module(prefix)))
        if fmt == "nvfp4":
            if mixed and not (prefix.startswith("layers.") and role_of(prefix)[0] == "routed"):
                out.unsupported.append(Unsupported(name, "NVFP4 outside the routed experts of layers 0..L-1: vLLM's DeepSeek-V4 config does not serve it as NVFP4"))
                continue
            linears[prefix] = lin  # type: ignore[assignment]
        elif fmt in _FOREIGN:
            if not mixed:  # the DeepSeek-V4 layout hands these to vLLM's own methods (Discovery.groups)
                out.unsupported.append(Unsupported(name, f"{_FOREIGN[fmt]} ({detail})"))
        elif fmt == "other":
            out.unsupported.append(Unsupported(name, detail))
        elif len(ck.tensors[name].shape) == 2:
            out.unquantized.append(name)
    check_experts(ck, linears)
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


def check_experts(ck: Checkpoint, linears: Mapping[str, Linear]) -> None:
    """Every MoE layer holds experts 0..E-1 (E from config.json), each with the same NVFP4
    projections (a missing or non-NVFP4 one is named), every expert of a projection has one
    shape, and gate/up take hidden_size inputs, down returns hidden_size (config.json; the
    first tensor that disagrees is named)."""
    per_layer: dict[tuple[int | None, str], dict[int, dict[str, Linear]]] = {}
    for prefix, lin in linears.items():
        m = _EXPERT_RE.search(prefix)
        if m:
            base = prefix[: m.start()] + prefix[m.start() : m.end()].split(".experts.")[0] + ".experts"
            leaf = prefix.rpartition(".")[2]
            per_layer.setdefault((layer_of(prefix), base), {}).setdefault(int(m.group(1)), {})[leaf] = lin
    want, hidden, inter = ck.num_experts, ck.hidden_size, ck.moe_intermediate_size
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
        for leaf in leaves:
            ref = experts[0][leaf]
            for e in range(1, n):
                lin = experts[e][leaf]
                if (lin.n, lin.k) != (ref.n, ref.k):
                    raise CheckpointError(
                        f"{lin.prefix}.weight: [N, K] = [{lin.n}, {lin.k}], but expert 0 has [{ref.n}, {ref.k}] "
                        f"(every routed expert of a layer has one shape) [{ck.tensors[lin.prefix + '.weight'].file.name}]"
                    )
            checks = []
            if leaf in _L1_LEAVES:
                checks = [("K", ref.k, "hidden_size", hidden), ("N", ref.n, "moe_intermediate_size", inter)]
            elif leaf in _L2_LEAVES:
                checks = [("N", ref.n, "hidden_size", hidden), ("K", ref.k, "moe_intermediate_size", inter)]
            for dim, got, key, cfg in checks:
                if cfg is not None and got != cfg:
                    raise CheckpointError(
                        f"{ref.prefix}.weight: {dim} = {got} (weight [N, K/2] = {list(ck.tensors[ref.prefix + '.weight'].shape)}), "
                        f"but config.json {key} = {cfg} [{ck.tensors[ref.prefix + '.weight'].file.name}]"
                    )
