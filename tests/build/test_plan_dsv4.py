"""`plan` on the public DeepSeek-V4 NVFP4 layout (block FP8 + NVFP4 routed experts + MXFP4 MTP
experts): the committed Pro EP8 and Flash EP4 manifests are what `plan` writes from the header
fixtures, list what vLLM serves, compile and verify; and the checkpoint-input cases of issue 13
(config fields, expert shapes vs config, shard paths, NVFP4-listed modules) fail with exit 6 and
a message naming the field or tensor."""

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from conftest import run_cli
from nvfp4_aot.build.cli import main
from nvfp4_aot.runtime.moe import DECODE_ORDER
from nvfp4_aot.runtime.moe import WORD_ORDER as MOE_WORD_ORDER
from nvfp4_aot.runtime.checkpoint import Checkpoint, CheckpointError, vllm_module
from synthetic_ckpt import ROOT, SMALL_PUBLIC, rewrite_tensor, set_config

MANIFESTS = {"pro": ROOT / "manifests" / "dsv4_pro_nvfp4_ep8.toml", "flash": ROOT / "manifests" / "dsv4_flash_nvfp4_ep4.toml"}
EP = {"pro": 8, "flash": 4}
SHAPES = {"pro": (7168, 3072, 384, 61), "flash": (4096, 2048, 256, 43)}  # hidden, moe_intermediate, experts, layers


def plan(*args):
    r = CliRunner().invoke(main, ["plan", *map(str, args)])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def planned(dsv4_public, tmp_path_factory):
    out = {}
    for model, root in dsv4_public.items():
        path = tmp_path_factory.mktemp("plans") / MANIFESTS[model].name
        code, stdout, stderr = plan(root, "--arch", "sm_90a,sm_100a", "--ep-size", EP[model], "--max-num-batched-tokens", 8192, "-o", path, "--json")
        assert code == 0, stderr
        out[model] = (path, json.loads(stdout), stderr)
    return out


