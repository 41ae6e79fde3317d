"""MoERunner end to end on the CPU, every op replaced by its family's torch reference
(tests/runtime/ref_store.py): the runners' wiring (argument order, buffer views, offsets,
scale layouts, global scales) for both archs, on small shapes (E 4, H 256, I 256, top-2).

sm_90a is compared with the float64 reference of the dequantized model (bound 1e-2, as on the
GPU). sm_100a quantizes activations to NVFP4 twice, so it is compared with a quantization-aware
float64 reference (the same activations quantized with the same global scales via the
quantize reference) at 1e-2, and with the unquantized reference at a loose bound; it has never
run on a Blackwell GPU (none here): these tests check its logic only."""

import pytest
import torch

from nvfp4_aot.kernels.moe_glue.ref import make_routing, silu_mul_ref
from nvfp4_aot.kernels.nvfp4_quantize.ref import dequantize_ref, quantize_ref
from nvfp4_aot.kernels.quack_w4a16.prepare import dequantize, random_nvfp4_weights
from nvfp4_aot.runtime import ArgumentError, MoERunner
from nvfp4_aot.runtime import moe
from nvfp4_aot.runtime.moe import moe_ref
from nvfp4_aot.runtime.weights import BLOB_LAYOUT

from nvfp4_aot.runtime.errors import MissingVariantError  # noqa: E402
from ref_store import RefStore  # tests/runtime is on sys.path (rootdir-style test modules)

E, H, I, TOPK = 4, 256, 256, 2


def _layer(seed):
    g = torch.Generator().manual_seed(seed)
    w13, s13, w2, s2 = zip(*[(*random_nvfp4_weights(2 * I, H, g, "cpu"), *random_nvfp4_weights(H, I, g, "cpu"))
                            for _ in range(E)])
    a13 = torch.tensor([1.0 / (dequantize(q, s).float().pow(2).mean().sqrt() * H**0.5) for q, s in zip(w13, s13)])
    a2 = torch.tensor([1.0 / (dequantize(q, s).float().pow(2).mean().sqrt() * I**0.5) for q, s in zip(w2, s2)])
    f8 = torch.float8_e4m3fn
    t = dict(w13=torch.stack(w13), w13_scale=torch.stack(s13).view(f8), w13_scale_2=a13,
             w2=torch.stack(w2), w2_scale=torch.stack(s2).view(f8), w2_scale_2=a2)

    def ew(e):
        return (dequantize(t["w13"][e], t["w13_scale"][e].view(torch.uint8)).double() * float(a13[e]),
                dequantize(t["w2"][e], t["w2_scale"][e].view(torch.uint8)).double() * float(a2[e]))

    return t, ew


def _batch(m, seed, mode):
    ids, start = make_routing(m, TOPK, E, seed, mode)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((m, H), generator=g).to(torch.bfloat16)
    w = torch.rand((m, TOPK), generator=g)
    return x, ids, (w / w.sum(1, keepdim=True)).contiguous(), start


def _rel(got, want):
    return ((got.double() - want).norm() / want.norm()).item()


@pytest.mark.parametrize("mode", ["uniform", "local", "skewed", "one_expert", "empty_experts"])
def test_hopper_runner_matches_fp64(mode):
    t, ew = _layer(1)
    runner = MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=64, device="cpu")
    for m in (1, 5, 37):
        x, ids, w, start = _batch(m, 10 + m, mode)
        runner.expert_start.fill_(start)
        out = runner(x, ids, w)
        want = moe_ref(x, ids, w, ew, E, start)
        if want.norm() > 0:
            assert _rel(out, want) <= 1e-2, (mode, m)


def test_hopper_runner_clamped_swiglu():
    """swiglu_limit (DeepSeek-V4: 10): the runner opens moe_silu_mul with that limit and matches
    the clamped float64 reference; with x scaled up, gate/up cross the limit (the unclamped
    reference is far off). sm_100a: test_blackwell_runner_clamped_swiglu."""
    t, ew = _layer(2)
    runner = MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=64, device="cpu", swiglu_limit=10.0)
    assert runner.silu.params.limit == 10.0 and runner.silu.params.act_order == moe.DECODE_ORDER
    x, ids, w, start = _batch(37, 5, "uniform")
    x = (x.float() * 6).to(torch.bfloat16)
    runner.expert_start.fill_(start)
    out = runner(x, ids, w)
    assert _rel(out, moe_ref(x, ids, w, ew, E, start, swiglu_limit=10.0)) <= 1e-2
    assert _rel(out, moe_ref(x, ids, w, ew, E, start)) > 5e-2


