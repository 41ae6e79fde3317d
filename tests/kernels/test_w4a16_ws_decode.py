"""w4a16_ws decode tiles (session 7, `wgdec`): tile_n 16 / 32 tokens (wgmma m64n16k16 / m64n32k16) and
grouped ctas 2 with them, on the CPU box: the validity rules (the families' one predicate), the
layout invariants a small token tile relies on, the register pool of two grouped CTAs per SM, and an
emulation of the grouped persistent schedule (kernel.py _build_prefix / _locate / raster_item) for
many experts with few rows each. The GPU checks are tests/gpu/ws_check.toml's decode-tile ops."""

import random

import pytest

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.hopper import SMEM_PER_BLOCK, SMEM_PER_SM
from nvfp4_aot.kernels.w4a16_ws import DECODE_TILE_NS, EPI_WARP_BYTES, TILE_NS, smem_bytes
from nvfp4_aot.kernels.w4a16_ws.kernel import PRODUCER_REGS, REGS, W4A16WsKernel, raster_item

GROUPED = get_family("w4a16_ws_grouped_gemm")
DENSE = get_family("w4a16_ws_gemm")
SHAPES = ((6144, 7168), (7168, 3072))  # DeepSeek-V4 routed L1 / L2


def gp(n=6144, k=7168, experts=48, **kw):
    return GROUPED.parse_params({"n": n, "k": k, "experts": experts, **kw})


@pytest.mark.parametrize("n,k", SHAPES)
def test_decode_tiles_are_valid_on_the_dsv4_shapes(n, k):
    for tile_n in DECODE_TILE_NS:
        for tun in ({"tile_m": 128}, {"tile_m": 256}, {"tile_m": 256, "wgs": 4}, {"tile_m": 128, "pipe": 64},
                    {"tile_m": 256, "pipe": 64, "raster": 2}, {"tile_m": 128, "ctas": 2},
                    {"tile_m": 128, "ctas": 2, "pipe": 64}, {"tile_m": 256, "ctas": 2, "stages": 6},
                    {"tile_m": 256, "depth": 3, "stages": 8}):
            p = gp(n, k, tile_n=tile_n, stages=tun.pop("stages", 8), **tun)
            assert GROUPED.can_implement(p, "sm_90a") == [], (tile_n, tun)


def test_decode_tile_refusals_name_the_knob():
    assert any("tile_n=48" in r for r in GROUPED.can_implement(gp(tile_n=48), "sm_90a"))
    assert any("tile_n=8" in r for r in GROUPED.can_implement(gp(tile_n=8), "sm_90a"))
    # grouped ctas 2 only with a decode tile; the dense rules (wgs 2, accumulators, shared memory per SM) hold
    assert any("decode tile" in r for r in GROUPED.can_implement(gp(tile_n=64, ctas=2), "sm_90a"))
    assert any("wgs=2" in r for r in GROUPED.can_implement(gp(tile_m=256, tile_n=16, wgs=4, ctas=2), "sm_90a"))
    assert 2 * (smem_bytes(256, 32, 12, 48, 2, 1) + 1024) > SMEM_PER_SM
    assert any("per SM" in r for r in GROUPED.can_implement(gp(tile_m=256, tile_n=32, stages=12, ctas=2), "sm_90a"))
    assert smem_bytes(256, 32, 12, 48, 2, 1) <= SMEM_PER_BLOCK  # one CTA: fine
    # two CTAs per SM, pipe 64 and two m64 blocks per warpgroup: ptxas serializes the wgmmas (CPU-box SASS)
    for fam, p in ((GROUPED, gp(tile_m=256, tile_n=16, stages=6, ctas=2, pipe=64)),
                   (DENSE, DENSE.parse_params({"n": 2048, "k": 7168, "tile_m": 256, "tile_n": 32, "ctas": 2, "pipe": 64}))):
        assert any("serializes" in r for r in fam.can_implement(p, "sm_90a")), p
    assert GROUPED.can_implement(gp(tile_m=256, tile_n=32, stages=12), "sm_90a") == []
    # the dense family takes the decode tiles too (M <= 16 / 32), with its own knobs
    assert DENSE.can_implement(DENSE.parse_params({"n": 2048, "k": 7168, "tile_n": 16, "split_k": 8, "pdl": True}),
                               "sm_90a") == []


