"""MoE glue families on the CPU: references against naive loops, signatures, can_implement,
and a build of every family at DeepSeek-V4 sizes for sm_90a and sm_100a."""

import json
import math

import pytest
import torch
from conftest import run_cli

from nvfp4_aot.kernels.family import compile_dim
from nvfp4_aot.kernels.moe_glue import capacity, capacity_expr
from nvfp4_aot.kernels.moe_glue import COMBINE_FAMILY as COMBINE
from nvfp4_aot.kernels.moe_glue import PERMUTE_FAMILY as PERMUTE
from nvfp4_aot.kernels.moe_glue import PERMUTE_QUANTIZE_FAMILY as PERMUTE_Q
from nvfp4_aot.kernels.moe_glue import ROUTE_FAMILY as ROUTE
from nvfp4_aot.kernels.moe_glue import SILU_MUL_FAMILY as SILU
from nvfp4_aot.kernels.moe_glue import SILU_MUL_QUANTIZE_FAMILY as SILU_Q
from nvfp4_aot.kernels.moe_glue.ref import (
    ROUTINGS,
    combine_inputs,
    combine_ref,
    make_routing,
    nvfp4_rel_error,
    permute_ref,
    route_inputs,
    route_ref,
    silu_mul_exact,
    silu_mul_quantize_inputs,
    silu_mul_ref,
)
from nvfp4_aot.kernels.nvfp4_quantize.ref import quantize_ref, swizzle_sf, unswizzle_sf



# ----------------------------------------------------------------------------- naive loops


