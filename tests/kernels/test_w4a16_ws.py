"""w4a16_ws_grouped_gemm / w4a16_ws_gemm on the CPU box: registration, signature (THE Hopper
W4A16 weight layout), refusals, the groupings, the reference and a check that can fail, and
(slow) a real build + verify of one variant per family (cute.compile on fake tensors, ptxas)."""


import pytest
import torch
from conftest import build_and_verify, check_grouped_reference

from nvfp4_aot.kernels import eval_dim, families, get_family
from nvfp4_aot.kernels.w4a16_ws import smem_bytes

GROUPED = get_family("w4a16_ws_grouped_gemm")
DENSE = get_family("w4a16_ws_gemm")
CPU = torch.device("cpu")


def params(fam=GROUPED, **kw):
    base = {"n": 6144, "k": 7168, "experts": 48} if fam is GROUPED else {"n": 2048, "k": 7168}
    return fam.parse_params({**base, **kw})


def test_registered_and_signature():
    assert families()["w4a16_ws_grouped_gemm"] is GROUPED and families()["w4a16_ws_gemm"] is DENSE
    sig = GROUPED.signature(params())
    env = {**sig.static, "M": 5}
    shapes = {a.name: tuple(eval_dim(d, env) for d in a.shape) for a in sig.args}
    assert shapes == {"act": (5, 7168), "blob": (48, 96, 112, 128, 16), "sf": (48, 96, 112, 32, 4, 2),
                      "alpha": (48, 6144), "offsets": (49,), "counts": (48,), "out": (5, 6144)}
    sig = DENSE.signature(params(DENSE))
    env = {**sig.static, "M": 3}
    shapes = {a.name: tuple(eval_dim(d, env) for d in a.shape) for a in sig.args}
    assert shapes == {"act": (3, 7168), "blob": (32, 112, 128, 16), "sf": (32, 112, 32, 4, 2), "alpha": (2048,),
                      "out": (3, 2048)}
    assert [a.name for a in sig.args if a.output] == ["out"]


def test_can_implement_names_the_problem():
    for tun in ({}, {"tile_m": 256}, {"tile_n": 256}, {"tile_n": 64, "stages": 12}, {"tile_m": 256, "stages": 8},
                {"tile_m": 256, "tile_n": 64, "wgs": 4}):
        assert GROUPED.can_implement(params(**tun), "sm_90a") == [], tun
    assert any("sm_100a" in r for r in GROUPED.can_implement(params(), "sm_100a"))
    msgs = " | ".join(GROUPED.can_implement(params(n=100, k=300, tile_m=64, tile_n=48, stages=1), "sm_90a"))
    for frag in ("k=300", "tile_m=64", "tile_n=48", "stages=1"):
        assert frag in msgs, frag
    assert any("n=320" in r for r in GROUPED.can_implement(params(n=320), "sm_90a"))
    assert any("accumulators" in r for r in GROUPED.can_implement(params(tile_m=256, tile_n=256), "sm_90a"))
    big = params(tile_n=256, stages=7)
    assert smem_bytes(128, 256, 7, 48) > 227 * 1024
    assert any("shared memory" in r and "stages=7" in r for r in GROUPED.can_implement(big, "sm_90a"))
    assert any("dense family" in r for r in DENSE.can_implement(params(DENSE, experts=2), "sm_90a"))
    assert any("wgs=3" in r for r in GROUPED.can_implement(params(wgs=3), "sm_90a"))
    # wgs 1: one consumer warpgroup holds the whole tile (tile_m x tile_n / 128 accumulators per thread)
    for tun in ({"wgs": 1}, {"wgs": 1, "tile_m": 256, "tile_n": 64, "stages": 12}, {"wgs": 1, "tile_n": 64}):
        assert GROUPED.can_implement(params(**tun), "sm_90a") == [], tun
    assert any("256 accumulators" in r for r in GROUPED.can_implement(params(wgs=1, tile_n=256), "sm_90a"))
    assert any("not a multiple of wgs=4" in r for r in GROUPED.can_implement(params(wgs=4, tile_n=64), "sm_90a"))
    assert any("C7512" in r for r in GROUPED.can_implement(params(tile_m=256, wgs=4), "sm_90a"))
    assert any("pipe=32" in r for r in GROUPED.can_implement(params(pipe=32), "sm_90a"))
    assert GROUPED.can_implement(params(pipe=64), "sm_90a") == []


