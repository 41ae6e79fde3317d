"""A small synthetic NVFP4 checkpoint with real data: DeepSeek-V4 naming (the same scheme as
scripts/make_dsv4_fixture.py), small dims, random codes and scales, real dtypes.

Layer 0 is dense (MLP gate/up/down), layers 1-2 MoE (8 routed experts, top-k 2, one shared
expert). Layer 0 also carries two tensors no family runs: an FP8 linear (another quant
format) and an NVFP4 linear with N = 192 (quack_w4a16_gemm needs N % 128 == 0).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_dsv4_fixture", ROOT / "scripts" / "make_dsv4_fixture.py")
fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture)  # type: ignore[union-attr]

SMALL_CONFIG = {
    **fixture.DSV4_PRO_CONFIG,
    "model_type": "deepseek_v4",
    "hidden_size": 256,
    "moe_intermediate_size": 128,
    "n_routed_experts": 8,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "first_k_dense_replace": 1,
    "intermediate_size": 384,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "head_dim": 64,
    "q_lora_rank": 128,
    "kv_lora_rank": 128,
    "o_lora_rank": 64,
    "o_groups": 2,
    "vocab_size": 512,
}
EXTRA = [  # (shard index, tensors): formats and shapes no family runs
    (0, [("model.layers.0.self_attn.fp8_proj.weight", "F8_E4M3", (128, 256)), ("model.layers.0.self_attn.fp8_proj.weight_scale", "F32", ())]),
    (0, fixture.nvfp4_linear("model.layers.0.self_attn.narrow_proj", 192, 256)),
]
# The GEMMs the small model runs, (N, K), worked out by hand from SMALL_CONFIG:
EXPECTED_GEMMS = {
    (256, 256): {"attn", "shared", "routed"},  # q_a 128 + kv_a 128; gate_up 2 x 128
    (128, 128): {"attn"},  # q_b: 2 heads x 64 <- q_lora 128
    (256, 128): {"attn", "shared", "routed"},  # o_b <- 2 groups x 64; down <- 128
    (768, 256): {"dense"},  # dense gate_up 2 x 384
    (256, 384): {"dense"},  # dense down
    (192, 256): {"attn"},  # narrow_proj (no family: n % 128)
}


# The public DeepSeek-V4 NVFP4 layout (fixture.public_tensors), small: layer 0 hash-routed with a
# sliding window only, layer 1 compress ratio 4 (compressor + indexer), layer 2 ratio 128, one
# MTP block with MXFP4 experts.
SMALL_PUBLIC = {  # K of both expert GEMMs a multiple of 256: the Hopper grouped GEMM's K chunk
    **fixture.DSV4_FLASH_PUBLIC,
    "hidden_size": 512,
    "moe_intermediate_size": 256,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 3,
    "num_hash_layers": 1,
    "num_attention_heads": 2,
    "head_dim": 128,
    "q_lora_rank": 128,
    "o_lora_rank": 64,
    "o_groups": 2,
    "index_n_heads": 2,
    "index_head_dim": 64,
    "hc_mult": 2,
    "vocab_size": 64,
    "compress_ratios": [0, 4, 128, 0],
}


def _random(dtype: str, shape, gen: torch.Generator) -> torch.Tensor:
    if dtype == "I8":
        return torch.randint(-128, 128, shape, generator=gen, dtype=torch.int32).to(torch.int8)
    if dtype == "F8_E8M0":  # exponents 2^-8 .. 2^2
        return torch.randint(119, 130, shape, generator=gen, dtype=torch.int32).to(torch.uint8).view(torch.float8_e8m0fnu)
    if dtype == "I64":
        return torch.randint(0, 8, shape, generator=gen, dtype=torch.int64)
    if dtype == "U8":
        return torch.randint(0, 256, shape, generator=gen, dtype=torch.int32).to(torch.uint8)
    if dtype == "F8_E4M3":  # finite, positive E4M3 bytes (0x00..0x7E), with some zero/subnormal
        return torch.randint(0, 0x7F, shape, generator=gen, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn)
    if dtype == "F32":
        return (torch.rand(shape, generator=gen) + 0.5) * 2.0 ** float(torch.randint(-12, -4, (), generator=gen))
    return torch.randn(shape, generator=gen).to(torch.bfloat16)


def write_synthetic(root: Path, config: dict | None = None, seed: int = 0) -> Path:
    """Write the checkpoint into `root` (created) and return it."""
    config = config or SMALL_CONFIG
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    shards = fixture.model_tensors(config)
    for idx, extra in EXTRA:
        shards[idx] = shards[idx] + extra
    # ModelOpt gives gate/up of one MLP the same global scale (vLLM fuses them); q_a and
    # kv_a keep their own (two global scales, as in DeepSeek-V4).
    _write_shards(root, shards, gen, "up_proj.weight_scale_2", ("up_proj", "gate_proj"))
    (root / "config.json").write_text(json.dumps(config, indent=1))
    (root / "hf_quant_config.json").write_text(json.dumps(fixture.QUANT_CONFIG, indent=1))
    return root


def _write_shards(root: Path, shards, gen, tied_suffix: str, tie: tuple[str, str]) -> None:
    """Random data for every header-listed tensor, shard by shard, plus the index. A tensor
    whose name ends with `tied_suffix` copies its twin (name with tie[0] -> tie[1]): the global
    scale two stacked projections share."""
    weight_map = {}
    for name, tensors in zip(fixture.shard_names(len(shards)), shards):
        data = {n: _random(dt, shape, gen) for n, dt, shape in tensors}
        for n in list(data):
            if n.endswith(tied_suffix):
                data[n] = data[n.replace(*tie)].clone()
        save_file(data, str(root / name), metadata={"format": "pt"})
        weight_map.update({n: name for n in data})
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))


def write_public_synthetic(root: Path, config: dict | None = None, seed: int = 0, release: bool = False) -> Path:
    """The public DeepSeek-V4 NVFP4 layout with random data (w1 and w3 of an expert share
    weight_scale_2, as the producer writes them); returns `root`. `release`: DeepSeek's own
    release instead (MXFP4 experts everywhere, block-FP8 quantization_config, no NVFP4)."""
    config = config or SMALL_PUBLIC
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    qc, hf = fixture.public_quant(config)
    if release:
        qc = {k: qc[k] for k in ("activation_scheme", "fmt", "quant_method", "scale_fmt", "weight_block_size")}
    shards = fixture.public_tensors(config, "mxfp4" if release else "nvfp4")
    _write_shards(root, shards, gen, ".w3.weight_scale_2", (".w3.", ".w1."))
    (root / "config.json").write_text(json.dumps({**config, "quantization_config": qc}, indent=1))
    if not release:
        (root / "hf_quant_config.json").write_text(json.dumps(hf, indent=1))
    return root


def rewrite_tensor(root: Path, name: str, value: torch.Tensor | None) -> None:
    """Replace (or with None, remove) one tensor of a written checkpoint, index included."""
    from safetensors.torch import load_file

    index_path = root / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shard = root / index["weight_map"][name]
    data = load_file(str(shard))
    if value is None:
        del data[name], index["weight_map"][name]
        index_path.write_text(json.dumps(index, indent=1))
    else:
        data[name] = value
    save_file(data, str(shard), metadata={"format": "pt"})


def set_config(root: Path, **changes) -> None:
    p = root / "config.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), **changes}, indent=1))