def _quant_aware_ref(x, ids, w, ew, start, gs1, gs2, ratio=None, limit=0.0):
    """moe_ref with the activations NVFP4-quantized where the sm_100a path quantizes them (per
    token row, so gathering first or not is the same), h1 and the silu output rounded to bf16
    where the kernels store bf16; `ratio[e]` (optional) scales expert e's L2 output before its
    bf16 rounding, as the sm_100a path folds an up/gate global-scale ratio into L2's alpha;
    `limit` > 0 clamps SwiGLU as silu_mul_ref does."""
    def qdq(v, gs):
        q, sf = quantize_ref(v, gs, "swizzled")
        return dequantize_ref(q, sf, gs, "swizzled")[: v.shape[0]].double()

    out = torch.zeros(x.shape, dtype=torch.float64)
    local = ids.long() - start
    for e in range(E):
        tok, kk = torch.nonzero(local == e, as_tuple=True)
        if tok.numel():
            w13, w2 = ew(e)
            h1 = (qdq(x[tok], gs1) @ w13.T).to(torch.bfloat16)
            a = qdq(silu_mul_ref(h1, limit), gs2)
            y = a @ w2.T if ratio is None else (a @ w2.T) * float(ratio[e])
            out.index_add_(0, tok, y.to(torch.bfloat16).double() * w[tok, kk].double().unsqueeze(1))
    return out


def test_blackwell_runner_logic_against_references():
    """sm_100a path on the CPU (it has never run on a Blackwell GPU)."""
    t, ew = _layer(2)
    store = RefStore("sm_100a")
    runner = MoERunner(store, **t, expert_start=0, top_k=TOPK, max_tokens=64, device="cpu")
    x, ids, w, start = _batch(37, 5, "local")
    runner.expert_start.fill_(start)
    with pytest.raises(ArgumentError, match="calibrate"):
        runner(x, ids, w)
    runner.calibrate(x, ids, w)
    gs1, gs2 = runner._sm100.gs1.clone(), runner._sm100.gs2.clone()
    assert torch.isfinite(gs1).all() and torch.isfinite(gs2).all() and gs1.item() != gs2.item()
    assert gs1.item() == pytest.approx(448 * 6 / x.float().abs().amax().item())
    for m, mode in ((37, "local"), (5, "skewed"), (1, "one_expert"), (20, "empty_experts")):
        xb, ids_b, wb, _ = _batch(m, 100 + m, mode)
        ids_b = ids_b % E + start  # this rank's experts
        out = runner(xb, ids_b, wb)
        qa = _quant_aware_ref(xb, ids_b, wb, ew, start, gs1, gs2)
        exact = moe_ref(xb, ids_b, wb, ew, E, start)
        assert _rel(out, qa) <= 1e-2, (m, mode, _rel(out, qa))
        # NVFP4 activations twice: ~0.1 relative from quantization alone; a wiring error is ~1
        assert _rel(out, exact) <= 0.25, (m, mode, _rel(out, exact))
    assert {op.fam.name for op in store.ops.values()} >= {
        "moe_route", "moe_permute_quantize", "quack_nvfp4_grouped_gemm", "moe_silu_mul_quantize", "moe_combine"}
    assert runner.missing([1, 64]) == []
    assert any("max_tokens" in s for s in runner.missing([65]))


def test_blackwell_runner_clamped_swiglu():
    """swiglu_limit (DeepSeek-V4: 10) on sm_100a: the runner opens moe_silu_mul_quantize with that
    limit, calibrates gs2 on the clamped activations and matches the clamped quantization-aware
    reference; with x scaled up gate/up cross the limit, so the unclamped references are far off.
    (Logic only: the kernel's clamp is moe_silu_mul's PTX, checked against the same reference on
    Hopper by tests/gpu/test_moe_glue_gpu.py; no Blackwell GPU here.)"""
    t, ew = _layer(2)
    runner = MoERunner(RefStore("sm_100a"), **t, expert_start=0, top_k=TOPK, max_tokens=64, device="cpu", swiglu_limit=10.0)
    assert runner.swiglu_limit == 10.0 and runner._sm100.silu_q.params.limit == 10.0
    x, ids, w, start = _batch(37, 5, "local")
    x = (x.float() * 6).to(torch.bfloat16)
    ids = ids % E + start
    runner.expert_start.fill_(start)
    runner.calibrate(x, ids, w)
    gs1, gs2 = runner._sm100.gs1.clone(), runner._sm100.gs2.clone()
    out = runner(x, ids, w)
    assert _rel(out, _quant_aware_ref(x, ids, w, ew, start, gs1, gs2, limit=10.0)) <= 1e-2
    assert _rel(out, _quant_aware_ref(x, ids, w, ew, start, gs1, gs2)) > 5e-2  # measured 0.0017 vs 0.19
    assert _rel(out, moe_ref(x, ids, w, ew, E, start, swiglu_limit=10.0)) <= 0.25  # NVFP4 activations twice


