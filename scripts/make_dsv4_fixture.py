#!/usr/bin/env python3
"""Write DeepSeek-V4 NVFP4 *header* fixtures: checkpoint directories whose config.json,
hf_quant_config.json, model.safetensors.index.json and safetensors shards carry the tensor names,
dtypes and shapes (tests/fixtures/dsv4_headers/README.md) but no data. Three of them:

  --model pro-modelopt  (default) an all-NVFP4 ModelOpt export with Hugging Face names: the
                        layout this project first planned (manifests/deepseek_v4_pro_ep8.toml)
  --model pro | flash   the public nvidia/DeepSeek-V4-{Pro,Flash}-NVFP4 layout: DeepSeek's names,
                        NVFP4 routed experts, block-FP8 + E8M0 everything else, MXFP4 MTP experts
                        (`public_tensors`; manifests/dsv4_{pro_ep8,flash_ep4}.toml)

Each shard is a valid safetensors file written as a *sparse* file: the JSON header is written,
then the file is extended (truncate) to its full size, so the tensor data is a hole that reads
as zeros and takes no disk blocks. The full 61-layer, 384-expert model is ~0.9 TB of apparent
size and ~40 MB on disk (the headers). The script refuses to go on if the filesystem does not
keep the holes sparse.

    python scripts/make_dsv4_fixture.py [OUT_DIR] [--model pro-modelopt|pro|flash] [--experts N] [--layers L]

`model_tensors(config)` (DeepSeek-V3-style Hugging Face names with ModelOpt NVFP4 tensors) and
`public_tensors(config)` (the public layout) are the naming schemes; the tests reuse them to
write small synthetic checkpoints with real data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

# Outside the repo by default: a naive copy of the work tree (one that does not keep holes)
# would otherwise try to write the ~0.8 TiB apparent size.
DEFAULT_OUT = Path(tempfile.gettempdir()) / "nvfp4_aot_fixtures" / "DeepSeek-V4-Pro-NVFP4"
DTYPE_BYTES = {"U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E8M0": 1, "BF16": 2, "F32": 4, "I32": 4, "I64": 8}

# DeepSeek-V4-Pro, from ../shared/CONTEXT.md (the serving team's notes); see the README.
DSV4_PRO_CONFIG = {
    "architectures": ["DeepseekV4ForCausalLM"],
    "model_type": "deepseek_v4",
    "hidden_size": 7168,
    "moe_intermediate_size": 3072,
    "n_routed_experts": 384,
    "n_shared_experts": 1,
    "num_experts_per_tok": 6,
    "first_k_dense_replace": 0,
    "intermediate_size": 18432,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "head_dim": 512,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_rope_head_dim": 64,
    "o_lora_rank": 1024,
    "o_groups": 2,
    "vocab_size": 129280,
    "torch_dtype": "bfloat16",
}
QUANT_CONFIG = {
    "producer": {"name": "modelopt", "version": "0.37.0"},
    "quantization": {
        "quant_algo": "NVFP4",
        "kv_cache_quant_algo": None,
        "group_size": 16,
        "exclude_modules": ["lm_head", "model.embed_tokens", "model.layers.*.mlp.gate", "model.layers.*.self_attn.o_a_proj"],
    },
}


def nvfp4_linear(prefix: str, n: int, k: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """The four ModelOpt NVFP4 tensors of one linear W[n, k]."""
    return [
        (f"{prefix}.weight", "U8", (n, k // 2)),
        (f"{prefix}.weight_scale", "F8_E4M3", (n, k // 16)),
        (f"{prefix}.weight_scale_2", "F32", ()),
        (f"{prefix}.input_scale", "F32", ()),
    ]


def mlp(prefix: str, hidden: int, inter: int) -> list[tuple[str, str, tuple[int, ...]]]:
    return (
        nvfp4_linear(f"{prefix}.gate_proj", inter, hidden)
        + nvfp4_linear(f"{prefix}.up_proj", inter, hidden)
        + nvfp4_linear(f"{prefix}.down_proj", hidden, inter)
    )


def layer_tensors(c: dict, i: int) -> list[tuple[str, str, tuple[int, ...]]]:
    h, p = c["hidden_size"], f"model.layers.{i}"
    heads, hd = c["num_attention_heads"], c["head_dim"]
    groups, o_rank = c["o_groups"], c["o_lora_rank"]
    t = [
        (f"{p}.input_layernorm.weight", "BF16", (h,)),
        (f"{p}.post_attention_layernorm.weight", "BF16", (h,)),
        (f"{p}.self_attn.q_a_layernorm.weight", "BF16", (c["q_lora_rank"],)),
        (f"{p}.self_attn.kv_a_layernorm.weight", "BF16", (c["kv_lora_rank"],)),
        # o_a: grouped (each group maps heads/groups x head_dim -> o_lora_rank), BF16 in the checkpoint
        (f"{p}.self_attn.o_a_proj.weight", "BF16", (groups * o_rank, heads * hd // groups)),
    ]
    t += nvfp4_linear(f"{p}.self_attn.q_a_proj", c["q_lora_rank"], h)
    t += nvfp4_linear(f"{p}.self_attn.kv_a_proj_with_mqa", c["kv_lora_rank"], h)
    t += nvfp4_linear(f"{p}.self_attn.q_b_proj", heads * hd, c["q_lora_rank"])
    t += nvfp4_linear(f"{p}.self_attn.o_b_proj", h, groups * o_rank)
    if i < c.get("first_k_dense_replace", 0):
        return t + mlp(f"{p}.mlp", h, c["intermediate_size"])
    e, inter = c["n_routed_experts"], c["moe_intermediate_size"]
    t += [(f"{p}.mlp.gate.weight", "BF16", (e, h)), (f"{p}.mlp.gate.e_score_correction_bias", "F32", (e,))]
    if c.get("n_shared_experts"):
        t += mlp(f"{p}.mlp.shared_experts", h, inter * c["n_shared_experts"])
    for j in range(e):
        t += mlp(f"{p}.mlp.experts.{j}", h, inter)
    return t


def model_tensors(c: dict) -> list[list[tuple[str, str, tuple[int, ...]]]]:
    """Tensors grouped by shard: one shard per layer, then embeddings, final norm and lm_head."""
    shards = [layer_tensors(c, i) for i in range(c["num_hidden_layers"])]
    h, v = c["hidden_size"], c["vocab_size"]
    shards.append([("model.embed_tokens.weight", "BF16", (v, h)), ("model.norm.weight", "BF16", (h,)), ("lm_head.weight", "BF16", (v, h))])
    return shards


# -- the public layout (nvidia/DeepSeek-V4-{Pro,Flash}-NVFP4) ---------------------------------
# Configs: Flash as published (config.json of deepseek-ai/DeepSeek-V4-Flash, transcribed in
# public code, see the README); Pro from the published dims, the rest assumed like Flash where
# the sources are silent (README: "Assumptions").
DSV4_FLASH_PUBLIC = {
    "architectures": ["DeepseekV4ForCausalLM"],
    "model_type": "deepseek_v4",
    "expert_dtype": "fp4",
    "hidden_size": 4096,
    "moe_intermediate_size": 2048,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 43,
    "num_nextn_predict_layers": 1,
    "num_hash_layers": 3,
    "num_attention_heads": 64,
    "num_key_value_heads": 1,
    "head_dim": 512,
    "qk_rope_head_dim": 64,
    "q_lora_rank": 1024,
    "o_lora_rank": 1024,
    "o_groups": 8,
    "index_n_heads": 64,
    "index_head_dim": 128,
    "index_topk": 512,
    "hc_mult": 4,
    "hc_sinkhorn_iters": 20,
    "hc_eps": 1e-06,
    "hidden_act": "silu",
    "swiglu_limit": 10.0,
    "scoring_func": "sqrtsoftplus",
    "routed_scaling_factor": 1.5,
    "norm_topk_prob": True,
    "topk_method": "noaux_tc",
    "sliding_window": 128,
    "rms_norm_eps": 1e-06,
    "vocab_size": 129280,
    "torch_dtype": "bfloat16",
    "compress_rope_theta": 160000,
    "compress_ratios": [0, 0] + [4, 128] * 20 + [4, 0],
}
DSV4_PRO_PUBLIC = {
    **DSV4_FLASH_PUBLIC,
    "hidden_size": 7168,
    "moe_intermediate_size": 3072,
    "n_routed_experts": 384,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "q_lora_rank": 1536,
    "o_groups": 16,
    "index_topk": 1024,
    "routed_scaling_factor": 2.5,
    "compress_ratios": [0, 0] + [4, 128] * 29 + [4, 0],
}
FP8_BLOCK, MX_BLOCK = 128, 32


def public_quant(config: dict) -> tuple[dict, dict]:
    """(config.json quantization_config, hf_quant_config.json) as Model-Optimizer's
    deepseek_v4/quantize_to_nvfp4.py writes them for the published checkpoints."""
    layers = {f"layers.{i}.ffn.experts": {"quant_algo": "NVFP4", "group_size": 16} for i in range(config["num_hidden_layers"])}
    ignore = ["*.attn.*", "*.ffn.shared_experts.*", "head", "mtp.*"]
    qc = {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "scale_fmt": "ue8m0",
        "weight_block_size": [FP8_BLOCK, FP8_BLOCK],
        "quant_algo": "MIXED_PRECISION",
        "moe_quant_algo": "NVFP4",
        "kv_cache_quant_algo": None,
        "group_size": 16,
        "quantized_layers": layers,
        "ignore": ignore,
        "config_groups": {"group_0": {"targets": sorted(layers), "weights": {"num_bits": 4, "type": "float", "group_size": 16},
                                      "input_activations": {"num_bits": 4, "type": "float", "group_size": 16}}},
    }
    hf = {"producer": {"name": "modelopt", "version": "dsv4-nvfp4-experts"},
          "quantization": {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": None, "group_size": 16,
                           "quantized_layers": layers, "exclude_modules": ignore}}
    return qc, hf


def fp8_linear(prefix: str, n: int, k: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """DeepSeek's block FP8: E4M3 weight, one E8M0 scale per 128 x 128 block."""
    return [(f"{prefix}.weight", "F8_E4M3", (n, k)), (f"{prefix}.scale", "F8_E8M0", (-(-n // FP8_BLOCK), -(-k // FP8_BLOCK)))]


def mxfp4_linear(prefix: str, n: int, k: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """DeepSeek's MXFP4 experts: E2M1 pairs in I8, one E8M0 scale per 32 along K."""
    return [(f"{prefix}.weight", "I8", (n, k // 2)), (f"{prefix}.scale", "F8_E8M0", (n, k // MX_BLOCK))]


def public_block(c: dict, p: str, layer: int, experts: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """One transformer block `p` (layers.N or mtp.K) in the public layout; routed experts in
    `experts` format ("nvfp4" for layers 0..L-1, "mxfp4" for the MTP block)."""
    h, e, inter, hc = c["hidden_size"], c["n_routed_experts"], c["moe_intermediate_size"], c["hc_mult"]
    heads, hd, ql, og, olr = c["num_attention_heads"], c["head_dim"], c["q_lora_rank"], c["o_groups"], c["o_lora_rank"]
    mix = (2 + hc) * hc
    t = [(f"{p}.attn_norm.weight", "BF16", (h,)), (f"{p}.ffn_norm.weight", "BF16", (h,))]
    for which in ("attn", "ffn"):
        t += [(f"{p}.hc_{which}_fn", "F32", (mix, hc * h)), (f"{p}.hc_{which}_base", "F32", (mix,)), (f"{p}.hc_{which}_scale", "F32", (3,))]
    a = f"{p}.attn"
    t += fp8_linear(f"{a}.wq_a", ql, h) + [(f"{a}.q_norm.weight", "BF16", (ql,))]
    t += fp8_linear(f"{a}.wq_b", heads * hd, ql)
    t += fp8_linear(f"{a}.wkv", hd, h) + [(f"{a}.kv_norm.weight", "BF16", (hd,))]
    t += fp8_linear(f"{a}.wo_a", og * olr, heads * hd // og) + fp8_linear(f"{a}.wo_b", h, og * olr)
    t += [(f"{a}.attn_sink", "F32", (heads,))]
    ratio = c["compress_ratios"][layer] if layer < c["num_hidden_layers"] else 0
    if ratio > 1:
        coff = 2 if ratio == 4 else 1
        t += compressor(f"{a}.compressor", ratio, coff * hd, hd, h)
    if ratio == 4:
        ih, ihd = c["index_n_heads"], c["index_head_dim"]
        t += fp8_linear(f"{a}.indexer.wq_b", ih * ihd, ql) + [(f"{a}.indexer.weights_proj.weight", "BF16", (ih, h))]
        t += compressor(f"{a}.indexer.compressor", ratio, 2 * ihd, ihd, h)
    f = f"{p}.ffn"
    t += [(f"{f}.gate.weight", "BF16", (e, h))]
    if layer < c["num_hash_layers"]:
        t += [(f"{f}.gate.tid2eid", "I64", (c["vocab_size"], c["num_experts_per_tok"]))]
    else:
        t += [(f"{f}.gate.bias", "F32", (e,))]
    si = inter * c["n_shared_experts"]
    t += fp8_linear(f"{f}.shared_experts.w1", si, h) + fp8_linear(f"{f}.shared_experts.w3", si, h) + fp8_linear(f"{f}.shared_experts.w2", h, si)
    lin = nvfp4_linear if experts == "nvfp4" else mxfp4_linear
    for j in range(e):
        x = f"{f}.experts.{j}"
        t += lin(f"{x}.w1", inter, h) + lin(f"{x}.w3", inter, h) + lin(f"{x}.w2", h, inter)
    return t


def compressor(p: str, ratio: int, width: int, hd: int, h: int) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(f"{p}.ape", "F32", (ratio, width)), (f"{p}.wkv.weight", "BF16", (width, h)),
            (f"{p}.wgate.weight", "BF16", (width, h)), (f"{p}.norm.weight", "BF16", (hd,))]


def public_tensors(c: dict, experts: str = "nvfp4") -> list[list[tuple[str, str, tuple[int, ...]]]]:
    """Shards: one per layer, the MTP block, then embeddings, final norm, head and hc_head.
    experts="mxfp4" gives DeepSeek's own release (the source of the NVFP4 checkpoints)."""
    layers = c["num_hidden_layers"]
    shards = [public_block(c, f"layers.{i}", i, experts) for i in range(layers)]
    h, v, hc = c["hidden_size"], c["vocab_size"], c["hc_mult"]
    for k in range(c.get("num_nextn_predict_layers", 0)):
        m = f"mtp.{k}"
        shards.append(public_block(c, m, layers + k, "mxfp4") + fp8_linear(f"{m}.e_proj", h, h) + fp8_linear(f"{m}.h_proj", h, h) + [
            (f"{m}.enorm.weight", "BF16", (h,)), (f"{m}.hnorm.weight", "BF16", (h,)), (f"{m}.norm.weight", "BF16", (h,)),
            (f"{m}.hc_head_fn", "F32", (hc, hc * h)), (f"{m}.hc_head_base", "F32", (hc,)), (f"{m}.hc_head_scale", "F32", (1,))])
    shards.append([("embed.weight", "BF16", (v, h)), ("norm.weight", "BF16", (h,)), ("head.weight", "BF16", (v, h)),
                   ("hc_head_fn", "F32", (hc, hc * h)), ("hc_head_base", "F32", (hc,)), ("hc_head_scale", "F32", (1,))])
    return shards


MODELS = {  # --model: (config, layout, default directory name)
    "pro-modelopt": (DSV4_PRO_CONFIG, "modelopt", "DeepSeek-V4-Pro-NVFP4"),
    "pro": (DSV4_PRO_PUBLIC, "public", "DeepSeek-V4-Pro-NVFP4"),
    "flash": (DSV4_FLASH_PUBLIC, "public", "DeepSeek-V4-Flash-NVFP4"),
}


def shard_names(count: int) -> list[str]:
    return [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


def write_sparse_shard(path: Path, tensors: list[tuple[str, str, tuple[int, ...]]]) -> int:
    """A valid safetensors file whose data region is a hole. Returns its apparent size."""
    header: dict = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, dtype, shape in tensors:
        size = DTYPE_BYTES[dtype]
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + size]}
        off += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # safetensors pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        f.truncate(8 + len(blob) + off)
    return 8 + len(blob) + off


def write_fixture(out: Path, config: dict, quant: dict | None = QUANT_CONFIG, layout: str = "modelopt") -> dict:
    """layout "modelopt": model_tensors + hf_quant_config.json `quant`; "public":
    public_tensors with its quantization_config (config.json) and hf_quant_config.json."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.safetensors"):
        old.unlink()
    if layout == "public":
        qc, quant = public_quant(config)
        config = {**config, "quantization_config": qc}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if quant is not None:
        (out / "hf_quant_config.json").write_text(json.dumps(quant, indent=2) + "\n")
    shards = public_tensors(config) if layout == "public" else model_tensors(config)
    names = shard_names(len(shards))
    weight_map, total = {}, 0
    for i, (name, tensors) in enumerate(zip(names, shards)):
        total += write_sparse_shard(out / name, tensors)
        used = os.stat(out / name).st_blocks * 512
        if i == 0 and used > 64 << 20:
            (out / name).unlink()
            sys.exit(f"error: {out} does not keep files sparse ({used >> 20} MiB on disk for one shard); pick another OUT_DIR")
        weight_map.update({t[0]: name for t in tensors})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    return {"shards": len(names), "tensors": len(weight_map), "apparent_bytes": total}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", type=Path, default=None, help=f"default: {DEFAULT_OUT.parent}/<model dir>")
    ap.add_argument("--model", choices=sorted(MODELS), default="pro-modelopt")
    ap.add_argument("--experts", type=int, default=None, help="routed experts (default: the model's)")
    ap.add_argument("--layers", type=int, default=None, help="layers (default: the model's)")
    a = ap.parse_args(argv)
    config, layout, dirname = MODELS[a.model]
    cfg = {**config, "n_routed_experts": a.experts or config["n_routed_experts"], "num_hidden_layers": a.layers or config["num_hidden_layers"]}
    a.out = a.out or (DEFAULT_OUT if a.model == "pro-modelopt" else DEFAULT_OUT.parent / "public" / dirname)
    info = write_fixture(a.out, cfg, layout=layout)
    used = sum(p.stat().st_blocks * 512 for p in a.out.iterdir())
    print(f"{a.out}: {info['shards']} shards, {info['tensors']} tensors, {info['apparent_bytes'] / 2**40:.2f} TiB apparent, {used / 2**20:.1f} MiB on disk")


if __name__ == "__main__":
    main()