@pytest.mark.parametrize("model", ["pro", "flash"])
def test_committed_manifest_is_what_plan_writes(planned, model):
    path, summary, stderr = planned[model]
    assert path.read_text() == MANIFESTS[model].read_text(), "re-run the commands in tests/fixtures/dsv4_headers/README.md"
    h, i, e, layers = SHAPES[model]
    local = e // EP[model]
    ops = {(o["family"], tuple(sorted(o["problem"].items()))): o for o in summary["ops"]}
    hopper = {k for k, o in ops.items() if "sm_90a" in o["archs"]}
    q, nat = ("act_order", DECODE_ORDER), ("act_order", "natural")  # decode: DECODE_ORDER; prefill: natural
    w = ("word_order", MOE_WORD_ORDER)  # our GEMMs' blob word order: MoERunner's default (runtime/moe.py WORD_ORDER)
    assert hopper == {
        ("moe_route", (("experts", local), ("pad", 1), ("topk", 6))),
        ("moe_permute", (q, ("experts", local), ("h", h), ("pad", 1), ("topk", 6))),
        ("w4a16_grouped_gemm", (q, ("experts", local), ("k", h), ("n", 2 * i), w)),
        ("moe_silu_mul", (q, ("i", i), ("limit", 10.0))),  # config.json swiglu_limit: clamped SwiGLU
        ("w4a16_grouped_gemm", (q, ("experts", local), ("k", i), ("n", h), w)),
        ("moe_combine", (("h", h), ("topk", 6))),
        ("moe_silu_mul", (nat, ("i", i), ("limit", 10.0))),  # the prefill tiers' one
    } | {  # the unpadded prefill tier: natural-order permute, our w4a16_ws grouped L1 / L2 (route: decode's)
        ("moe_permute", (nat, ("experts", local), ("h", h), ("pad", 1), ("topk", 6))),
        ("w4a16_ws_grouped_gemm", (("experts", local), ("k", h), ("n", 2 * i), w)),
        ("w4a16_ws_grouped_gemm", (("experts", local), ("k", i), ("n", h), w)),
    } | ({  # word order nibble only: the padded tier, route / permute padded to 256, quack's grouped L1 / L2
        ("moe_route", (("experts", local), ("pad", 256), ("topk", 6))),
        ("moe_permute", (nat, ("experts", local), ("h", h), ("pad", 256), ("topk", 6))),
        ("quack_w4a16_grouped_gemm", (("experts", local), ("k", h), ("n", 2 * i), ("tile_n", 256))),
        ("quack_w4a16_grouped_gemm", (("experts", local), ("k", i), ("n", h), ("tile_n", 256))),
    } if MOE_WORD_ORDER == "nibble" else set())  # MoERunner's ops only: nothing else in these checkpoints is NVFP4
    assert not [o for o in summary["ops"] if o["family"] in ("w4a16_gemm", "quack_w4a16_gemm")]
    blackwell = {k for k, o in ops.items() if "sm_100a" in o["archs"]}
    assert blackwell == {  # runtime/moe_sm100.py's path, groups padded to 128, the clamp in silu_q
        ("moe_route", (("experts", local), ("pad", 128), ("topk", 6))),
        ("moe_permute_quantize", (("experts", local), ("h", h), ("pad", 128), ("topk", 6))),
        ("quack_nvfp4_grouped_gemm", (("experts", local), ("k", h), ("n", 2 * i))),
        ("moe_silu_mul_quantize", (("i", i), ("limit", 10.0))),  # config.json swiglu_limit: clamped SwiGLU
        ("quack_nvfp4_grouped_gemm", (("experts", local), ("k", i), ("n", h))),
        ("moe_combine", (("h", h), ("topk", 6))),
    }
    assert summary["per_arch"] == {"sm_90a": 26, "sm_100a": 12}  # session 24: - 6 (word order rot: no quack tier), session 25: + 2 (the decode ring without tail above 24 slots per expert)
    assert summary["unsupported"] == []
    text = path.read_text()
    assert f"layers.{{0-{layers - 1}}}.ffn.experts.{{0-{e - 1}}}.w1 + w3 (stacked along N: gate_up_proj)" in text
    assert f"EP rank r of {EP[model]} holds experts {local}r..{local}r+{local - 1}" in text


@pytest.mark.parametrize("model", ["pro", "flash"])
def test_vllm_served_layers_are_listed_not_unsupported(planned, model):
    path, summary, stderr = planned[model]
    served = summary["served_by_vllm"]
    fp8, mx, plain = served
    last = SHAPES[model][3] - 1
    assert "vLLM's Fp8LinearMethod" in fp8 and f"layers.{{0-{last}}}.attn.wq_a" in fp8 and f"layers.{{0-{last}}}.ffn.shared_experts.w1" in fp8
    assert "mtp.0.e_proj" in fp8 and "indexer.wq_b" in fp8
    assert mx.startswith(f"mtp.0.ffn.experts.{{0-{SHAPES[model][2] - 1}}}.w1") and "Mxfp4MoEMethod" in mx
    assert "embed" in plain and "head" in plain and f"layers.{{0-{last}}}.ffn.gate" in plain
    assert "# Served by vLLM's own kernels" in path.read_text() and "served by vLLM: " in stderr


def test_public_checkpoint_groups_and_vllm_names(dsv4_public):
    ck = Checkpoint(dsv4_public["flash"])
    assert ck.layout == "dsv4_mixed"
    fmt = {g.prefix: (g.fmt, g.vllm) for g in ck.discovery.groups}
    assert fmt["layers.3.ffn.experts.17.w1"] == ("nvfp4", "model.layers.3.ffn.experts")
    assert fmt["layers.3.attn.wq_a"] == ("fp8_block", "model.layers.3.attn.fused_wqa_wkv")
    assert fmt["layers.3.ffn.shared_experts.w2"] == ("fp8_block", "model.layers.3.ffn.shared_experts.down_proj")
    assert fmt["layers.3.attn.compressor.wgate"] == ("unquantized", "model.layers.3.attn.compressor.fused_wkv_wgate")
    assert fmt["mtp.0.ffn.experts.5.w2"] == ("mxfp4", "model.layers.43.ffn.experts")  # the MTP draft model's layer 43
    assert fmt["head"] == ("unquantized", "lm_head")
    assert vllm_module("layers.0.ffn.shared_experts.w3") == "model.layers.0.ffn.shared_experts.gate_up_proj"
    # the published size: 913 GB for Pro (sum of the shards' sizes, data included as holes)
    ck = Checkpoint(dsv4_public["pro"])
    assert round(sum(p.stat().st_size for p in ck.root.glob("*.safetensors")) / 1e9) == 913


