"""quack_w4a16_grouped_gemm on the CPU box: spec and refusals, the stacked-expert operand layout
(weight tile e * MT + m of the stacked view is expert e's tile m, byte for byte), the padded
groupings, the reference and a check that can fail, and (slow) a real build + verify."""


import pytest
import torch
from conftest import build_and_verify, check_grouped_reference

from nvfp4_aot.kernels import eval_dim, families, get_family
from nvfp4_aot.kernels.quack_w4a16.grouped_family import padded_groups
from nvfp4_aot.kernels.quack_w4a16.prepare import prepare_weights, random_nvfp4_weights
from nvfp4_aot.runtime.validate import CallValidator

FAM = get_family("quack_w4a16_grouped_gemm")
CPU = torch.device("cpu")


def params(**kw):
    return FAM.parse_params({"n": 6144, "k": 7168, "experts": 48, **kw})


def test_registered_and_signature():
    assert families()["quack_w4a16_grouped_gemm"] is FAM
    assert FAM.archs == ("sm_90a",) and FAM.third_party == ("quack-kernels",)
    sig = FAM.signature(params())
    assert [a.name for a in sig.args] == ["act", "blob", "sf", "alpha", "offsets", "out"]
    env = {**sig.static, "M": 5}
    shapes = {a.name: tuple(eval_dim(d, env) for d in a.shape) for a in sig.args}
    assert shapes == {"act": (5, 7168), "blob": (48, 96, 112, 128, 16), "sf": (48, 96, 112, 32, 4, 2),
                      "alpha": (48, 6144), "offsets": (49,), "out": (5, 6144)}
    assert [a.name for a in sig.args if a.output] == ["out"]


def test_can_implement():
    assert FAM.can_implement(params(), "sm_90a") == []
    assert FAM.can_implement(params(tile_m=64, tile_n=256), "sm_90a") == []
    assert FAM.can_implement(params(), "sm_100a")
    assert any("tile_n" in r for r in FAM.can_implement(params(tile_n=96), "sm_90a"))
    assert FAM.can_implement(params(tile_m=64, tile_n=16), "sm_90a") == []
    assert any("tile_m" in r for r in FAM.can_implement(params(tile_m=256), "sm_90a"))
    assert any("straddles" in r for r in FAM.can_implement(params(n=6144 + 64), "sm_90a"))
    assert any("k=" in r for r in FAM.can_implement(params(k=7168 + 32), "sm_90a"))
    assert any("experts" in r for r in FAM.can_implement(params(experts=0), "sm_90a"))


@pytest.mark.parametrize("tile_m", [64, 128])
def test_stacked_view_tile_is_the_experts_own_tile(tile_m):
    """grouped.py hands the mainloop weight tile e * (N / tile_m) + m of the stacked [E, N/64, ...]
    blob viewed as E * N rows: that view must address exactly expert e's dense tile m (blob and
    scale strip), as quack's own per-matrix view of expert e would."""
    from nvfp4_aot.kernels.quack_support import import_quack_package

    import_quack_package()
    from nvfp4_aot.kernels.quack_w4a16.kernel import FORMAT
    from quack.operand_transform.host import _w4_views, as_transform_mod

    fmt = as_transform_mod(FORMAT).owned_fmt
    e, n, k = 3, 256, 128
    gen = torch.Generator().manual_seed(3)
    per = [prepare_weights(*random_nvfp4_weights(n, k, gen, CPU)) for _ in range(e)]
    blob = torch.stack([b for b, _ in per])
    strip = torch.stack([s for _, s in per])
    g = e * n // 64
    sa, ss = _w4_views(fmt, blob.view(g, *blob.shape[2:]), strip.view(g, *strip.shape[2:]), tile_m)
    mt = n // tile_m
    for x in range(e):
        da, ds = _w4_views(fmt, per[x][0], per[x][1], tile_m)
        for m in range(mt):
            # (256, wpt, tm64, Gt, Kt, L) / (sfb, tm64, Gt, Kt, L): tile mode 3 / 2
            assert torch.equal(sa[:, :, :, x * mt + m], da[:, :, :, m])
            assert torch.equal(ss[:, :, x * mt + m], ds[:, :, m])


def test_padded_groups():
    offsets, counts = padded_groups([0, 1, 128, 129, 0, 300], 128)
    assert offsets.tolist() == [0, 0, 128, 256, 512, 512, 896]
    assert counts.tolist() == [0, 1, 128, 129, 0, 300]
    assert offsets.dtype == counts.dtype == torch.int32


@pytest.mark.parametrize("dist", ["uniform", "skewed", "single", "empty"])
def test_make_inputs_aligned_groups_and_validator(dist):
    p = FAM.parse_params({"n": 128, "k": 64, "experts": 4, "tile_n": 64})
    inputs = FAM.make_inputs(p, 1000, CPU, seed=5, dist=dist)
    off, cnt = inputs["offsets"], inputs["counts"]
    assert off[0] == 0 and bool((off[1:] >= off[:-1]).all()) and int(off[-1]) <= 1000
    assert bool((off % 64 == 0).all()) and bool((cnt <= off[1:] - off[:-1]).all())
    assert int(cnt.sum()) > 0
    v = CallValidator("sym", FAM.signature(p), device_type="cpu")
    v([inputs[a.name] for a in v.args])


def test_reference_and_a_check_that_fails():
    """The reference matches a per-row float64 recomputation with each row's own expert and alpha;
    the check passes it, leaves padding rows alone, and fails a swapped expert or unwritten rows."""
    p = FAM.parse_params({"n": 128, "k": 64, "experts": 3, "tile_n": 64})
    inputs = FAM.make_inputs(p, 512, CPU, seed=9, dist="uniform")
    want = FAM.reference(p, inputs)
    check_grouped_reference(FAM, p, inputs, want)


MANIFEST = """
archs = ["sm_90a"]
[[op]]
family = "quack_w4a16_grouped_gemm"
problem = { n = 256, k = 128, experts = 3, tile_n = 128 }
buckets = [ { m = [1, 65536], tuning = { tile_m = 128 } } ]
"""


@pytest.mark.slow
def test_build_and_verify(tmp_path):
    build_and_verify(tmp_path, MANIFEST, built=1)