def _unequal_gate_up(seed):
    """_layer with w13_scale_2 as [E, 2] (gate, up) and the up scale 1.5-2.5x the gate's."""
    t, ew = _layer(seed)
    g = torch.Generator().manual_seed(seed + 100)
    gate = t["w13_scale_2"]
    ratio = 1.5 + torch.rand(E, generator=g)
    t = {**t, "w13_scale_2": torch.stack([gate, gate * ratio], 1)}

    def ew_true(e):  # the model as the checkpoint defines it: up rows scaled by their own scale
        w13, w2 = ew(e)
        w13 = w13.clone()
        w13[I:] *= float(t["w13_scale_2"][e, 1]) / float(gate[e])
        return w13, w2

    return t, ew, ew_true, ratio


@pytest.mark.parametrize("arch", ["sm_90a", "sm_100a"])
def test_unequal_gate_up_global_scales_are_honoured_on_both_archs(arch):
    """A checkpoint whose gate and up halves have different weight_scale_2 ([E, 2]): both archs
    must compute the model the checkpoint defines (Hopper: per-row alpha; sm_100a: the up/gate
    ratio folded into L2's per-expert alpha, exact since silu(gate) * up is linear in up and L2
    is linear). Taking the gate's scale for both halves gives a wrong up half (~50-150% off)."""
    t, ew_gate_only, ew_true, ratio = _unequal_gate_up(4)
    runner = MoERunner(RefStore(arch), **t, expert_start=0, top_k=TOPK, max_tokens=64, device="cpu")
    x, ids, w, start = _batch(37, 9, "uniform")
    runner.expert_start.fill_(start)
    runner.calibrate(x, ids, w)
    out = runner(x, ids, w)
    exact = moe_ref(x, ids, w, ew_true, E, start)
    if arch == "sm_90a":
        assert _rel(out, exact) <= 1e-2, _rel(out, exact)
        return
    # sm_100a: NVFP4 activations twice (~0.1 from quantization alone, as above); and against the
    # quantization-aware reference of what the kernels compute: h1 with the gate's scale on both
    # halves, silu * up quantized under gs2, L2 output times up/gate per expert
    assert _rel(out, exact) <= 0.25, _rel(out, exact)
    gs1, gs2 = runner._sm100.gs1, runner._sm100.gs2
    qa = _quant_aware_ref(x, ids, w, ew_gate_only, start, gs1, gs2, ratio)
    assert _rel(out, qa) <= 1e-2, _rel(out, qa)


# ---------------------------------------------------------------- sm_90a: decode and prefill paths
class _NoQuackGrouped(RefStore):
    """A store without quack_w4a16_grouped_gemm (e.g. built from an older manifest)."""

    def op(self, family, **problem):
        if family == "quack_w4a16_grouped_gemm":
            raise MissingVariantError(f"{family}: not in this store")
        return super().op(family, **problem)


def _calls(runner, attr):
    op = getattr(runner, attr)
    return 0 if op is None else op.calls


