"""Weight loading: checkpoint -> kernel layouts, bit-exact, per EP rank, with clear errors."""

import textwrap

import pytest
from conftest import run_without_cutlass
import torch
from safetensors.torch import load_file

from nvfp4_aot.kernels.nvfp4_quantize.ref import unswizzle_sf
from nvfp4_aot.kernels.quack_w4a16.prepare import unprepare_weights
from nvfp4_aot.runtime.checkpoint import Checkpoint, CheckpointError
from nvfp4_aot.runtime.weights import load_layer, load_linear, load_moe_experts
from synthetic_ckpt import SMALL_CONFIG, rewrite_tensor, set_config

E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])
H, I, E = SMALL_CONFIG["hidden_size"], SMALL_CONFIG["moe_intermediate_size"], SMALL_CONFIG["n_routed_experts"]


@pytest.fixture(scope="module")
def raw(small_ckpt):
    """Every tensor of the checkpoint, read with safetensors directly (not the loader)."""
    out = {}
    for f in sorted(small_ckpt.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def deq_ckpt(raw, prefix):
    """The checkpoint's own dequantization: e2m1(code) * e4m3(scale) * weight_scale_2."""
    q, sf, ws2 = raw[f"{prefix}.weight"], raw[f"{prefix}.weight_scale"], raw[f"{prefix}.weight_scale_2"]
    codes = torch.stack([q & 15, q >> 4], dim=-1).reshape(q.shape[0], -1).long()
    vals = E2M1[codes].view(q.shape[0], -1, 16) * sf.float().unsqueeze(-1)
    return vals.reshape(q.shape[0], -1) * ws2.float()


def deq_layout(q, sf, row_alpha):
    codes = torch.stack([q & 15, q >> 4], dim=-1).reshape(q.shape[0], -1).long()
    vals = E2M1[codes].view(q.shape[0], -1, 16) * sf.view(torch.float8_e4m3fn).float().unsqueeze(-1)
    return vals.reshape(q.shape[0], -1) * row_alpha.unsqueeze(1)


def check_exact(stack_q, stack_sf, blob, strip, sf_swz, row_alpha, want):
    """Both kernel layouts dequantize to exactly the checkpoint's values."""
    n = want.shape[0]
    q, sf = unprepare_weights(blob, strip)
    assert torch.equal(deq_layout(q, sf, row_alpha), want)  # quack W4A16 layout
    assert torch.equal(deq_layout(stack_q, unswizzle_sf(sf_swz, n), row_alpha), want)  # Blackwell layout
    assert sf_swz.shape == (-(-n // 128) * 128, want.shape[1] // 16)


@pytest.mark.parametrize("ep_size,ep_rank", [(1, 0), (4, 0), (4, 3)])
def test_moe_experts_bit_exact_per_rank(small_ckpt, raw, ep_size, ep_rank):
    ck = Checkpoint(small_ckpt)
    moe = load_moe_experts(ck, 2, ep_size, ep_rank)
    per = E // ep_size
    assert moe.local_to_global.tolist() == list(range(ep_rank * per, (ep_rank + 1) * per))
    g2l = moe.global_to_local.tolist()
    assert [g2l[g] for g in moe.local_to_global.tolist()] == list(range(per))
    assert sum(x >= 0 for x in g2l) == per
    assert moe.w13.q.shape == (per, 2 * I, H // 2) and moe.w2.q.shape == (per, H, I // 2)
    for i, g in enumerate(moe.local_to_global.tolist()):
        p = f"model.layers.2.mlp.experts.{g}"
        want13 = torch.cat([deq_ckpt(raw, f"{p}.gate_proj"), deq_ckpt(raw, f"{p}.up_proj")])
        w = moe.w13
        check_exact(w.q[i], w.sf[i], w.blob[i], w.strip[i], w.sf_swizzled[i], w.row_alpha()[i], want13)
        assert torch.equal(w.dequantize(i), want13)
        assert w.alpha[i] == raw[f"{p}.gate_proj.weight_scale_2"]  # gate and up share it
        want2 = deq_ckpt(raw, f"{p}.down_proj")
        w = moe.w2
        check_exact(w.q[i], w.sf[i], w.blob[i], w.strip[i], w.sf_swizzled[i], w.row_alpha()[i], want2)
        assert w.alpha[i] == raw[f"{p}.down_proj.weight_scale_2"]


def test_fused_linear_with_two_global_scales(small_ckpt, raw):
    ck = Checkpoint(small_ckpt)
    parts = ["model.layers.1.self_attn.q_a_proj", "model.layers.1.self_attn.kv_a_proj_with_mqa"]
    lw = load_linear(ck, parts, n=[128, 128], k=H)
    want = torch.cat([deq_ckpt(raw, p) for p in parts])
    check_exact(lw.q, lw.sf, lw.blob, lw.strip, lw.sf_swizzled, lw.row_alpha(), want)
    assert torch.equal(lw.dequantize(), want)
    assert lw.rows == (128, 128) and lw.weight_scale_2.shape == (2,)
    with pytest.raises(CheckpointError, match="q_a_proj \\+ .*kv_a_proj_with_mqa: the stacked parts have different weight_scale_2"):
        lw.alpha


def test_load_layer_gives_every_planned_gemm(small_ckpt, raw):
    ck = Checkpoint(small_ckpt)
    for layer in range(SMALL_CONFIG["num_hidden_layers"]):
        got = load_layer(ck, layer, ep_size=2, ep_rank=1)
        gemms = [g for g in ck.discovery.gemms if g.layer == layer and g.role != "routed"]
        assert set(got) - {"experts"} == {g.name for g in gemms}
        assert ("experts" in got) == (layer >= SMALL_CONFIG["first_k_dense_replace"])
        for g in gemms:
            lw = got[g.name]
            assert (lw.n, lw.k) == (g.n, g.k) and lw.parts == g.parts
            assert lw.blob.shape == (g.n // 64, g.k // 64, 128, 16) and lw.strip.shape == (g.n // 64, g.k // 64, 32, 4, 2)
            want = torch.cat([deq_ckpt(raw, p) for p in g.parts])
            assert torch.equal(lw.dequantize(), want)
    shared = load_layer(ck, 1)["model.layers.1.mlp.shared_experts.gate_up_proj"]
    assert shared.alpha.shape == (1,) and shared.alpha == raw["model.layers.1.mlp.shared_experts.gate_proj.weight_scale_2"]


def test_layouts_are_optional(small_ckpt):
    lw = load_linear(Checkpoint(small_ckpt), "model.layers.0.self_attn.q_b_proj", layouts=())
    assert lw.blob is None and lw.strip is None and lw.sf_swizzled is None and lw.q.shape == (128, 64)
    with pytest.raises(ValueError, match="unknown layout 'sm120'"):
        load_linear(Checkpoint(small_ckpt), "model.layers.0.self_attn.q_b_proj", layouts=("sm120",))


# ----------------------------------------------------------------------------- errors


def test_expert_count_mismatch(ckpt_copy):
    set_config(ckpt_copy, n_routed_experts=16)
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.mlp\.experts\.8\.gate_proj\.weight: missing \(layer 1 expert 8 of config\.json n_routed_experts = 16"):
        load_moe_experts(Checkpoint(ckpt_copy), 1, 2, 1)
    set_config(ckpt_copy, n_routed_experts=4)
    with pytest.raises(CheckpointError, match=r"experts\.4\.gate_proj\.weight: expert 4 exists but config\.json n_routed_experts = 4"):
        load_moe_experts(Checkpoint(ckpt_copy), 1)


def test_wrong_dtype_and_shape_name_the_tensor(ckpt_copy):
    name = "model.layers.1.mlp.experts.6.down_proj.weight_scale"
    rewrite_tensor(ckpt_copy, name, torch.ones(H, I // 16, dtype=torch.float32))
    with pytest.raises(CheckpointError, match=rf"{name}: dtype F32, expected F8_E4M3 \(NVFP4 block scales"):
        load_moe_experts(Checkpoint(ckpt_copy), 1, 4, 3)
    load_moe_experts(Checkpoint(ckpt_copy), 1, 4, 0)  # other ranks never read that tensor
    set_config(ckpt_copy, moe_intermediate_size=64)
    with pytest.raises(CheckpointError, match=r"experts\.0\.gate_proj\.weight: shape \[128, 128\], expected \[64, 128\]"):
        load_moe_experts(Checkpoint(ckpt_copy), 2)


def test_missing_tensor_and_bad_ep(ckpt_copy):
    ck = Checkpoint(ckpt_copy)
    with pytest.raises(ValueError, match="ep_size=3 must divide the 8 routed experts"):
        load_moe_experts(ck, 1, 3, 0)
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.mlp\.nope\.weight: missing from the checkpoint"):
        load_linear(ck, "model.layers.0.mlp.nope")
    rewrite_tensor(ckpt_copy, "model.layers.2.mlp.experts.1.gate_proj.weight_scale_2", None)
    with pytest.raises(CheckpointError, match=r"experts\.1\.gate_proj\.weight_scale_2: missing"):
        load_moe_experts(Checkpoint(ckpt_copy), 2, 4, 0)


def test_truncated_shard(ckpt_copy):
    p = ckpt_copy / "model-00003-of-00004.safetensors"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="model-00003-of-00004.safetensors: not a readable safetensors file, corrupt or truncated"):
        Checkpoint(ckpt_copy)


def test_weights_never_import_cutlass_or_build(small_ckpt):
    r = run_without_cutlass(textwrap.dedent(f"""
        from nvfp4_aot.runtime.checkpoint import Checkpoint
        from nvfp4_aot.runtime.weights import load_layer
        print(sorted(load_layer(Checkpoint({str(small_ckpt)!r}), 1, 2, 0)))
    """))
    assert r.returncode == 0, r.stderr
    assert "experts" in r.stdout