@pytest.mark.parametrize("ep,ok", [(1, True), (2, True), (8, True), (3, False), (5, False)])
def test_ep_sizes_must_divide_the_experts(small_public, tmp_path, ep, ok):
    code, _, err = plan(small_public, "--ep-size", ep, "-o", tmp_path / "m.toml")
    if ok:
        assert code == 0, err
    else:  # an option that does not fit the checkpoint: a usage error
        assert code == 2 and f"--ep-size {ep} does not divide the 8 routed experts" in err


@pytest.mark.slow
def test_public_manifests_compile_and_verify(tmp_path):
    """Both committed manifests in full (76 variants: 52 sm_90a, 24 sm_100a; ~3 min on 2 cores;
    the sm_100a ones are compiled, linked and verified only: no Blackwell GPU here)."""
    out = tmp_path / "artifacts"
    r = run_cli("compile", *map(str, MANIFESTS.values()), "-o", str(out), "-j", "2", "--json")
    built = json.loads(r.stdout)["manifests"]
    for model, path in MANIFESTS.items():
        s = built[path.stem]
        assert s["variants"] == len(s["built"]) == 38 and not s["failed"], s
    assert json.loads(run_cli("verify", str(out), "--json").stdout)["ok"]
    index = json.loads((out / "index.json").read_text())
    for path in MANIFESTS.values():
        assert len(index["manifests"][path.stem]["ops"]) == len(re.findall(r"^\[\[op\]\]", path.read_text(), re.M))


# ----------------------------------------------------------------------------- bad input (issue 13)


def _index(root: Path, **shard_of: str) -> None:
    p = root / "model.safetensors.index.json"
    index = json.loads(p.read_text())
    index["weight_map"].update(shard_of)
    p.write_text(json.dumps(index))


def _fp8_expert(root: Path) -> None:
    name = "layers.1.ffn.experts.3.w1"
    for suffix in ("weight_scale", "weight_scale_2", "input_scale"):
        rewrite_tensor(root, f"{name}.{suffix}", None)
    rewrite_tensor(root, f"{name}.weight", torch.zeros(256, 512, dtype=torch.float8_e4m3fn))


def _narrow_expert(root: Path) -> None:
    name = "layers.1.ffn.experts.5.w2"
    rewrite_tensor(root, f"{name}.weight", torch.zeros(512, 64, dtype=torch.uint8))
    rewrite_tensor(root, f"{name}.weight_scale", torch.zeros(512, 8, dtype=torch.float8_e4m3fn))