def test_prefill_tiers_are_declared_with_route_pad_equal_to_tile_n():
    """Each prefill tier declares its route, permute and both GEMMs with one pad and one token
    range: pad 1 = our w4a16_ws_grouped_gemm (unpadded groups), pad P > 1 = quack's grouped GEMM
    with tile_n = P; the ranges meet the decode path's end and each other, optional (a store
    without them serves every T on the decode path). Word order nibble: both tiers (rot has only the
    first, test_rot_runner_reads_one_rot_copy_on_quad_and_the_ws_tier_above)."""
    from nvfp4_aot.runtime.moe import PREFILL, prefill_gemm, prefill_tiers

    for e, k in ((4, 2), (48, 6), (32, 6), (256, 8)):
        decls = MoERunner.ops(512, 256, e, k, "sm_90a", word_order="nibble")
        tiers = prefill_tiers(e, k, word_order="nibble")
        assert [p for _, _, p in tiers] == [p for _, p in PREFILL]
        assert tiers[-1][1] is None and all(a[1] == b[0] for a, b in zip(tiers, tiers[1:]))
        dec = [d for d in decls if d.attr in ("route", "permute", "l1", "silu", "l2")]
        assert {(d.pad, d.m_above, d.m_upto, d.optional) for d in dec} == {(1, 0, tiers[0][0], False)}
        # the decode path's GEMM inputs are written and read in quad order, the prefill ones natural
        assert {d.attr for d in dec if d.problem.get("act_order") == moe.DECODE_ORDERS["nibble"]} == {"permute", "l1", "silu", "l2"}
        assert not [d for d in decls if d.m_above and d.problem.get("act_order", "natural") != "natural"]
        for lo, hi, p in tiers:
            mine = [d for d in decls if d.m_above == lo and d.attr != "silu_pre"]
            assert sorted(d.attr for d in mine) == sorted(f"{a}_{p}" for a in ("route", "permute", "l1", "l2"))
            assert all(d.optional and d.m_upto == hi and d.pad == p for d in mine)
            gemms = [d for d in mine if d.attr.startswith(("l1_", "l2_"))]
            assert {d.family for d in gemms} == {prefill_gemm(p)}
            assert all(d.problem.get("pad", d.problem.get("tile_n", 1)) == p for d in mine)
            assert all(("tile_n" in d.problem) == (p > 1) for d in gemms)
            for t in (lo, lo + 1):  # t * k / e slots per expert: above the tier's t exactly from lo + 1
                assert (t * k / e > PREFILL[[q for _, q in PREFILL].index(p)][0]) == (t == lo + 1)
        silu = next(d for d in decls if d.attr == "silu_pre")
        assert silu.rows == "capacity" and silu.pad == max(p for _, p in PREFILL)
        assert silu.optional and (silu.m_above, silu.m_upto) == (tiers[0][0], None)


