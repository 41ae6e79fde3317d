"""`nvfp4-build plan`: checkpoint headers -> a manifest that is stable, complete, reports what no
family runs, fails clearly on bad checkpoints, and composes with `compile` / `verify`."""

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli
from nvfp4_aot.build.cli import main
from nvfp4_aot.build.manifest import load_manifest
from nvfp4_aot.build.plan import make_buckets, pick, vllm_capture_sizes
from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime.checkpoint import Checkpoint, name_patterns
from nvfp4_aot.runtime.layout import capacity
from nvfp4_aot.runtime.moe import DECODE_ORDER, PREFILL, prefill_table, prefill_tiers  # noqa: F401
from nvfp4_aot.runtime.moe import WORD_ORDER as MOE_WORD_ORDER

# problem values the runners spell for the store's op ids (act order natural, the served word order),
# left out of the keys the tests below compare
DEFAULTS = (("act_order", "natural"), ("word_order", "nibble"))
from synthetic_ckpt import EXPECTED_GEMMS, ROOT, SMALL_CONFIG, fixture, rewrite_tensor, set_config

# tile tables live beside their families
QUACK = get_family("quack_w4a16_gemm").tiles
DSV4_MANIFEST = ROOT / "manifests" / "deepseek_v4_pro_ep8.toml"


def plan(*args: str):
    r = CliRunner().invoke(main, ["plan", *map(str, args)])
    return r.exit_code, r.stdout, r.stderr


def plan_json(ckpt: Path, out: Path, *args: str) -> dict:
    code, stdout, stderr = plan(ckpt, "-o", out, "--json", *args)
    assert code == 0, stderr
    return json.loads(stdout)


# ----------------------------------------------------------------------------- buckets


def test_vllm_capture_sizes():
    assert vllm_capture_sizes(512) == [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)]
    assert vllm_capture_sizes(16) == [1, 2, 4, 8, 16]


def test_buckets_follow_the_tile_table_and_capture_padding():
    sizes = vllm_capture_sizes(512)
    got = [(lo, hi, t["tile_n"]) for lo, hi, t in make_buckets(QUACK, 8192, sizes, padded=True)]
    assert got == [(1, 16, 16), (17, 32, 32), (33, 64, 64), (65, 256, 128), (257, 8192, 256)]
    # a threshold between capture sizes: M = 17..20 runs the graph captured at 24
    table = ((20, {"t": "a"}), (None, {"t": "b"}))
    assert [(lo, hi) for lo, hi, _ in make_buckets(table, 64, sizes, padded=True)] == [(1, 16), (17, 64)]
    assert [(lo, hi) for lo, hi, _ in make_buckets(table, 64, sizes, padded=False)] == [(1, 20), (21, 64)]
    # above the largest capture size a batch runs eagerly at its own M: a row edge there is kept
    table = ((600, {"t": "a"}), (None, {"t": "b"}))
    assert [(lo, hi) for lo, hi, _ in make_buckets(table, 8192, sizes, padded=True)] == [(1, 600), (601, 8192)]