BAD = {
    "non-integer n_routed_experts": (lambda r: set_config(r, n_routed_experts="8"), 'config.json: n_routed_experts = "8" is not a positive integer'),
    "float top-k": (lambda r: set_config(r, num_experts_per_tok=2.5), "config.json: num_experts_per_tok = 2.5 is not a positive integer"),
    "K differs from hidden_size": (lambda r: set_config(r, hidden_size=1024), "layers.0.ffn.experts.0.w1.weight: K = 512 (weight [N, K/2] = [256, 256]), but config.json hidden_size = 1024"),
    "one expert with another K": (_narrow_expert, "layers.1.ffn.experts.5.w2.weight: [N, K] = [512, 128], but expert 0 has [512, 256]"),
    "intermediate differs": (lambda r: set_config(r, moe_intermediate_size=64), "layers.0.ffn.experts.0.w1.weight: N = 256 (weight [N, K/2] = [256, 256]), but config.json moe_intermediate_size = 64"),
    "shard path ../x": (lambda r: _index(r, **{"layers.0.ffn.experts.0.w1.weight": "../x.safetensors"}), "shard path '../x.safetensors' (for layers.0.ffn.experts.0.w1.weight) is not a relative path inside the checkpoint directory"),
    "absolute shard path": (lambda r: _index(r, **{"head.weight": "/etc/passwd"}), "shard path '/etc/passwd' (for head.weight) is not a relative path inside the checkpoint directory"),
    "listed NVFP4, FP8-shaped": (_fp8_expert, "layers.1.ffn.experts.3.w1.weight: F8_E4M3 [256, 512], but hf_quant_config.json lists layers.1.ffn.experts as NVFP4"),
    "no top-k": (lambda r: set_config(r, num_experts_per_tok=None), "config.json: routed experts found but no num_experts_per_tok"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_public_checkpoint_is_exit_6_naming_the_field_or_tensor(public_copy, tmp_path, case):
    damage, message = BAD[case]
    damage(public_copy)
    code, out, err = plan(public_copy, "--ep-size", "2", "-o", tmp_path / "m.toml")
    assert code == 6, (code, err)
    assert message in err, err
    assert "Traceback" not in err and not (tmp_path / "m.toml").exists()


def test_deepseek_release_without_nvfp4_is_exit_6(tmp_path):
    from synthetic_ckpt import write_public_synthetic

    root = write_public_synthetic(tmp_path / "release", release=True)
    assert Checkpoint(root).layout == "modelopt" and {g.fmt for g in Checkpoint(root).discovery.groups} == {"fp8_block", "mxfp4", "unquantized"}
    code, _, err = plan(root)
    assert code == 6 and "no NVFP4 linears" in err and "Traceback" not in err


def test_shard_symlink_inside_is_followed(public_copy, tmp_path):
    """Hugging Face's cache keeps shards as symlinks into ../../blobs: followed (the index's own
    strings are what is checked)."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    shard = next(public_copy.glob("model-00001-*.safetensors"))
    target = blobs / "abc123"
    shard.rename(target)
    shard.symlink_to(target)
    assert Checkpoint(public_copy).layout == "dsv4_mixed"


def test_dsv4_weights_refuse_unequal_w1_w3_scale(public_copy):
    from nvfp4_aot.runtime.weights import load_moe_experts

    rewrite_tensor(public_copy, "layers.2.ffn.experts.6.w3.weight_scale_2", torch.tensor(0.5))
    ck = Checkpoint(public_copy)
    load_moe_experts(ck, 2, 2, 0, layouts=())  # experts 0-3: untouched
    with pytest.raises(CheckpointError, match=r"layers\.2\.ffn\.experts\.6\.w3\.weight_scale_2 = 0\.5 differs from layers\.2\.ffn\.experts\.6\.w1\.weight_scale_2"):
        load_moe_experts(ck, 2, 2, 1, layouts=())


def test_dsv4_weights_read_only_the_ranks_experts(small_public, monkeypatch):
    from nvfp4_aot.runtime import weights

    ck = Checkpoint(small_public)
    read = []
    real = weights._Files.get
    monkeypatch.setattr(weights._Files, "get", lambda self, name: read.append(name) or real(self, name))
    moe = weights.load_moe_experts(ck, 1, ep_size=4, ep_rank=3, layouts=("quack_w4a16",))
    assert moe.local_to_global.tolist() == [6, 7] and moe.w13.q.shape == (2, 2 * SMALL_PUBLIC["moe_intermediate_size"], SMALL_PUBLIC["hidden_size"] // 2)
    assert {n.rsplit(".", 1)[0] for n in read} == {f"layers.1.ffn.experts.{e}.{w}" for e in (6, 7) for w in ("w1", "w3", "w2")}
    assert weights.load_layer(ck, 1, 4, 3, layouts=())["experts"].ep_rank == 3 and len(weights.load_layer(ck, 1, 4, 3, layouts=())) == 1