@pytest.mark.parametrize("mode", ["uniform", "skewed", "one_expert", "empty_experts"])
def test_hopper_runner_both_paths_at_the_threshold_edges(mode):
    """E 4, top-2: decode for T <= 56 (28 slots per expert), unpadded groups on our w4a16_ws grouped
    GEMM for 56 < T <= 256, groups padded to 256 on quack's above (word order nibble: rot has no quack
    tier). Every T at and around both edges matches the float64 reference, runs on exactly the path's
    ops, and route's offsets honour the pad."""
    from nvfp4_aot.runtime.layout import capacity
    from nvfp4_aot.runtime.moe import prefill_tiers

    t, ew = _layer(3)
    runner = MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=300, device="cpu", prefill=True,
                       word_order="nibble")
    assert runner.tiers == prefill_tiers(E, TOPK, word_order="nibble") == [(56, 256, 1), (256, None, 256)]
    # every path shares one copy of the experts: all GEMM families read quack's blob/strip
    assert runner.layouts == ["quack_w4a16"]
    assert runner.operands["l1_1"] is runner.operands["l1_256"] is runner.operands["l1"]
    assert runner.operands["l2_1"] is runner.operands["l2_256"] is runner.operands["l2"]
    assert runner.l1_1.fam.name == "w4a16_ws_grouped_gemm" and runner.l1_256.fam.name == "quack_w4a16_grouped_gemm"
    assert runner.ws["xg"].shape[0] >= capacity(300, TOPK, E, 256) > 300 * TOPK
    for m, pad, l1 in ((1, 1, "l1"), (56, 1, "l1"), (57, 1, "l1_1"), (256, 1, "l1_1"),
                       (257, 256, "l1_256"), (300, 256, "l1_256")):
        assert runner.pad_for(m) == pad and runner.tier_for(m) == (None if l1 == "l1" else pad)
        x, ids, w, start = _batch(m, 50 + m, mode)
        runner.expert_start.fill_(start)
        before = {a: _calls(runner, a) for a in ("l1", "l2", "l1_1", "l2_1", "l1_256", "l2_256", "silu", "silu_pre")}
        out = runner(x, ids, w)
        after = {a: _calls(runner, a) for a in before}
        ran = {a for a in before if after[a] != before[a]}
        assert ran == {l1, l1.replace("l1", "l2"), "silu" if l1 == "l1" else "silu_pre"}, (m, ran)
        off = runner.ws["offsets"].tolist()
        cnt = runner.ws["counts"].tolist()
        assert all(o % pad == 0 for o in off) and off[-1] <= capacity(m, TOPK, E, pad), (m, off)
        assert all(off[e + 1] - off[e] == -(-c // pad) * pad for e, c in enumerate(cnt)), (m, off, cnt)
        want = moe_ref(x, ids, w, ew, E, start)
        if want.norm() > 0:
            assert _rel(out, want) <= 1e-2, (mode, m, _rel(out, want))
        else:
            assert bool((out == 0).all()), (mode, m)
    assert runner.missing([1, 56, 57, 256, 257, 300]) == []
    assert any("max_tokens" in s for s in runner.missing([301]))


def test_hopper_runner_check_full_on_padded_groups():
    """check="full" validates the padded grouped layout on the host (offsets multiples of the pad,
    counts within their groups) and still matches the reference."""
    t, ew = _layer(5)
    runner = MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=300, device="cpu", prefill=True,
                       word_order="nibble")
    x, ids, w, start = _batch(200, 77, "skewed")
    runner.expert_start.fill_(start)
    out = runner(x, ids, w, check="full", total_experts=int(ids.max()) + 1)
    assert _rel(out, moe_ref(x, ids, w, ew, E, start)) <= 1e-2


@pytest.mark.parametrize("case", ["prefill_false", "no_quack_grouped"])
def test_runner_without_prefill_tiers_holds_one_copy_and_serves_every_t_on_the_decode_path(case):
    """No prefill tier, with max_tokens past every PREFILL edge: "prefill_false" opts out
    (prefill=False; the default is on) on a store holding the prefill ops; "no_quack_grouped" is
    prefill=True on a store without quack's grouped GEMM (word order nibble, whose second tier is
    quack's: a store missing an optional op drops every tier). Either way no prefill op is opened, the
    one copy of the experts is prepared, and large T runs on our grouped GEMM, right."""
    t, ew = _layer(9 if case == "prefill_false" else 6)
    if case == "prefill_false":
        runner = MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=300, device="cpu",
                           prefill=False)
    else:
        runner = MoERunner(_NoQuackGrouped("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=300, device="cpu",
                           prefill=True, word_order="nibble")
    assert runner.tiers == [] and runner.route_1 is None and runner.l1_1 is None and getattr(runner, "l1_256", None) is None
    assert runner.layouts == [BLOB_LAYOUT[runner.word_order]] and set(runner.operands) == {"l1", "l2"}  # one copy
    assert all(not d.optional and d.m_upto is None for d in runner.decls)
    assert runner.pad_for(300) == 1
    x, ids, w, start = _batch(300, 10, "skewed") if case == "prefill_false" else _batch(300, 8, "uniform")
    runner.expert_start.fill_(start)
    before = runner.l1.calls
    out = runner(x, ids, w)
    assert runner.l1.calls == before + 1
    assert _rel(out, moe_ref(x, ids, w, ew, E, start)) <= 1e-2
    assert runner.missing([1, 300]) == []


def test_a_decode_only_runner_opens_and_prepares_no_prefill_path():
    """max_tokens <= the first tier's edge (E 4, top-2: T = PREFILL[0][0] * 2): no prefill op is
    declared or opened, and only our layout's copy of the experts is prepared."""
    from nvfp4_aot.runtime.moe import PREFILL

    edge = PREFILL[0][0] * E // TOPK
    t, _ = _layer(7)
    runner = MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=edge, device="cpu")
    assert runner.tiers == [] and runner.layouts == [BLOB_LAYOUT[moe.WORD_ORDER]] and runner.route_1 is None
    assert getattr(runner, "l2_256", None) is None
    assert not [d for d in runner.decls if d.optional] and runner.pad_for(edge) == 1
    assert [d.attr for d in MoERunner.ops(H, I, E, TOPK, "sm_90a", max_tokens=edge + 1) if d.optional] == [
        "route_1", "permute_1", "l1_1", "l2_1", "silu_pre"]