def test_epi_depth_raster_knobs():
    """epi's staging blocks count against shared memory; depth 3 only on the pipe-16 loop with a
    ring of >= 3 stages; raster in RASTERS. The staging blocks fit the tilings the tables use."""
    assert smem_bytes(128, 256, 6, 48, 2, 1) - smem_bytes(128, 256, 6, 48, 2, 0) == 4096
    assert smem_bytes(256, 64, 8, 48, 4, 1) - smem_bytes(256, 64, 8, 48, 4, 0) == 8192
    for tun in ({"tile_n": 256, "stages": 6}, {"tile_m": 256, "stages": 8}, {"tile_m": 256, "tile_n": 64, "stages": 8,
                "wgs": 4}, {"tile_n": 256, "stages": 6, "depth": 3, "raster": 2},
                {"epi": 0, "tile_n": 256, "stages": 6}, {"raster": -16}):
        assert GROUPED.can_implement(params(**tun), "sm_90a") == [], tun
    assert any("epi=4" in r for r in GROUPED.can_implement(params(epi=4), "sm_90a"))
    assert any("depth=4" in r for r in GROUPED.can_implement(params(depth=4), "sm_90a"))
    assert any("pipe-16 loop only" in r for r in GROUPED.can_implement(params(depth=3, pipe=64), "sm_90a"))
    assert any("stages=2" in r for r in GROUPED.can_implement(params(depth=3, stages=2), "sm_90a"))
    assert any("raster=3" in r for r in GROUPED.can_implement(params(raster=3), "sm_90a"))