@settings(max_examples=40, deadline=None)
@given(cap=st.integers(1, 3000), sizes=st.lists(st.integers(1, 600), min_size=1, max_size=30), padded=st.booleans())
def test_buckets_are_contiguous_and_pick_the_padded_size(cap, sizes, padded):
    buckets = make_buckets(QUACK, cap, sizes, padded)
    assert buckets[0][0] == 1 and buckets[-1][1] == cap
    assert all(b[0] == a[1] + 1 for a, b in zip(buckets, buckets[1:]))
    assert all(a[2] != b[2] for a, b in zip(buckets, buckets[1:]))  # merged
    srt = sorted(s for s in set(sizes) if s <= cap)
    for lo, hi, t in buckets:
        for m in {lo, hi, (lo + hi) // 2}:
            eff = next((s for s in srt if s >= m), m) if padded else m
            assert t == pick(QUACK, eff)


# ----------------------------------------------------------------------------- plan


def test_plan_is_stable_and_complete(small_ckpt, tmp_path):
    a, b = tmp_path / "a" / "small.toml", tmp_path / "b" / "small.toml"
    summary = plan_json(small_ckpt, a)
    plan_json(small_ckpt, b)
    assert a.read_text() == b.read_text()  # byte-stable
    m = load_manifest(a)
    assert summary["variants"] == len(m.variants())
    assert summary["per_arch"] == {arch: len([v for v in m.variants() if v.arch == arch]) for arch in ("sm_90a", "sm_100a")}
    # (a loaded op's problem spells every default; act_order "natural" is left out of the key here)
    ops = {(op.family, tuple(sorted((k, v) for k, v in op.problem.items() if (k, v) not in DEFAULTS))): op
           for op in m.ops}
    T, top_k = 8192, SMALL_CONFIG["num_experts_per_tok"]
    unsupported = summary["unsupported"]
    # Blackwell: an NVFP4 x NVFP4 GEMM per dense (N, K) (Nvfp4Linear.ops; routed experts go to
    # MoERunner's grouped path) for every token count; the N = 192 one is reported instead
    for (n, k), roles in EXPECTED_GEMMS.items():
        key = ("quack_nvfp4_gemm", (("k", k), ("n", n)))
        cap = T
        if n % 128:
            assert key not in ops
            assert any(u.startswith(f"sm_100a: quack_nvfp4_gemm cannot implement n={n}, k={k}") and "narrow_proj" in u for u in unsupported)
            continue
        bw = ops[key]
        assert bw.archs == ("sm_100a",) and bw.buckets[0].lo == 1 and bw.buckets[-1].hi == cap
    # Hopper: Nvfp4Linear's w4a16_gemm (+ quack_w4a16_gemm above M = 64) per dense (N, K) whose
    # K the W4A16 layout takes (multiples of 256); the others are reported, and no quack is
    # planned where Nvfp4Linear cannot open w4a16_gemm
    hopper = {(op.family, op.problem["n"], op.problem["k"]) for op in m.ops if op.archs == ("sm_90a",)}
    # stacked GEMMs (q_a + kv 256 x 256, dense gate_up 768 x 256) get quack's per-row-alpha kernel
    # too: Nvfp4Linear picks it when the parts' global scales differ (only the data says)
    assert hopper == {("w4a16_gemm", 256, 256), ("w4a16_gemm", 768, 256), ("w4a16_gemm", 192, 256),
                      ("quack_w4a16_gemm", 256, 256), ("quack_w4a16_gemm", 768, 256),
                      ("quack_w4a16_rowalpha_gemm", 256, 256), ("quack_w4a16_rowalpha_gemm", 768, 256)}
    for (fam, n, k) in hopper:
        op = ops[(fam, (("k", k), ("n", n)))]
        assert op.buckets[0].lo == 1 and op.buckets[-1].hi == T  # dense uses only: tokens
    assert any(u.startswith("sm_90a: quack_w4a16_gemm cannot implement n=192, k=256") and "runs w4a16_gemm for every M" in u for u in unsupported)
    for n, k, who in ((128, 128, "q_b_proj"), (256, 128, "shared_experts.down_proj"), (256, 384, "mlp.down_proj")):
        assert any(u.startswith(f"sm_90a: w4a16_gemm cannot implement n={n}, k={k}") and who in u for u in unsupported)
    # routed experts: the MoE down_proj has K = 128, so MoERunner gets nothing on sm_90a (it
    # needs all six ops); on sm_100a it gets its six (MoERunner.ops), grouped rows padded to 128
    assert not any(op.family.startswith("moe_") or "grouped" in op.family for op in m.ops if "sm_90a" in op.archs)
    assert any(u.startswith("sm_90a: w4a16_grouped_gemm cannot implement n=256, k=128, experts=8") for u in unsupported)
    assert "sm_90a: MoERunner h=256, i=128: nothing planned for it (it needs all 6 ops) <- model.layers.{1-2}.mlp.experts.{0-7}" in unsupported
    bw_moe = [(op.family, op.buckets[-1].hi) for op in m.ops if op.family.startswith("moe_") or "grouped" in op.family]
    cap = (T * top_k + 8 * 127) // 128 * 128  # route's capacity at pad 128, 8 local experts
    assert bw_moe == [("moe_route", T), ("moe_permute_quantize", T), ("quack_nvfp4_grouped_gemm", cap),
                      ("moe_silu_mul_quantize", cap), ("quack_nvfp4_grouped_gemm", cap), ("moe_combine", T)]
    assert all(op.archs == ("sm_100a",) for op in m.ops if op.family.startswith("moe_") or "grouped" in op.family)
    # activation quantize + global scale for every dense input width, Blackwell only (W4A16 takes bf16)
    for k in {k for _, k in EXPECTED_GEMMS}:
        cap = T
        for fam, extra in (("nvfp4_quantize", (("sf_layout", "swizzled"),)), ("nvfp4_global_scale", ())):
            op = next(o for o in m.ops if o.family == fam and o.problem["k"] == k)
            assert op.archs == ("sm_100a",) and op.buckets[-1].hi == cap
            assert all(op.problem[x] == v for x, v in extra)
    assert len(m.ops) == 3 * 2 + 5 + 3 + 2 + 2 + 6  # quantize + global scale per K; Blackwell GEMMs; w4a16; quack_w4a16 (+ row alpha); sm_100a MoE
    assert any("fp8_proj.weight: FP8 weight" in u for u in unsupported)
    # comments name the tensors and layers each variant serves
    text = a.read_text()
    assert "model.layers.{1-2}.mlp.experts.{0-7}.gate_proj + up_proj (stacked along N: gate_up_proj)" in text
    assert "model.layers.{0-2}.self_attn.q_a_proj + kv_a_proj_with_mqa" in text
    assert text.rstrip().splitlines()[-1].startswith("#   model.layers.{0-2}.self_attn.o_a_proj.weight")


# Every W4A16 constraint met (K multiples of 256): attention q_a + kv (512 x 512), q_b (256 x 256),
# o_b (512 x 256), dense MLP (1024 x 512, 512 x 512), shared + routed (512 x 512, 512 x 256).
HOPPER_CONFIG = {**SMALL_CONFIG, "hidden_size": 512, "moe_intermediate_size": 256, "intermediate_size": 512,
                 "q_lora_rank": 256, "kv_lora_rank": 256, "head_dim": 128, "o_lora_rank": 128}


@pytest.fixture(scope="module")
def hopper_ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hopper") / "hopper-ckpt"
    fixture.write_fixture(root, HOPPER_CONFIG)  # headers only: plan reads nothing else
    return root


def test_hopper_plan_covers_what_the_runtime_opens(hopper_ckpt, tmp_path):
    """The sm_90a ops are exactly what runtime/linear.py Nvfp4Linear and runtime/moe.py
    MoERunner open, with buckets from 1 to every token count their missing() checks."""
    s = plan_json(hopper_ckpt, tmp_path / "h.toml", "--ep-size", "2", "--max-num-batched-tokens", "1024")
    assert s["unsupported"] == []
    T, top_k, E = 1024, HOPPER_CONFIG["num_experts_per_tok"], HOPPER_CONFIG["n_routed_experts"] // 2
    h, i = HOPPER_CONFIG["hidden_size"], HOPPER_CONFIG["moe_intermediate_size"]
    dense = {(512, 512), (256, 256), (512, 256), (1024, 512)}  # attention, dense MLP, shared expert
    want = {("w4a16_gemm", (("k", k), ("n", n))): T for n, k in dense}
    want |= {("quack_w4a16_gemm", (("k", k), ("n", n))): T for n, k in dense}
    want |= {("quack_w4a16_rowalpha_gemm", (("k", k), ("n", n))): T for n, k in ((512, 512), (1024, 512))}  # stacked
    # MoERunner's GEMMs in its default word order (runtime/moe.py WORD_ORDER), Nvfp4Linear's in nibble
    wo = (("word_order", MOE_WORD_ORDER),) if MOE_WORD_ORDER != "nibble" else ()
    want |= {  # MoERunner: route / permute / combine on tokens, the rest on tokens x top-k rows
        ("moe_route", (("experts", E), ("pad", 1), ("topk", top_k))): T,
        # the decode path's GEMM inputs in DECODE_ORDER (runtime/layout.py), written by permute / silu
        ("moe_permute", (("act_order", DECODE_ORDER), ("experts", E), ("h", h), ("pad", 1), ("topk", top_k))): T,
        ("w4a16_grouped_gemm", (("act_order", DECODE_ORDER), ("experts", E), ("k", h), ("n", 2 * i)) + wo): T * top_k,
        # limit: the SwiGLU clamp (none here); decode's silu writes quad order on the slots, the
        # prefill tiers' one (natural) covers the largest padded rows
        ("moe_silu_mul", (("act_order", DECODE_ORDER), ("i", i), ("limit", 0.0))): T * top_k,
        ("moe_silu_mul", (("i", i), ("limit", 0.0))): capacity(T, top_k, E, max(p for _, _, p in prefill_tiers(E, top_k))),
        ("w4a16_grouped_gemm", (("act_order", DECODE_ORDER), ("experts", E), ("k", i), ("n", h)) + wo): T * top_k,
        ("moe_combine", (("h", h), ("topk", top_k))): T,
    }
    for _, _, p in prefill_tiers(E, top_k):  # the prefill path per tier: route pad 1 = ours, else quack's tile_n
        gemm = (("w4a16_ws_grouped_gemm", wo) if p == 1 else ("quack_w4a16_grouped_gemm", (("tile_n", p),)))
        want |= {
            ("moe_route", (("experts", E), ("pad", p), ("topk", top_k))): T,
            ("moe_permute", (("experts", E), ("h", h), ("pad", p), ("topk", top_k))): T,
            (gemm[0], (("experts", E), ("k", h), ("n", 2 * i)) + gemm[1]): capacity(T, top_k, E, p),
            (gemm[0], (("experts", E), ("k", i), ("n", h)) + gemm[1]): capacity(T, top_k, E, p),
        }
    tiers = prefill_tiers(E, top_k)
    assert len(tiers) == len(prefill_table()) and tiers[-1][0] < T  # every tier reachable here
    # (DEFAULTS, spelled by the runners for the store's op ids, are left out of the key here)
    got = {(o["family"], tuple(sorted((k, v) for k, v in o["problem"].items() if (k, v) not in DEFAULTS))): o
           for o in s["ops"] if "sm_90a" in o["archs"]}
    assert set(got) == set(want)
    for key, cap in want.items():
        b = got[key]["buckets"]
        assert "sm_90a" in got[key]["archs"] and b[0][0] == 1 and b[-1][1] == cap, key
        assert all(y[0] == x[1] + 1 for x, y in zip(b, b[1:])), key
    # the MoE ops come in the runner's launch order, after the dense GEMMs
    moe = [o["family"] for o in s["ops"] if "sm_90a" in o["archs"] and (o["family"].startswith("moe_") or "grouped" in o["family"])]
    # (the unpadded tier's route is the decode path's: one op)
    ours = ["moe_permute", "w4a16_ws_grouped_gemm", "w4a16_ws_grouped_gemm"]
    quack = ["moe_route", "moe_permute", "quack_w4a16_grouped_gemm", "quack_w4a16_grouped_gemm"] * (len(tiers) - 1)
    assert moe == ["moe_route", "moe_permute", "w4a16_grouped_gemm", "moe_silu_mul", "w4a16_grouped_gemm", "moe_combine"] + ours + quack + ["moe_silu_mul"]
    # Blackwell: Nvfp4Linear's block-scaled GEMM per dense (N, K), MoERunner's sm_100a ops per MoE shape
    bw = {(o["problem"]["n"], o["problem"]["k"]): o for o in s["ops"] if o["family"] == "quack_nvfp4_gemm"}
    assert set(bw) == dense and all(o["buckets"][-1][1] == T for o in bw.values())
    assert {o["family"] for o in s["ops"] if "sm_100a" in o["archs"]} == {
        "quack_nvfp4_gemm", "nvfp4_quantize", "nvfp4_global_scale", "moe_route", "moe_permute_quantize",
        "quack_nvfp4_grouped_gemm", "moe_silu_mul_quantize", "moe_combine"}
    combine = next(o for o in s["ops"] if o["family"] == "moe_combine")
    assert combine["archs"] == ["sm_90a", "sm_100a"]  # one op, both runners
    # tunings: manifests/default.toml's tables, by shape
    m = load_manifest(tmp_path / "h.toml")
    ops = {(op.family, tuple(sorted((k, v) for k, v in op.problem.items() if (k, v) != ("word_order", "nibble")))): op
           for op in m.ops}
    for (n, k) in dense:
        table = get_family("w4a16_gemm").tile_table({"n": n, "k": k})
        for bk in ops[("w4a16_gemm", (("act_order", "natural"), ("k", k), ("n", n)))].buckets:
            assert pick(table, bk.hi).items() <= dict(bk.params).items()
    # MoERunner's decode L1 reads quad order: the quad table (split 'n' where natural has 'wg'),
    # its edges in token-slots per expert (5, 8 and 24: the ring's tail up to 24) times the E local experts
    grouped = ops[("w4a16_grouped_gemm", (("act_order", DECODE_ORDER), ("experts", E), ("k", h), ("n", 2 * i)) + wo)]
    assert [(bk.lo, bk.hi) for bk in grouped.buckets] == [(1, 5 * E), (5 * E + 1, 8 * E), (8 * E + 1, 24 * E),
                                                          (24 * E + 1, T * top_k)]
    fam = get_family("w4a16_grouped_gemm")
    quad = fam.tile_table({"experts": E, "act_order": DECODE_ORDER})
    assert quad == tuple((t and t * E, tuning) for t, tuning in fam.quad_slot_tiles)
    assert all(pick(quad, bk.hi).items() <= dict(bk.params).items() for bk in grouped.buckets)
    text = (tmp_path / "h.toml").read_text()
    assert "# moe_route experts=4 topk=2 pad=1: MoERunner (runtime/moe.py)" in text
    assert "model.layers.{1-2}.mlp.experts.{0-7}  [routed experts: 4 local, top-2, hidden 512, intermediate 256; EP rank r of 2 holds experts 4r..4r+3]" in text


def test_plan_is_the_runners_declarations(hopper_ckpt, tmp_path):
    """Every planned op is one a serving class declares (Nvfp4Linear.ops, MoERunner.ops), on the
    archs that declare it, and every declared op of a served shape is planned: a change to a
    runner's op list, padding or threshold changes the plan with it."""
    from nvfp4_aot.runtime.linear import Nvfp4Linear
    from nvfp4_aot.runtime.moe import MoERunner

    plan_json(hopper_ckpt, tmp_path / "h.toml", "--ep-size", "2", "--max-num-batched-tokens", "1024")
    m = load_manifest(tmp_path / "h.toml")
    h, i, E, top_k = 512, 256, 4, HOPPER_CONFIG["num_experts_per_tok"]
    dense = {(512, 512), (256, 256), (512, 256), (1024, 512)}
    declared: dict = {}
    for arch in ("sm_90a", "sm_100a"):
        stacked = {(512, 512), (1024, 512)}  # q_a + kv / shared gate_up, dense gate_up: one or several scales
        decls = MoERunner.ops(h, i, E, top_k, arch, max_tokens=1024) + [d for n, k in dense for one in ({True, False} if (n, k) in stacked else {True})
                                                       for d in Nvfp4Linear.ops(n, k, arch, one_scale=one)]
        for d in decls:
            declared.setdefault((d.family, tuple(sorted(d.problem.items()))), set()).add(arch)
    planned = {(op.family, tuple(sorted(op.problem.items()))): set(op.archs) for op in m.ops}
    assert planned == declared


def test_discovery_counts_every_gemm(small_ckpt):
    gemms = Checkpoint(small_ckpt).discovery.gemms
    # 3 layers x (fused q_a+kv, q_b, o_b) + narrow_proj + dense (gate_up, down) + 2 MoE layers x (shared 2 + 8 experts x 2)
    assert len(gemms) == 9 + 1 + 2 + 2 * (2 + 8 * 2)
    assert {(g.n, g.k) for g in gemms} == set(EXPECTED_GEMMS)
    for (n, k), roles in EXPECTED_GEMMS.items():
        assert {g.role for g in gemms if (g.n, g.k) == (n, k)} == roles


def test_ep_rank_changes_comments_not_variants(small_ckpt, tmp_path):
    every = plan_json(small_ckpt, tmp_path / "all.toml", "--ep-size", "4")
    one = plan_json(small_ckpt, tmp_path / "r1.toml", "--ep-size", "4", "--ep-rank", "1")
    assert every["ops"] == one["ops"] and every["variants"] == one["variants"]
    text = (tmp_path / "r1.toml").read_text()
    assert "model.layers.{1-2}.mlp.experts.{2-3}.down_proj" in text and "EP rank 1 of 4 holds experts 2-3" in text
    assert "EP rank r of 4 holds experts 2r..2r+1" in (tmp_path / "all.toml").read_text()
    code, _, err = plan(small_ckpt, "--ep-size", "3")
    assert code == 2 and "--ep-size 3 does not divide the 8 routed experts" in err
    code, _, err = plan(small_ckpt, "--ep-size", "4", "--ep-rank", "4")
    assert code == 2 and "--ep-rank 4" in err


def test_capture_sizes_and_token_cap_options(small_ckpt, hopper_ckpt, tmp_path):
    s = plan_json(small_ckpt, tmp_path / "m.toml", "--max-num-batched-tokens", "48", "--capture-sizes", "1,2,4,8,24,48")
    ops = {(o["family"], o["problem"].get("n"), o["problem"].get("k")): o for o in s["ops"]}
    # padded: 17..24 runs at 24 -> tile_n 32 (quack), 9..16 at 24 -> the M > 16 row (w4a16)
    assert ops[("quack_w4a16_gemm", 768, 256)]["buckets"] == [[1, 8], [9, 24], [25, 48]]
    assert ops[("w4a16_gemm", 768, 256)]["buckets"] == [[1, 8], [9, 48]]
    assert ops[("quack_nvfp4_gemm", 256, 256)]["buckets"] == [[1, 48]]  # dense: tokens (routed experts: MoERunner)
    grouped = [o for o in s["ops"] if o["family"] == "quack_nvfp4_grouped_gemm"]
    assert {o["buckets"][-1][1] for o in grouped} == {(48 * 2 + 8 * 127) // 128 * 128}  # grouped rows, pad 128
    assert "# Token buckets: CUDA-graph capture sizes [1, 2, 4, 8, 24, 48]" in (tmp_path / "m.toml").read_text()
    s = plan_json(hopper_ckpt, tmp_path / "h.toml", "--arch", "sm_90a", "--max-num-batched-tokens", "200", "--capture-sizes", "1,8,120,200")
    ops = {o["family"]: o for o in s["ops"]}
    assert ops["moe_route"]["buckets"] == [[1, 120], [121, 200]]  # tokens, padded: 121..128 run at 200
    # token-slots, unpadded, edges at 5, 8 and 24 slots per expert x 8 local experts
    assert ops["w4a16_grouped_gemm"]["buckets"] == [[1, 40], [41, 64], [65, 192], [193, 400]]
    # prefill: rows padded to the largest pad a T <= 200 reaches (8 experts, top-2: only the
    # unpadded w4a16_ws tier, so no quack grouped GEMM and silu's rows are T x top-k)
    assert [p for _, _, p in prefill_tiers(8, 2, 200)] == [1]
    assert ops["moe_silu_mul"]["buckets"] == [[1, 128], [129, capacity(200, 2, 8, 1)]]
    assert not [o for o in s["ops"] if o["family"] == "quack_w4a16_grouped_gemm"]
    assert {o["buckets"][-1][1] for o in s["ops"] if o["family"] == "w4a16_ws_grouped_gemm"} == {400}
    s = plan_json(hopper_ckpt, tmp_path / "d.toml", "--arch", "sm_90a", "--max-num-batched-tokens", "128")
    assert not [o for o in s["ops"] if o["family"] == "quack_w4a16_grouped_gemm"]  # no quack tier: 128 tokens < 512 = 128 slots x 8 experts / top-2
    assert {o["problem"]["pad"] for o in s["ops"] if o["family"] == "moe_route"} == {1}


def test_rot_plan_is_what_the_rot_runners_open(hopper_ckpt, tmp_path):
    """`plan --word-order rot`: every sm_90a op of the checkpoint is one MoERunner / Nvfp4Linear with
    word_order="rot" declares (our GEMMs with word_order rot, the decode path in act order quad, no quack
    family: quack reads nibble only), the header says so, and the nibble plan's ops differ only there."""
    from nvfp4_aot.runtime.linear import Nvfp4Linear
    from nvfp4_aot.runtime.moe import DECODE_ORDERS, MoERunner

    s = plan_json(hopper_ckpt, tmp_path / "r.toml", "--arch", "sm_90a", "--ep-size", "2",
                  "--max-num-batched-tokens", "1024", "--word-order", "rot")
    # (w4a16_ws_gemm's tables do not fit the tiny 256 x 256 / 512 x 256 layers: w4a16_gemm serves them at every M)
    assert all("w4a16_ws_gemm cannot implement" in u and "runs w4a16_gemm for every M" in u for u in s["unsupported"])
    assert "word order 'rot'" in (tmp_path / "r.toml").read_text().split("[[op]]")[0]
    got = {(o["family"], tuple(sorted(o["problem"].items()))) for o in s["ops"]}
    assert not [f for f, _ in got if f.startswith("quack_")]
    ours = [dict(p) for f, p in got if f.startswith("w4a16_")]
    assert ours and all(p["word_order"] == "rot" for p in ours)
    assert {p["act_order"] for p in ours if "experts" in p and "act_order" in p} == {DECODE_ORDERS["rot"]}
    E, top_k = HOPPER_CONFIG["n_routed_experts"] // 2, HOPPER_CONFIG["num_experts_per_tok"]
    h, i = HOPPER_CONFIG["hidden_size"], HOPPER_CONFIG["moe_intermediate_size"]
    moe = MoERunner.ops(h, i, E, top_k, "sm_90a", max_tokens=1024, word_order="rot")
    assert {(d.family, tuple(sorted(d.problem.items()))) for d in moe} <= got
    dense = [d for n, k in ((512, 512), (256, 256), (512, 256), (1024, 512))  # attention, dense MLP, shared expert
             for d in Nvfp4Linear.ops(n, k, "sm_90a", word_order="rot") if d.keyed == "gemm"]
    keys = {(d.family, tuple(sorted(d.problem.items()))): d for d in dense}
    assert {key for key, d in keys.items() if not d.optional} <= got
    assert {key for key in got if key[0] == "w4a16_ws_gemm"} <= set(keys)


def test_rotq_plan_is_nvfp4linears_with_moerunners_default(hopper_ckpt, tmp_path):
    """`plan --word-order rotq`: the order is Nvfp4Linear's alone (runtime/word_order.py for_runner), so the dense
    GEMMs read rotq and MoERunner's ops are those of its default order; the header says which runner takes it."""
    from nvfp4_aot.runtime.linear import Nvfp4Linear
    from nvfp4_aot.runtime.moe import MoERunner

    s = plan_json(hopper_ckpt, tmp_path / "q.toml", "--arch", "sm_90a", "--ep-size", "2",
                  "--max-num-batched-tokens", "1024", "--word-order", "rotq")
    assert "weights of Nvfp4Linear in blob word order 'rotq'" in (tmp_path / "q.toml").read_text().split("[[op]]")[0]
    got = {(o["family"], tuple(sorted(o["problem"].items()))) for o in s["ops"]}
    E, top_k = HOPPER_CONFIG["n_routed_experts"] // 2, HOPPER_CONFIG["num_experts_per_tok"]
    h, i = HOPPER_CONFIG["hidden_size"], HOPPER_CONFIG["moe_intermediate_size"]
    moe = {(d.family, tuple(sorted(d.problem.items()))) for d in MoERunner.ops(h, i, E, top_k, "sm_90a", max_tokens=1024)}
    assert moe <= got and not [p for f, p in moe if dict(p).get("word_order") == "rotq"]
    dense = {(d.family, tuple(sorted(d.problem.items()))) for n, k in ((512, 512), (256, 256), (512, 256), (1024, 512))
             for d in Nvfp4Linear.ops(n, k, "sm_90a", word_order="rotq") if d.keyed == "gemm" and not d.optional}
    assert dense <= got and all(dict(p)["word_order"] == "rotq" for _, p in dense)
    assert {dict(p)["word_order"] for f, p in got - moe if f.startswith("w4a16_")} == {"rotq"}


def test_token_counts_beyond_a_family_are_reported(small_ckpt, tmp_path):
    s = plan_json(small_ckpt, tmp_path / "m.toml", "--arch", "sm_90a", "--max-num-batched-tokens", "70000")
    quack = next(o for o in s["ops"] if o["family"] == "quack_w4a16_gemm" and o["problem"] == {"n": 256, "k": 256})
    assert quack["buckets"][-1] == [257, 65536]
    assert "quack_w4a16_gemm n=256, k=256: token counts 65537..70000 exceed the family's max_m 65536; its buckets stop at 65536" in s["unsupported"]
    assert not any(u.startswith("sm_100a") for u in s["unsupported"])  # only the planned arch reports
    code, out, _ = plan(small_ckpt, "--arch", "sm_90a")  # no -o: the manifest on stdout
    assert code == 0 and out.startswith("# Generated by `nvfp4-build plan`") and "[[op]]" in out


def test_name_patterns():
    names = [f"model.layers.{i}.mlp.experts.{e}.down_proj" for i in (0, 1, 2, 5) for e in range(4)] + ["lm_head"]
    assert name_patterns(names) == ["lm_head", "model.layers.{0-2,5}.mlp.experts.{0-3}.down_proj"]


# ----------------------------------------------------------------------------- bad checkpoints


def _truncate(root: Path):
    p = root / "model-00002-of-00004.safetensors"
    p.write_bytes(p.read_bytes()[:-100])


def _garbage(root: Path):
    (root / "model-00003-of-00004.safetensors").write_bytes(b"\x00\xff" * 64)


BAD = {
    "truncated shard": (_truncate, "model-00002-of-00004.safetensors: not a readable safetensors file, corrupt or truncated"),
    "corrupt header": (_garbage, "model-00003-of-00004.safetensors: not a readable safetensors file, corrupt or truncated"),
    "missing shard": (lambda r: (r / "model-00004-of-00004.safetensors").unlink(), "model-00004-of-00004.safetensors: missing shard"),
    "no config": (lambda r: (r / "config.json").unlink(), "config.json: cannot read config.json"),
    "wrong dtype weight_scale_2": (
        lambda r: rewrite_tensor(r, "model.layers.1.self_attn.q_b_proj.weight_scale_2", torch.ones((), dtype=torch.bfloat16)),
        "model.layers.1.self_attn.q_b_proj.weight_scale_2: dtype BF16, expected F32",
    ),
    "wrong dtype weight": (
        lambda r: rewrite_tensor(r, "model.layers.2.mlp.shared_experts.down_proj.weight", torch.zeros(256, 64, dtype=torch.int8)),
        "model.layers.2.mlp.shared_experts.down_proj.weight: dtype I8, expected U8",
    ),
    "wrong shape weight_scale": (
        lambda r: rewrite_tensor(r, "model.layers.0.mlp.down_proj.weight_scale", torch.zeros(256, 12, dtype=torch.float8_e4m3fn)),
        "model.layers.0.mlp.down_proj.weight_scale: shape [256, 12], expected [256, 24]",
    ),
    "expert count": (lambda r: set_config(r, n_routed_experts=16), "model.layers.1.mlp.experts.8.down_proj.weight: missing or not NVFP4 (config.json n_routed_experts = 16"),
    "missing scale": (
        lambda r: rewrite_tensor(r, "model.layers.2.mlp.experts.5.up_proj.weight_scale", None),
        "model.layers.2.mlp.experts.5.up_proj.weight_scale: missing from the checkpoint",
    ),
    "missing expert weight": (
        lambda r: rewrite_tensor(r, "model.layers.2.mlp.experts.5.up_proj.weight", None),
        "model.layers.2.mlp.experts.5.up_proj.weight: missing or not NVFP4 (config.json n_routed_experts = 8; layer 2 has NVFP4 up_proj for experts 0-4,6-7)",
    ),
    "index names a tensor no shard has": (
        lambda r: (r / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {**json.loads((r / "model.safetensors.index.json").read_text())["weight_map"], "x.weight": "model-00001-of-00004.safetensors"}})
        ),
        "x.weight: model.safetensors.index.json puts it in model-00001-of-00004.safetensors, not in any shard",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_checkpoint_fails_clearly(ckpt_copy, case):
    damage, message = BAD[case]
    damage(ckpt_copy)
    code, out, err = plan(ckpt_copy, "--ep-size", "2")
    assert code == 6, (code, err)
    assert message in err, err
    assert "Traceback" not in err and out == ""


def test_no_nvfp4_tensors_is_a_clear_error(tmp_path):
    root = tmp_path / "bf16"
    root.mkdir()
    from safetensors.torch import save_file

    save_file({"model.layers.0.mlp.down_proj.weight": torch.zeros(8, 8, dtype=torch.bfloat16)}, str(root / "model.safetensors"))
    (root / "config.json").write_text("{}")
    code, _, err = plan(root)
    assert code == 6 and "no NVFP4 linears" in err  # a checkpoint problem (exit 6), not usage


# ----------------------------------------------------------------------------- compose, DSV4


@pytest.mark.slow
def test_plan_then_compile_builds_exactly_the_planned_variants(small_ckpt, tmp_path):
    manifest, out = tmp_path / "small_plan.toml", tmp_path / "artifacts"
    r = run_cli("plan", str(small_ckpt), "--max-num-batched-tokens", "16", "-o", str(manifest), "--json")
    planned = json.loads(r.stdout)
    r = run_cli("compile", str(manifest), "-o", str(out), "-j", "2", "--json")
    built = json.loads(r.stdout)["manifests"]["small_plan"]
    assert built["variants"] == planned["variants"] == len(built["built"]) and not built["failed"]
    assert planned["per_arch"] == {"sm_90a": 10, "sm_100a": 18}  # + quack row-alpha for stacked GEMMs, + MoERunner's sm_100a path
    r = run_cli("verify", str(out), "--json")
    assert json.loads(r.stdout)["ok"]
    index = json.loads((out / "index.json").read_text())
    assert len(index["entries"]) == planned["variants"]
    assert len(index["manifests"]["small_plan"]["ops"]) == len(planned["ops"])


@pytest.fixture(scope="module")
def dsv4_plan(tmp_path_factory):
    """The DeepSeek-V4-Pro header fixture, regenerated, planned as the README says."""
    root = tmp_path_factory.mktemp("dsv4") / "DeepSeek-V4-Pro-NVFP4"
    fixture.main([str(root)])
    out = root.parent / DSV4_MANIFEST.name
    summary = plan_json(root, out, "--arch", "sm_90a,sm_100a", "--ep-size", "8", "--max-num-batched-tokens", "8192")
    return out, summary


@pytest.mark.slow
def test_dsv4_manifest_is_what_plan_produces(dsv4_plan):
    out, summary = dsv4_plan
    assert out.read_text() == DSV4_MANIFEST.read_text(), "re-run the commands in tests/fixtures/dsv4_headers/README.md"
    # sm_90a: w4a16_ws_gemm for the five shapes, which Nvfp4Linear's default path serves at every M above
    # its decode range (kernels/w4a16_ws/tiles.py WS_OVER_QUACK), and every family's tile-table rows above
    # the largest capture size (512) as their own buckets (an eager batch runs at its own M)
    assert summary["per_arch"] == {"sm_90a": 77, "sm_100a": 34}  # session 34: + 2 (down / o_b 33-48 and 49-64 on their own stages), session 25: + 2 (the decode ring without tail above 24 slots per expert), session 24: - 6 (MoERunner in word order rot: no quack tier), session 8: + 4 stream-K buckets, session 9: + 2 gate+up, session 10: - 2 (merged 129-256 buckets), session 11: - 1 (q_a+kv 257-512 one bucket; tiles.py), session 16: - 22 (no quack kernel for q_a+kv / q_b, o_b's buckets above 256 merged), session 17: - 16 (no quack kernel for any of the five; + 3 ws buckets at 17-32, + 2 gate+up 1025-1536, + 4 at 1-16 / 17-32 on q_a+kv and q_b)
    ops = summary["ops"]
    ws = {(o["problem"]["n"], o["problem"]["k"]) for o in ops if o["family"] == "w4a16_ws_gemm"}
    assert ws == {(2048, 7168), (6144, 7168), (7168, 3072), (7168, 2048), (65536, 1536)}
    dense = {(2048, 7168), (65536, 1536), (7168, 2048), (6144, 7168), (7168, 3072)}  # attention + shared expert
    # no quack dense kernel: WS_OVER_QUACK has ours at every M on all five shapes (session 17)
    gemms = {(o["problem"]["n"], o["problem"]["k"]): o for o in ops if o["family"] == "w4a16_gemm"}
    assert set(gemms) == dense and all(o["archs"] == ["sm_90a"] and o["buckets"][-1][1] == 8192 for o in gemms.values())
    assert not [o for o in ops if o["family"] in ("quack_w4a16_gemm", "quack_w4a16_rowalpha_gemm")]
    grouped = {(o["problem"]["n"], o["problem"]["k"], o["problem"]["experts"]): o for o in ops if o["family"] == "w4a16_grouped_gemm"}
    assert set(grouped) == {(6144, 7168, 48), (7168, 3072, 48)}  # routed L1 / L2, 48 local experts
    assert all(o["buckets"] == [[1, 240], [241, 384], [385, 1152], [1153, 8192 * 6]] for o in grouped.values())  # t = 5, 8, 24 x 48
    glue = [(o["family"], o["problem"], o["buckets"][-1][1], o["archs"]) for o in ops if o["family"].startswith("moe_")]
    cap = (8192 * 6 + 48 * 127) // 128 * 128
    assert glue == [
        ("moe_route", {"experts": 48, "topk": 6, "pad": 1}, 8192, ["sm_90a"]),
        # the decode path writes its GEMM inputs in DECODE_ORDER (runtime/layout.py), on the slots
        ("moe_permute", {"h": 7168, "topk": 6, "experts": 48, "pad": 1, "act_order": DECODE_ORDER}, 8192, ["sm_90a"]),
        ("moe_silu_mul", {"i": 3072, "limit": 0.0, "act_order": DECODE_ORDER}, 8192 * 6, ["sm_90a"]),
        ("moe_combine", {"h": 7168, "topk": 6}, 8192, ["sm_90a", "sm_100a"]),
        # the sm_90a prefill tier (word order rot: one): unpadded (w4a16_ws, decode's route, a natural-order permute)
        ("moe_permute", {"h": 7168, "topk": 6, "experts": 48, "pad": 1, "act_order": "natural"}, 8192, ["sm_90a"]),
        # its natural silu on every row (nibble's second tier, padded to 256, would raise it to the padded rows)
        ("moe_silu_mul", {"i": 3072, "limit": 0.0, "act_order": "natural"}, 8192 * 6, ["sm_90a"]),
        ("moe_route", {"experts": 48, "topk": 6, "pad": 128}, 8192, ["sm_100a"]),  # the sm_100a path's, pad 128
        ("moe_permute_quantize", {"h": 7168, "topk": 6, "experts": 48, "pad": 128}, 8192, ["sm_100a"]),
        ("moe_silu_mul_quantize", {"i": 3072, "limit": 0.0}, cap, ["sm_100a"]),  # this fixture's config has no swiglu_limit
    ]
    bw_grouped = {(o["problem"]["n"], o["problem"]["k"]): o for o in ops if o["family"] == "quack_nvfp4_grouped_gemm"}
    assert set(bw_grouped) == {(6144, 7168), (7168, 3072)} and all(o["buckets"][-1][1] == cap for o in bw_grouped.values())
    quant = [o for o in ops if o["family"] in ("nvfp4_quantize", "nvfp4_global_scale")]
    assert {o["problem"]["k"] for o in quant} == {7168, 3072, 1536, 2048} and all(o["archs"] == ["sm_100a"] for o in quant)
    assert summary["unsupported"] == []  # every GEMM has a Hopper and a Blackwell family now
    blackwell = {(o["problem"]["n"], o["problem"]["k"]): o for o in ops if o["family"] == "quack_nvfp4_gemm"}
    assert set(blackwell) == dense and blackwell[(6144, 7168)]["buckets"][-1] == [257, 8192]  # dense: tokens
    text = out.read_text()
    assert "model.layers.{0-60}.mlp.experts.{0-383}.gate_proj + up_proj" in text
    assert "EP rank r of 8 holds experts 48r..48r+47" in text


@pytest.mark.slow
def test_dsv4_manifest_compiles_and_verifies(tmp_path):
    out = tmp_path / "artifacts"
    r = run_cli("compile", str(DSV4_MANIFEST), "-o", str(out), "-j", "2", "--json")
    s = json.loads(r.stdout)["manifests"]["deepseek_v4_pro_ep8"]
    # the count plan wrote into the manifest's header (test_dsv4_manifest_is_what_plan_produces pins that)
    planned = sum(int(x) for x in re.search(r"^# Variants: sm_90a (\d+), sm_100a (\d+)", DSV4_MANIFEST.read_text(),
                                            re.M).groups())
    assert s["variants"] == len(s["built"]) == planned and not s["failed"]
    assert json.loads(run_cli("verify", str(out), "--json").stdout)["ok"]
    n_ops = len(re.findall(r"^\[\[op\]\]", DSV4_MANIFEST.read_text(), re.M))
    assert len(json.loads((out / "index.json").read_text())["manifests"]["deepseek_v4_pro_ep8"]["ops"]) == n_ops
