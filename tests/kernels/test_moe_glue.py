"""MoE glue families on the CPU: references against naive loops, signatures, can_implement,
and a build of every family at DeepSeek-V4 sizes for sm_90a and sm_100a."""

import json
import math
import subprocess
import sys

import pytest
import torch

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.family import compile_dim
from nvfp4_aot.kernels.moe_glue import capacity, capacity_expr
from nvfp4_aot.kernels.moe_glue.ref import (
    ROUTINGS,
    combine_inputs,
    combine_ref,
    make_routing,
    route_inputs,
    route_ref,
    silu_mul_ref,
)

ROUTE = get_family("moe_route")
SILU = get_family("moe_silu_mul")
COMBINE = get_family("moe_combine")


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
    cmd = [sys.executable, "-m", "nvfp4_aot.build.cli", "compile", str(manifest), "-o", str(out), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    entries = read_index(out)["entries"]
    assert len(entries) == 8  # route 2 buckets + silu 1 + combine 1, x 2 archs
    assert {(e["family"], e["arch"]) for e in entries.values()} == {
        (f, a) for f in ("moe_route", "moe_silu_mul", "moe_combine") for a in ("sm_90a", "sm_100a")
    }
    r = subprocess.run([sys.executable, "-m", "nvfp4_aot.build.cli", "verify", "--load", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