@pytest.mark.parametrize("g", [1, 2, 4, 8, -4, -8, -16])
def test_raster_item_is_a_bijection(g):
    """Every (token tile, weight tile) of an expert exactly once, token (g > 0) or weight tiles
    (g < 0) in bands of |g|."""
    from nvfp4_aot.kernels.w4a16_ws.kernel import raster_item

    for tiles in (1, 2, 3, 5, 8, 13):
        for mt in (1, 3, 16, 56):
            got = [raster_item(i, tiles, mt, g) for i in range(tiles * mt)]
            assert sorted(got) == [(j, m) for j in range(tiles) for m in range(mt)], (tiles, mt)
            if g > 0:
                assert all(j // g == i // (g * mt) for i, (j, _) in enumerate(got)), (tiles, mt)
            else:
                assert all(m // -g == i // (-g * tiles) for i, (_, m) in enumerate(got)), (tiles, mt)
            if g == 1:
                assert got == [(i // mt, i % mt) for i in range(tiles * mt)]


def test_reference_and_a_check_that_fails():
    """The reference matches a per-row float64 recomputation with each row's own expert and alpha;
    the check passes it and fails a swapped expert, an unwritten row and a write into padding."""
    p = GROUPED.parse_params({"n": 128, "k": 128, "experts": 3})
    inputs = GROUPED.make_inputs(p, 400, CPU, seed=9, dist="uniform")
    want = GROUPED.reference(p, inputs)
    got = check_grouped_reference(GROUPED, p, inputs, want)
    kernel_args = {k: v for k, v in inputs.items() if k not in ("w_q", "w_sf")}  # inverts the layout
    assert torch.equal(GROUPED.reference(p, kernel_args)["out"].nan_to_num(7), want["out"].nan_to_num(7))
    pad = [r for r in range(400) if torch.isnan(want["out"][r]).all()]
    assert pad, "the grouping left no padding row"
    stray = got["out"].clone()
    stray[pad[0]] = 1.0
    assert any("outside" in b for b in GROUPED.check(p, {"out": stray}, want))


MANIFEST = """
archs = ["sm_90a"]
[[op]]
family = "w4a16_ws_grouped_gemm"
problem = { n = 256, k = 192, experts = 3 }
buckets = [ { m = [1, 65536], tuning = { tile_m = 256, tile_n = 128, stages = 4 } } ]
[[op]]
family = "w4a16_ws_gemm"
problem = { n = 128, k = 128 }
buckets = [ { m = [1, 65536], tuning = { tile_m = 128, tile_n = 64, stages = 2 } } ]
"""


@pytest.mark.slow
def test_build_and_verify(tmp_path):
    build_and_verify(tmp_path, MANIFEST, built=2)


def _prmt(a, b, sel):
    """PTX prmt.b32 (default mode): selector nibble i picks byte (nibble & 7) of b:a for result
    byte i; with bit 3 set it replicates that byte's top bit instead."""
    src = [(a >> (8 * i)) & 0xFF for i in range(4)] + [(b >> (8 * i)) & 0xFF for i in range(4)]
    out = 0
    for i in range(4):
        nib = (sel >> (4 * i)) & 15
        byte = src[nib & 7]
        out |= ((0xFF if byte & 0x80 else 0) if nib & 8 else byte) << (8 * i)
    return out


def _bf16(bits):
    import struct

    return struct.unpack("<f", struct.pack("<I", (bits & 0xFFFF) << 16))[0]


def test_decode_replay_is_exact():
    """Replay of ptx.decode_k16 / scale_pair step by step on the CPU (the same tables, selectors and
    masks): every E2M1 code pair decodes to v * 2^120, every pair of finite E4M3 bytes to the lanes (s_lo * 2^-120, s_hi * 2^-120) of one register, so
    the kernel's bf16 product is v * s exactly."""
    from nvfp4_aot.kernels.w4a16_ws.ptx import LUT_HI, LUT_LO
    from nvfp4_aot.runtime.nvfp4 import E2M1_VALUES

    lut = list(E2M1_VALUES) + [-v for v in E2M1_VALUES]
    for x in [b * 0x01010101 for b in range(256)] + [0x76543210, 0xFEDCBA98, 0x8F0F7F80]:
        xm, xs = x & 0x77777777, (x << 4) & 0xFFFFFFFF
        planes = []
        for sel, sgn in ((xm, _prmt(xs, x, 0x5140)), (xm >> 16, _prmt(xs, x, 0x7362))):
            lo = _prmt(LUT_LO[0], LUT_LO[1], sel)
            hi = _prmt(LUT_HI[0], LUT_HI[1], sel) | (sgn & 0x80808080)
            planes += [_prmt(lo, hi, 0x5140), _prmt(lo, hi, 0x7362)]
        for j, r in enumerate(planes):
            byte = (x >> (8 * j)) & 0xFF
            assert _bf16(r) * 2.0**-120 == lut[byte & 15] and _bf16(r >> 16) * 2.0**-120 == lut[byte >> 4], hex(x)
    from nvfp4_aot.kernels.w4a16_ws.ptx import PAIR_MASK, pair_selector

    e4m3 = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().tolist()
    finite = [b for b in range(256) if b not in (0x7F, 0xFF)]  # NaN: not a valid scale
    for lo in finite:
        for hi in (finite if lo % 17 == 0 else (lo, 0x00, 0x80, 0x7E, 0xFE, 0x01)):
            for i in (0, 2):  # the two pairs of a scale word (k16 blocks 0/2 and 1/3)
                w = (lo << (8 * i)) | (hi << (8 * (i + 1))) | (0xA5 << (8 * (2 - i))) | (0x5A << (8 * (3 - i)))
                r = (_prmt(w, 0, pair_selector(i)) << 4) & PAIR_MASK
                assert _bf16(r) * 2.0**120 == e4m3[lo] and _bf16(r >> 16) * 2.0**120 == e4m3[hi], (hex(lo), hex(hi))


@pytest.mark.parametrize("wgs,tile_m", [(1, 128), (1, 256), (2, 128), (2, 256), (4, 256)])
def test_setmaxnreg_fits_the_launch_pool(wgs, tile_m):
    """The consumers' setmaxnreg.inc must fit the registers the producer frees inside the CTA's
    launch pool (else it waits forever: the 4-warpgroup variant hung an H200 run at 120 of 96)."""
    from nvfp4_aot.kernels.w4a16_ws.kernel import PRODUCER_REGS, REGS, W4A16WsKernel

    k = W4A16WsKernel(512, 256, 2, True, tile_m, 64, 4, 132, wgs)
    launch = REGS // k.threads // 8 * 8
    assert k.consumer_regs % 8 == 0 and k.consumer_regs <= 256  # setmaxnreg's range: 24 .. 256
    assert k.consumer_regs == {1: 256, 2: 240, 4: 112}[wgs]
    assert PRODUCER_REGS * 128 + k.consumer_regs * 128 * wgs <= launch * k.threads


def test_grouped_tile_table_is_valid_for_the_dsv4_shapes():
    """Every row of the measured table can be built for L1 / L2 at 48 experts, and the buckets are
    per tokens per expert (rows = t * experts)."""
    for n, k in ((6144, 7168), (7168, 3072)):
        problem = {"n": n, "k": k, "experts": 48}
        table = GROUPED.tile_table(problem)
        assert [hi for hi, _ in table] == [60 * 48, 128 * 48, None]
        for _, tun in table:
            assert GROUPED.can_implement(GROUPED.parse_params({**problem, **tun}), "sm_90a") == [], tun


def test_tuned_manifest_agrees_with_the_tile_table():
    import tomllib
    from pathlib import Path

    from nvfp4_aot.build.plan import make_buckets

    doc = tomllib.loads((Path(__file__).parents[2] / "manifests" / "w4a16_ws_tuned.toml").read_text())
    for op in doc["op"]:
        want = make_buckets(GROUPED.tile_table(op["problem"]), 65536, (), False)
        got = [(b["m"][0], b["m"][1], b["tuning"]) for b in op["buckets"]]
        assert got == want, op["problem"]