# ---------------------------------------------------------------- sm_90a: word order "rot"
@pytest.mark.parametrize("mode", ["uniform", "skewed", "empty_experts"])
def test_rot_runner_reads_one_rot_copy_on_quad_and_the_ws_tier_above(mode):
    """word_order="rot" (runtime/word_order.py): the decode path in act order quad, the w4a16_ws tier
    serving every T above it (quack's grouped GEMM reads nibble order only: no tier of its own),
    every GEMM declared with word_order rot, one rot copy of the experts (w4a16_rot) for all of
    them. Each reference op decodes the blob in its problem's word order, so a nibble copy handed
    to a rot op would be wrong weights (checked last)."""
    from nvfp4_aot.runtime.moe import DECODE_ORDERS, prefill_table, prefill_tiers

    assert prefill_table("rot") == ((28, 1),) and DECODE_ORDERS["rot"] == "quad"
    t, ew = _layer(3)
    runner = MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=300, device="cpu",
                       word_order="rot")
    assert runner.tiers == prefill_tiers(E, TOPK, word_order="rot") == [(56, None, 1)]
    assert runner.layouts == ["w4a16_rot"] and getattr(runner, "l1_256", None) is None
    assert runner.operands["l1_1"] is runner.operands["l1"] and runner.operands["l2_1"] is runner.operands["l2"]
    gemms = [d for d in runner.decls if d.weights]
    assert {d.family for d in gemms} == {"w4a16_grouped_gemm", "w4a16_ws_grouped_gemm"}
    assert all(d.problem["word_order"] == "rot" for d in gemms)
    assert {d.attr: d.problem.get("act_order") for d in runner.decls if not d.optional and "act_order" in d.problem} == {
        "permute": "quad", "l1": "quad", "silu": "quad", "l2": "quad"}
    for m, l1 in ((1, "l1"), (56, "l1"), (57, "l1_1"), (300, "l1_1")):
        x, ids, w, start = _batch(m, 70 + m, mode)
        runner.expert_start.fill_(start)
        before = {a: _calls(runner, a) for a in ("l1", "l1_1")}
        out = runner(x, ids, w)
        assert {a for a in before if _calls(runner, a) != before[a]} == {l1}, m
        want = moe_ref(x, ids, w, ew, E, start)
        if want.norm() > 0:
            assert _rel(out, want) <= 1e-2, (mode, m, _rel(out, want))
    assert runner.missing([1, 56, 57, 300]) == []
    # negative control: the nibble copy under the rot ops multiplies other weights
    nib = MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=300, device="cpu", word_order="nibble")
    assert nib.layouts == ["quack_w4a16"]
    runner.operands = {a: nib.operands["l1" if a.startswith("l1") else "l2"] for a in runner.operands}
    x, ids, w, start = _batch(37, 5, "uniform")
    runner.expert_start.fill_(start)
    assert _rel(runner(x, ids, w), moe_ref(x, ids, w, ew, E, start)) > 0.5


def test_runner_word_order_is_checked():
    t, _ = _layer(3)
    with pytest.raises(ArgumentError, match="word_order='zig'"):
        MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=64, device="cpu", word_order="zig")


def test_word_order_none_is_each_runners_default():
    """word_order=None (what the planner and the vLLM plugin pass unless told otherwise) is each runner's
    own default: MoERunner's WORD_ORDER ("rot": decode path in quad, one w4a16_rot copy), Nvfp4Linear's
    ("nibble"), in the declarations and in the instances alike."""
    from nvfp4_aot.runtime import Nvfp4Linear, linear

    assert (moe.WORD_ORDER, linear.WORD_ORDER) == ("rot", "nibble")
    assert MoERunner.ops(512, 256, E, TOPK, "sm_90a", word_order=None) == MoERunner.ops(512, 256, E, TOPK, "sm_90a",
                                                                                       word_order="rot")
    assert Nvfp4Linear.ops(512, 256, "sm_90a", word_order=None) == Nvfp4Linear.ops(512, 256, "sm_90a", word_order="nibble")
    t, _ = _layer(4)
    runner = MoERunner(RefStore("sm_90a"), **t, expert_start=0, top_k=TOPK, max_tokens=64, device="cpu", word_order=None)
    assert runner.word_order == "rot" and runner.layouts == ["w4a16_rot"] and runner.l1.fam.name == "w4a16_grouped_gemm"
    assert runner.silu.params.act_order == moe.DECODE_ORDERS["rot"] == "quad"
