#!/usr/bin/env python3
"""Write the DeepSeek-V4-Pro NVFP4 *header* fixture: a checkpoint directory whose config.json,
hf_quant_config.json, model.safetensors.index.json and safetensors shards carry the real tensor
names, dtypes and shapes (tests/fixtures/dsv4_headers/README.md) but no data.

Each shard is a valid safetensors file written as a *sparse* file: the JSON header is written,
then the file is extended (truncate) to its full size, so the tensor data is a hole that reads
as zeros and takes no disk blocks. The full 61-layer, 384-expert model is ~0.9 TB of apparent
size and ~40 MB on disk (the headers). The script refuses to go on if the filesystem does not
keep the holes sparse.

    python scripts/make_dsv4_fixture.py [OUT_DIR] [--experts 384|256] [--layers 61]

`model_tensors(config)` is the naming scheme (DeepSeek-V3-style Hugging Face names with
ModelOpt NVFP4 tensors); the tests reuse it to write small synthetic checkpoints with real data.
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
DTYPE_BYTES = {"U8": 1, "F8_E4M3": 1, "BF16": 2, "F32": 4}

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


def write_fixture(out: Path, config: dict, quant: dict | None = QUANT_CONFIG) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.safetensors"):
        old.unlink()
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if quant is not None:
        (out / "hf_quant_config.json").write_text(json.dumps(quant, indent=2) + "\n")
    shards = model_tensors(config)
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
    ap.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--experts", type=int, default=DSV4_PRO_CONFIG["n_routed_experts"], help="routed experts (notes say 384; one says 256)")
    ap.add_argument("--layers", type=int, default=DSV4_PRO_CONFIG["num_hidden_layers"])
    a = ap.parse_args(argv)
    cfg = {**DSV4_PRO_CONFIG, "n_routed_experts": a.experts, "num_hidden_layers": a.layers}
    info = write_fixture(a.out, cfg)
    used = sum(p.stat().st_blocks * 512 for p in a.out.iterdir())
    print(f"{a.out}: {info['shards']} shards, {info['tensors']} tensors, {info['apparent_bytes'] / 2**40:.2f} TiB apparent, {used / 2**20:.1f} MiB on disk")


if __name__ == "__main__":
    main()