def test_small_token_tiles_keep_the_layout_invariants():
    """The activation stage (tile_n rows of 128 B, 128-byte swizzle) must be whole 1024-byte SW128
    atoms (sw128_desc: 8-row atoms, SBO 1024, stage bases 1024-aligned), and epi 1 stores 16-token
    chunks (tile_n // 16 of them): every tile_n a multiple of 16, or tokens would go unstored."""
    for tile_n in TILE_NS:
        assert tile_n * 128 % 1024 == 0 and tile_n % 16 == 0, tile_n
        k = W4A16WsKernel(512, 256, 2, True, 128, tile_n, 4, 132)
        assert k.act_bytes == tile_n * 128 and k.acc_n == tile_n // 2
    assert EPI_WARP_BYTES == 16 * 16 * 2  # one 16-token x 16-row bf16 block per consumer warp


@pytest.mark.parametrize("tile_m,tile_n", [(128, 16), (256, 16), (256, 32)])
def test_grouped_ctas_2_fits_the_register_pool(tile_m, tile_n):
    """Two grouped CTAs per SM: launch bound REGS / (2 x 384) -> 80 registers, the consumers' 104 fit
    what the producer frees (else setmaxnreg.inc waits forever), and the grid is 2 x sm_count."""
    k = W4A16WsKernel(tile_m * 4, 512, 48, True, tile_m, tile_n, 4, 132, 2, ctas=2)
    launch = REGS // (k.threads * 2) // 8 * 8
    assert launch == 80 and k.consumer_regs == 104
    assert PRODUCER_REGS * 128 + k.consumer_regs * 128 * 2 <= launch * k.threads
    assert tile_m * tile_n // 256 <= 32  # CTAS2_MAX_ACC: accumulators per consumer thread