def route_naive(ids, start, experts, pad):
    m, topk = ids.shape
    counts = [0] * experts
    for t in range(m):
        for k in range(topk):
            e = int(ids[t, k]) - start
            if 0 <= e < experts:
                counts[e] += 1
    offsets = [0]
    for e in range(experts):
        offsets.append(offsets[-1] + -(-counts[e] // pad) * pad)
    cap = capacity(m, topk, experts, pad)
    assert offsets[-1] <= cap
    slot_of = [[-1] * topk for _ in range(m)]
    src = [-1] * cap
    fill = offsets[:-1].copy()
    for t in range(m):  # (token, k) ascending: the order within each expert
        for k in range(topk):
            e = int(ids[t, k]) - start
            if 0 <= e < experts:
                slot_of[t][k] = fill[e]
                src[fill[e]] = t
                fill[e] += 1
    return counts, offsets, slot_of, src


def combine_naive(y, slot_of, w):
    r, h = y.shape
    m, topk = slot_of.shape
    yf = y.float()
    out = torch.zeros((m, h), dtype=torch.float32)
    for t in range(m):
        acc = torch.zeros(h, dtype=torch.float32)
        for k in range(topk):
            s = int(slot_of[t, k])
            if 0 <= s < r:
                acc = acc + w[t, k] * yf[s]  # fp32 product, then fp32 sum: the kernel's order
        out[t] = acc
    return out.to(torch.bfloat16)


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize("mode", ROUTINGS)
@pytest.mark.parametrize("m,topk,experts,pad", [(1, 6, 48, 128), (3, 6, 32, 128), (37, 4, 8, 16), (129, 6, 48, 128), (50, 2, 3, 1), (20, 8, 4, 4)])
def test_route_ref_matches_naive(mode, m, topk, experts, pad):
    for seed in range(3):
        ids, start = make_routing(m, topk, experts, seed, mode)
        got = route_ref(ids, torch.tensor([start], dtype=torch.int32), experts, pad)
        counts, offsets, slot_of, src = route_naive(ids, start, experts, pad)
        assert got["counts"].tolist() == counts
        assert got["offsets"].tolist() == offsets
        assert got["slot_of"].tolist() == slot_of
        assert got["src_token"].tolist() == src
        assert all(v.dtype == torch.int32 for v in got.values())


def test_routings_cover_the_edge_cases():
    e, topk, m = 48, 6, 200
    for mode in ROUTINGS:
        ids, start = make_routing(m, topk, e, 5, mode)
        assert ids.shape == (m, topk) and ids.dtype == torch.int32
        assert int(ids.min()) >= 0 and int(ids.max()) < 8 * e and start % e == 0
        c = route_ref(ids, start, e, 128)["counts"]
        if mode != "one_expert":  # distinct experts per token
            assert all(len(set(r)) == topk for r in ids.tolist())
        if mode == "local":
            assert int(c.sum()) == m * topk
        if mode == "nonlocal":
            assert int(c.sum()) == 0
        if mode == "one_expert":
            assert sorted(c.tolist())[-1] == m * topk and int((c > 0).sum()) == 1
        if mode == "empty_experts":
            assert int((c == 0).sum()) >= e // 2
        if mode == "skewed":
            assert int(c.max()) > 3 * m * topk / 8 / e  # hot local experts
    assert len({repr(make_routing(4, 6, 48, s)[0].tolist()) for s in range(12)}) > 1  # fresh per seed


def test_capacity_bound_is_tight_and_safe():
    topk, e, pad = 6, 48, 128
    assert compile_dim(capacity_expr())({"M": 1000, "TOPK": topk, "E": e, "PAD": pad}) == capacity(1000, topk, e, pad)
    for m in (8, 100, 1000, 8192):
        n = m * topk
        # worst case: every expert gets 1 + a multiple of pad tokens
        per = [1] * e
        per[0] += (n - e) // pad * pad
        used = sum(-(-c // pad) * pad for c in per)
        assert used == capacity(m, topk, e, pad)
        # any routing fits: all on one expert, uniform
        assert -(-n // pad) * pad <= capacity(m, topk, e, pad)
    for m in (1, 2, 7):  # M * topk < E: over-allocates, still a multiple of pad
        assert capacity(m, topk, e, pad) % pad == 0 and capacity(m, topk, e, pad) >= m * topk * pad


def test_silu_mul_ref():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn((5, 48), generator=g) * 8).to(torch.bfloat16)
    got = silu_mul_ref(x)
    xf = x.double()
    for r in range(5):
        for c in range(24):
            a, b = float(xf[r, c]), float(xf[r, 24 + c])
            want = a / (1 + math.exp(-a)) * b
            assert abs(float(got[r, c]) - want) <= abs(want) * 2**-8 + 1e-30


def test_silu_mul_ref_clamps_like_vllm_swiglu_limit():
    """limit L: silu(min(g, L)) * clamp(u, -L, L), the formula of vLLM 0.32's swiglu_limit
    (fused_moe/utils.py _swiglu_limit_torch), checked per element in float64; the family's
    inputs for a limit variant cross both clamps."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn((6, 64), generator=g) * 16).to(torch.bfloat16)
    got = silu_mul_ref(x, 10.0)
    xf = x.double()
    for r in range(6):
        for c in range(32):
            a, b = min(float(xf[r, c]), 10.0), max(min(float(xf[r, 32 + c]), 10.0), -10.0)
            want = a / (1 + math.exp(-a)) * b
            assert abs(float(got[r, c]) - want) <= abs(want) * 2**-8 + 1e-30
    assert not torch.equal(got, silu_mul_ref(x))  # the clamp did something
    p = SILU.parse_params({"i": 256, "limit": 10})
    assert p.limit == 10.0 and SILU.can_implement(p, "sm_90a") == []
    assert SILU.can_implement(SILU.parse_params({"i": 256, "limit": -1.0}), "sm_90a")
    x = SILU.make_inputs(p, 512, "cpu", 3)["x"].float()
    assert (x[:, :256] > 10).any() and (x[:, 256:] > 10).any() and (x[:, 256:] < -10).any()


@pytest.mark.parametrize("mode", ROUTINGS)
def test_combine_ref_matches_naive(mode):
    for seed, m in [(1, 1), (2, 7), (3, 64)]:
        inp = combine_inputs(32, 6, m, "cpu", seed, mode=mode)
        want = combine_naive(inp["y"], inp["slot_of"], inp["weights"])
        got = combine_ref(inp["y"], inp["slot_of"], inp["weights"])
        assert torch.equal(got, want)
        assert not torch.isnan(got).any()  # NaN padding rows of y are never read


def test_combine_ref_skips_out_of_range_slots():
    y = torch.randn(4, 8).to(torch.bfloat16)
    slot_of = torch.tensor([[0, -1, 4, 3], [100, -5, 2, 2]], dtype=torch.int32)
    w = torch.rand(2, 4)
    got = combine_ref(y, slot_of, w)
    assert torch.equal(got, combine_naive(y, slot_of, w))


def test_make_inputs_check_roundtrip():
    """make_inputs / reference / check agree with themselves, and poison is caught."""
    for fam, params in [
        (ROUTE, {"experts": 48, "topk": 6}),
        (SILU, {"i": 64}),
        (COMBINE, {"h": 64, "topk": 6}),
        (PERMUTE, {"h": 64, "topk": 6, "experts": 8}),
        (PERMUTE_Q, {"h": 128, "topk": 6, "experts": 8}),
        (SILU_Q, {"i": 128}),
        (SILU_Q, {"i": 128, "limit": 10.0}),
    ]:
        p = fam.parse_params(params)
        for m in (1, 3, 130):
            inp = fam.make_inputs(p, m, "cpu", seed=m)
            want = fam.reference(p, inp)
            assert fam.check(p, inp, want), f"{fam.name}: poisoned outputs passed the check"
            filled = {**inp, **want}
            assert fam.check(p, filled, want) == []


# ----------------------------------------------------------------------------- specs


def test_signatures():
    r = ROUTE.signature(ROUTE.parse_params({"experts": 48, "topk": 6}))
    env = {**r.static, "M": 1000}
    shapes = {a.name: tuple(compile_dim(str(d))(env) for d in a.shape) for a in r.args}
    assert shapes == {
        "topk_ids": (1000, 6), "expert_start": (1,), "counts": (48,), "offsets": (49,),
        "slot_of": (1000, 6), "src_token": ((6000 + 48 * 127) // 128 * 128,),
    }  # fmt: skip
    assert [a.name for a in r.args if a.output] == ["counts", "offsets", "slot_of", "src_token"]
    assert r.dynamic == ("M",)
    c = COMBINE.signature(COMBINE.parse_params({"h": 7168, "topk": 6}))
    assert c.dynamic == ("M", "R") and [a.shape for a in c.args] == [("R", "H"), ("M", "TOPK"), ("M", "TOPK"), ("M", "H")]
    s = SILU.signature(SILU.parse_params({"i": 3072}))
    assert compile_dim("I * 2")(s.static) == 6144 and s.args[1].output
    for sig in (r, c, s):
        assert type(sig).from_json(json.loads(json.dumps(sig.to_json()))) == sig


def test_can_implement():
    for arch in ("sm_90a", "sm_100a"):
        assert ROUTE.can_implement(ROUTE.parse_params({"experts": 48, "topk": 6}), arch) == []
        assert SILU.can_implement(SILU.parse_params({"i": 3072}), arch) == []
        assert COMBINE.can_implement(COMBINE.parse_params({"h": 7168, "topk": 6}), arch) == []
    assert SILU.can_implement(SILU.parse_params({"i": 3070}), "sm_90a")
    assert COMBINE.can_implement(COMBINE.parse_params({"h": 7164, "topk": 6}), "sm_90a")
    assert COMBINE.can_implement(COMBINE.parse_params({"h": 64, "topk": 0}), "sm_90a")
    assert ROUTE.can_implement(ROUTE.parse_params({"experts": 48, "topk": 6, "vec": 6}), "sm_90a")
    assert ROUTE.can_implement(ROUTE.parse_params({"experts": 2000, "topk": 6}), "sm_90a")
    assert ROUTE.can_implement(ROUTE.parse_params({"experts": 48, "topk": 6, "threads": 96}), "sm_90a")
    assert SILU.can_implement(SILU.parse_params({"i": 3072}), "sm_80")


# ----------------------------------------------------------------------------- build

BUILD_MANIFEST = """\
archs = ["sm_90a", "sm_100a"]

[[op]]
family = "moe_route"
problem = { experts = 48, topk = 6, pad = 128 }
buckets = [ { m = [1, 128], tuning = { threads = 128 } }, { m = [129, 8192], tuning = { threads = 512 } } ]

[[op]]
family = "moe_silu_mul"
problem = { i = 3072 }
buckets = [ { m = [1, 8192] } ]

[[op]]
family = "moe_combine"
problem = { h = 7168, topk = 6 }
buckets = [ { m = [1, 8192] } ]
"""


@pytest.mark.slow
def test_build_all_families_both_archs(tmp_path):
    from nvfp4_aot.runtime.store_format import read_index

    manifest = tmp_path / "moe_glue.toml"
    manifest.write_text(BUILD_MANIFEST)
    out = tmp_path / "artifacts"
    run_cli("compile", str(manifest), "-o", str(out), "--json")
    entries = read_index(out)["entries"]
    assert len(entries) == 8  # route 2 buckets + silu 1 + combine 1, x 2 archs
    assert {(e["family"], e["arch"]) for e in entries.values()} == {
        (f, a) for f in ("moe_route", "moe_silu_mul", "moe_combine") for a in ("sm_90a", "sm_100a")
    }
    run_cli("verify", "--load", str(out))


# ----------------------------------------------------------------------------- permute, fused quantize


def permute_naive(x, src):
    m, h = x.shape
    out = torch.zeros((src.shape[0], h), dtype=x.dtype)
    for r, t in enumerate(src.tolist()):
        if 0 <= t < m:
            out[r] = x[t]
    return out


@pytest.mark.parametrize("mode", ROUTINGS)
def test_permute_ref_matches_naive_and_route(mode):
    experts, topk, pad = 8, 4, 16
    p = PERMUTE.parse_params({"h": 24, "topk": topk, "experts": experts, "pad": pad})
    for seed, m in [(1, 1), (2, 7), (3, 64)]:
        s = seed * len(ROUTINGS) + ROUTINGS.index(mode)
        inp = PERMUTE.make_inputs(p, m, "cpu", s)
        src = inp["src_token"]
        assert src.dtype == torch.int32 and src.shape == (capacity(m, topk, experts, pad),)
        got = PERMUTE.reference(p, inp)["xg"]
        assert torch.equal(got.view(torch.int16), permute_naive(inp["x"], src).view(torch.int16))
        # src_token is route's TOKEN index: every valid grouped row of expert e holds a token
        # routed to e, each (token, expert) pair exactly once; the rest are zero rows
        ids, start = make_routing(m, topk, experts, s, mode)
        r = route_ref(ids, start, experts, pad)
        valid = (src >= 0) & (src < m)
        assert torch.equal(valid, r["src_token"] >= 0)  # planted out-of-range entries are padding rows
        offs = r["offsets"].tolist()
        for e in range(experts):
            toks = src[offs[e]: offs[e + 1]]
            toks = toks[(toks >= 0) & (toks < m)].tolist()
            want = [t for t in range(m) for k in range(topk) if int(ids[t, k]) - start == e]
            assert toks == want
        assert not got[~valid].any()
        assert not torch.isnan(got).any()
    # the planted out-of-range indices (M, -5, 2^31 - 1) are there whenever padding exists
    inp = PERMUTE.make_inputs(p, 5, "cpu", 0)
    assert {5, -5, 2**31 - 1} <= set(inp["src_token"].tolist())


def test_permute_quantize_ref_properties():
    p = PERMUTE_Q.parse_params({"h": 128, "topk": 6, "experts": 8})
    for seed, m in [(0, 1), (4, 33), (2, 200)]:
        inp = PERMUTE_Q.make_inputs(p, m, "cpu", seed)
        want = PERMUTE_Q.reference(p, inp)
        cap = capacity(m, 6, 8, 128)
        assert want["q"].shape == (cap, 64) and want["sf"].shape == (cap, 8) and cap % 128 == 0
        gathered = permute_ref(inp["x"], inp["src_token"])
        q, sf = quantize_ref(gathered, inp["global_scale"], "swizzled")
        assert torch.equal(want["q"], q) and torch.equal(want["sf"], sf)
        pad_rows = ~((inp["src_token"] >= 0) & (inp["src_token"] < m))
        assert not want["q"][pad_rows].any()  # zero codes
        assert not unswizzle_sf(want["sf"], cap)[pad_rows].any()  # zero scales
        # valid rows: exactly nvfp4_quantize's bits for the gathered token row
        for r in torch.nonzero(~pad_rows).flatten()[:5].tolist():
            t = int(inp["src_token"][r])
            qt, _ = quantize_ref(inp["x"][t: t + 1], inp["global_scale"], "rowmajor")
            assert torch.equal(want["q"][r], qt[0])


@pytest.mark.parametrize("pad", [128, 256])
@pytest.mark.parametrize("mode", ROUTINGS)
def test_swizzle_over_padded_rows_is_per_expert_swizzle(pad, mode):
    """The invariant moe_permute_quantize relies on: with pad % 128 == 0 the 128x4 swizzle of
    the whole grouped buffer holds, for every expert, exactly that expert's scales swizzled on
    their own (bytes [offsets[e] * H/16, offsets[e + 1] * H/16)), which the grouped GEMM reads."""
    h, topk, experts, m = 256, 6, 8, 150
    ks = h // 16
    ids, start = make_routing(m, topk, experts, 7, mode)
    src = route_ref(ids, start, experts, pad)["src_token"]
    offs = route_ref(ids, start, experts, pad)["offsets"].tolist()
    x = torch.randn((m, h)).to(torch.bfloat16)
    gs = torch.tensor([3.0])
    _, whole = quantize_ref(permute_ref(x, src), gs, "swizzled")
    _, rowmajor = quantize_ref(permute_ref(x, src), gs, "rowmajor")
    flat = whole.reshape(-1)
    for e in range(experts):
        a, b = offs[e], offs[e + 1]
        per_expert = swizzle_sf(rowmajor[a:b])
        assert per_expert.shape[0] == b - a  # already a multiple of 128 rows: no extra padding
        assert torch.equal(flat[a * ks: b * ks], per_expert.reshape(-1)), f"expert {e}"


def test_swizzle_invariant_needs_pad_multiple_of_128():
    """pad = 64: an expert may start mid-atom; its own swizzle then differs from the slice of
    the whole-buffer swizzle (why can_implement rejects it)."""
    h, ks = 64, 4
    offs = [0, 64, 192]  # expert 1 starts at row 64
    rowmajor = torch.randint(1, 255, (192, ks), dtype=torch.uint8)
    whole = swizzle_sf(rowmajor)
    per_expert = swizzle_sf(rowmajor[offs[1]: offs[2]])
    assert not torch.equal(whole.reshape(-1)[offs[1] * ks: offs[2] * ks], per_expert.reshape(-1)[: (offs[2] - offs[1]) * ks])


def test_silu_mul_quantize_exact_mode_inputs_are_exact():
    """In "exact" mode torch's silu(g) is g and g * u is a bf16 number, so the kernel's
    approximate silu must produce the very same bf16 h (the quantized bits are then bit-exact)."""
    i = 128
    inp = silu_mul_quantize_inputs(i, 40, "cpu", 4, mode="exact")
    x = inp["x"]
    g = x[:, :i].float()
    assert float(g.min()) >= 18.0
    assert torch.equal(torch.nn.functional.silu(g), g)
    h = silu_mul_ref(x)
    assert torch.equal(h.double(), x[:, :i].double() * x[:, i:].double())  # fp32 silu = g, g * u exact in bf16
    assert (h == 0).any() and (h < 0).any() and (h > 0).any()
    # a wide spread of block scales, including zero blocks
    _, sf = quantize_ref(h, inp["global_scale"], "rowmajor")
    assert len(set(sf.flatten().tolist())) > 20 and (sf == 0).any()


@pytest.mark.parametrize("limit", [0.0, 10.0])
def test_silu_mul_quantize_check(limit):
    p = SILU_Q.parse_params({"i": 256, "limit": limit})
    for seed in (1, 2):  # random, exact (limit 0); random twice (limit 10)
        inp = SILU_Q.make_inputs(p, 70, "cpu", seed)
        assert inp["sf"].shape == (128, 16) and inp["q"].shape == (70, 128)
        want = SILU_Q.reference(p, inp)
        assert SILU_Q.check(p, {**inp, **want}, want) == []
        # the reference itself is NVFP4-accurate vs float64 (clamped) silu * up
        e = nvfp4_rel_error(want["q"], want["sf"], inp["global_scale"], silu_mul_exact(inp["x"], limit))
        assert 0 < e < 0.4
        # a few near-tie differences pass, a systematic one does not
        q = want["q"].clone()
        q.view(-1)[:2] ^= 1
        assert SILU_Q.check(p, {**inp, "q": q, "sf": want["sf"]}, want) == []
        sf = want["sf"].clone()
        sf[:, 0] = 0  # one scale column lost
        assert SILU_Q.check(p, {**inp, "q": want["q"], "sf": sf}, want)
        # rows past M in the swizzled buffer must be zero
        sf = unswizzle_sf(want["sf"], 128).clone()
        assert not sf[70:].any()


def test_silu_mul_quantize_clamp():
    """limit 10 (DeepSeek-V4's swiglu_limit, the sm_100a MoERunner's silu_q): the reference is
    quantize_ref of moe_silu_mul's clamped bf16 values, the inputs cross both clamps, a kernel
    that forgot the clamp fails the check, and "exact" mode (no clamped form) is refused."""
    p = SILU_Q.parse_params({"i": 256, "limit": 10})
    assert p.limit == 10.0 and SILU_Q.can_implement(p, "sm_100a") == []
    assert "limit=-1.0 must be a finite number >= 0" in "; ".join(
        SILU_Q.can_implement(SILU_Q.parse_params({"i": 256, "limit": -1.0}), "sm_100a"))
    inp = SILU_Q.make_inputs(p, 200, "cpu", 3)
    x = inp["x"].float()
    assert (x[:, :256] > 10).float().mean() > 0.01 and (x[:, 256:].abs() > 10).float().mean() > 0.01
    want = SILU_Q.reference(p, inp)
    q, sf = quantize_ref(silu_mul_ref(inp["x"], 10.0), inp["global_scale"], "swizzled")
    assert torch.equal(want["q"], q) and torch.equal(want["sf"], sf)
    nq, nsf = quantize_ref(silu_mul_ref(inp["x"]), inp["global_scale"], "swizzled")  # no clamp
    assert SILU_Q.check(p, {**inp, "q": nq, "sf": nsf}, want)
    assert SILU_Q.check(SILU_Q.parse_params({"i": 256}), {**inp, **want}, {"q": nq, "sf": nsf})
    with pytest.raises(ValueError, match="no clamped form"):
        SILU_Q.make_inputs(p, 8, "cpu", 0, mode="exact")


def test_fused_signatures():
    s = PERMUTE.signature(PERMUTE.parse_params({"h": 7168, "topk": 6, "experts": 48}))
    env = {**s.static, "M": 1000}
    cap = (6000 + 48 * 127) // 128 * 128
    shapes = {a.name: tuple(compile_dim(str(d))(env) for d in a.shape) for a in s.args}
    assert shapes == {"x": (1000, 7168), "src_token": (cap,), "xg": (cap, 7168)}
    assert [a.name for a in s.args if a.output] == ["xg"] and s.dynamic == ("M",)
    pq = PERMUTE_Q.signature(PERMUTE_Q.parse_params({"h": 7168, "topk": 6, "experts": 48}))
    shapes = {a.name: tuple(compile_dim(str(d))({**pq.static, "M": 1000}) for d in a.shape) for a in pq.args}
    assert shapes == {"x": (1000, 7168), "src_token": (cap,), "global_scale": (1,), "q": (cap, 3584), "sf": (cap, 448)}
    assert [a.name for a in pq.args if a.output] == ["q", "sf"]
    sq = SILU_Q.signature(SILU_Q.parse_params({"i": 3072}))
    shapes = {a.name: tuple(compile_dim(str(d))({**sq.static, "M": 1000}) for d in a.shape) for a in sq.args}
    assert shapes == {"x": (1000, 6144), "global_scale": (1,), "q": (1000, 1536), "sf": (1024, 192)}
    for sig in (s, pq, sq):
        assert type(sig).from_json(json.loads(json.dumps(sig.to_json()))) == sig


def test_fused_can_implement():
    for arch in ("sm_90a", "sm_100a"):
        for e in (48, 32):
            assert PERMUTE.can_implement(PERMUTE.parse_params({"h": 7168, "topk": 6, "experts": e}), arch) == []
            assert PERMUTE_Q.can_implement(PERMUTE_Q.parse_params({"h": 7168, "topk": 6, "experts": e}), arch) == []
        assert SILU_Q.can_implement(SILU_Q.parse_params({"i": 3072}), arch) == []

    def reasons(fam, **kw):
        return "; ".join(fam.can_implement(fam.parse_params(kw), kw.pop("arch", "sm_90a")))

    assert "pad=64 must be a multiple of 128" in reasons(PERMUTE_Q, h=7168, topk=6, experts=48, pad=64)
    assert PERMUTE.can_implement(PERMUTE.parse_params({"h": 7168, "topk": 6, "experts": 48, "pad": 64}), "sm_90a") == []
    assert "h=7160 must be a positive multiple of 64" in reasons(PERMUTE_Q, h=7160, topk=6, experts=48)
    assert "h=7164 must be a positive multiple of 8" in reasons(PERMUTE, h=7164, topk=6, experts=48)
    assert "i=3040 must be a positive multiple of 64" in reasons(SILU_Q, i=3040)
    assert "topk=0 must be in [1, 32]" in reasons(PERMUTE, h=64, topk=0, experts=48)
    assert "experts=2000 must be in [1, 1024]" in reasons(PERMUTE_Q, h=128, topk=6, experts=2000)
    assert "threads=96 must be one of" in reasons(PERMUTE, h=64, topk=6, experts=8, threads=96)
    assert "threads=1024 must be one of (64, 128, 256, 512)" in reasons(SILU_Q, i=64, threads=1024)
    assert "unroll=3 must be one of (1, 2, 4)" in reasons(PERMUTE, h=64, topk=6, experts=8, unroll=3)
    assert "must stay below 2^31 (int32 item index)" in reasons(PERMUTE, h=65536, topk=32, experts=1024, pad=1024)
    assert "moe_silu_mul_quantize is not available for sm_80" in "; ".join(
        SILU_Q.can_implement(SILU_Q.parse_params({"i": 3072}), "sm_80"))


FUSED_BUILD_MANIFEST = """\
archs = ["sm_90a", "sm_100a"]

[[op]]
family = "moe_permute"
problem = { h = 7168, topk = 6, experts = 48, pad = 128 }
buckets = [ { m = [1, 128], tuning = { threads = 128, unroll = 1 } }, { m = [129, 8192], tuning = { threads = 256, unroll = 4 } } ]

[[op]]
family = "moe_permute_quantize"
problem = { h = 7168, topk = 6, experts = 32, pad = 128 }
buckets = [ { m = [1, 8192], tuning = { threads = 64 } } ]

[[op]]
family = "moe_silu_mul_quantize"
problem = { i = 3072, limit = [0.0, 10.0] }
buckets = [ { m = [1, 8192], tuning = { threads = 256 } } ]
"""


@pytest.mark.slow
def test_build_fused_families_both_archs(tmp_path):
    from nvfp4_aot.runtime.store_format import read_index

    manifest = tmp_path / "moe_fused.toml"
    manifest.write_text(FUSED_BUILD_MANIFEST)
    out = tmp_path / "artifacts"
    run_cli("compile", str(manifest), "-o", str(out), "-j", "2", "--json")
    entries = read_index(out)["entries"]
    assert len(entries) == 10  # permute 2 buckets + permute_quantize 1 + silu_mul_quantize 2 limits, x 2 archs
    fams = ("moe_permute", "moe_permute_quantize", "moe_silu_mul_quantize")
    assert {(e["family"], e["arch"]) for e in entries.values()} == {(f, a) for f in fams for a in ("sm_90a", "sm_100a")}
    run_cli("verify", "--load", str(out))


CLAMP_CHECK = """
import pathlib, sys
import cutlass.cute as cute
from nvfp4_aot.kernels import get_family

fam = get_family("moe_silu_mul_quantize")
for limit, clamped in ((0.0, False), (10.0, True)):
    p = fam.parse_params({"i": 256, "limit": limit})
    fn, args = fam.compile_args(p, "sm_100a")
    cute.compile(fn, *args, options="--gpu-arch sm_100a --enable-tvm-ffi")
    (f,) = pathlib.Path(sys.argv[1]).glob("*.ptx")
    text = f.read_text()
    f.unlink()
    # min(g, 10), max(u, -10), min(u, 10) as PTX immediates (moe_glue/kernel.py clamp_swiglu)
    assert all(c in text for c in ("min.f32", "0f41200000", "0fC1200000")) == clamped, limit
print("OK")
"""


@pytest.mark.slow
def test_silu_mul_quantize_clamp_reaches_sm100a_device_code(tmp_path):
    """The sm_100a MoERunner's silu_q with limit 10 carries the clamp in its PTX, limit 0 none
    (compiled only: no Blackwell GPU here; the same kernel's numerics are checked on Hopper)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CUTE_DSL_ARCH": "sm_100a", "CUDA_VISIBLE_DEVICES": "", "CUTE_DSL_NO_CACHE": "1",
           "CUTE_DSL_KEEP": "ptx", "CUTE_DSL_DUMP_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", CLAMP_CHECK, str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