# ------------------------------------------------------------------ schedule emulation
def prefix(offsets, counts, m_rows, tile_n, mt):
    """kernel.py _build_prefix: clamped (start, count) per expert and the inclusive prefix of items."""
    starts, cnts, pre, own = [], [], [], 0
    for off, c in zip(offsets, counts):
        st = min(max(off, 0), m_rows)
        c = min(max(c, 0), m_rows - st)
        starts.append(st)
        cnts.append(c)
        own += -(-c // tile_n) * mt
        pre.append(own)
    return starts, cnts, pre


def locate(w, pre, mt, raster):
    """kernel.py _locate: binary lifting over the inclusive prefix, then raster_item."""
    E, e = len(pre), 0
    for i in range(E.bit_length() - 1, -1, -1):
        if e + (1 << i) <= E and pre[e + (1 << i) - 1] <= w:
            e += 1 << i
    before = pre[e - 1] if e > 0 else 0
    j, m = raster_item(w - before, (pre[e] - before) // mt, mt, raster)
    return e, j, m


def routed(t, experts, rng, kind):
    rows = t * experts
    if kind == "routed":  # each routed slot to a uniformly random expert (MoERunner's groups at t = rows / E)
        counts = [0] * experts
        for _ in range(rows):
            counts[rng.randrange(experts)] += 1
    elif kind == "skewed":
        counts = [0] * experts
        counts[rng.randrange(experts)] = rows // 2
        for _ in range(rows - rows // 2):
            counts[rng.randrange(experts)] += 1
    else:  # some experts idle, the rest uniform
        live = rng.sample(range(experts), experts // 3)
        counts = [t * 3 if e in live else 0 for e in range(experts)]
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    return offsets, counts


@pytest.mark.parametrize("tile_n", DECODE_TILE_NS)
@pytest.mark.parametrize("raster", [1, 2, -4])
@pytest.mark.parametrize("ctas", [1, 2])
def test_decode_schedule_covers_each_row_and_weight_tile_once(tile_n, raster, ctas):
    """48 experts at t = 1 .. 32 routed rows each (and skewed / partly idle groups, and one corrupt
    count, clamped into [0, M): wrong rows at worst, as documented): the persistent grid of ctas x 132
    CTAs, CTA b taking items b, b + grid, ..., runs every (expert, row, weight tile) of the clamped
    groups exactly once, never a row outside them, and (valid groups) no output element twice."""
    rng = random.Random(tile_n * 7 + raster + ctas)
    mt, experts, grid = 6, 48, 132 * ctas
    for t in (1, 4, 16, 32):
        for kind in ("routed", "skewed", "idle"):
            offsets, counts = routed(t, experts, rng, kind)
            m_rows = offsets[-1]
            if kind == "idle":
                counts[5] += 1000  # corrupt: clamped into [0, M)
            starts, cnts, pre = prefix(offsets[:-1], counts, m_rows, tile_n, mt)
            total = pre[-1]
            seen = {}
            for b in range(grid):
                for w in range(b, total, grid):
                    e, j, m = locate(w, pre, mt, raster)
                    assert 0 <= e < experts and 0 <= m < mt and j * tile_n < cnts[e]
                    for tok in range(j * tile_n, min((j + 1) * tile_n, cnts[e])):  # the epilogue's tok < count
                        key = (e, starts[e] + tok, m)
                        assert key not in seen and starts[e] + tok < m_rows, (key, j, w)
                        seen[key] = w
            want = {(e, starts[e] + r, m) for e in range(experts) for r in range(cnts[e]) for m in range(mt)}
            assert set(seen) == want, (t, kind)
            if kind != "idle":  # valid groups: no output element written twice
                assert len({(r, m) for _, r, m in seen}) == len(seen)
            assert total == sum(-(-c // tile_n) * mt for c in cnts)


def test_raster_2_runs_an_experts_token_tiles_of_one_weight_tile_together():
    """At t = 16 with 16-token tiles about half the routed experts get two token tiles; raster 2
    makes them consecutive items (running at the same time on neighbouring CTAs), so the second
    read of that weight tile is an L2 hit rather than a second DRAM read (raster 1 puts them mt
    items apart)."""
    mt, tile_n = 48, 16
    rng = random.Random(3)
    offsets, counts = routed(16, 48, rng, "routed")
    starts, cnts, pre = prefix(offsets[:-1], counts, offsets[-1], tile_n, mt)
    two = [e for e in range(48) if cnts[e] > tile_n]
    assert len(two) >= 10  # the premise: many experts need a second token tile
    for raster, gap in ((2, 1), (1, mt)):
        pos = {locate(w, pre, mt, raster): w for w in range(pre[-1])}
        for e in two:
            for m in range(mt):
                assert pos[(e, 1, m)] - pos[(e, 0, m)] == gap, (raster, e, m)


def test_decode_sweep_manifests_are_valid_decode_tilings():
    """manifests/w4a16_ws_decode_*.toml (the next GPU run's candidates): each one tiling of L1 and L2
    at 48 experts, valid, a decode tile."""
    import tomllib
    from pathlib import Path

    paths = sorted((Path(__file__).parents[2] / "manifests").glob("w4a16_ws_decode_*.toml"))
    assert len(paths) >= 8
    for path in paths:
        doc = tomllib.loads(path.read_text())
        assert [(o["problem"]["n"], o["problem"]["k"]) for o in doc["op"]] == list(SHAPES), path.name
        for o in doc["op"]:
            (bucket,) = o["buckets"]
            p = GROUPED.parse_params({**o["problem"], **bucket["tuning"]})
            assert p.tile_n in DECODE_TILE_NS and GROUPED.can_implement(p, "sm_90a") == [], path.name
