"""w4a16_ws_gemm's dense split-K on the CPU box: the validity rule, the scratch signature, a check
that catches flags left non-zero, and an emulation of the persistent split schedule and of the
last-arriver reduction with the kernel's own index functions (kernel.py split_item, reduce_slot,
ws_index), under random arrival orders."""

import math
import random

import pytest
import torch

from nvfp4_aot.kernels import eval_dim, get_family
from nvfp4_aot.kernels.w4a16_ws.kernel import reduce_slot, split_item, ws_index

DENSE = get_family("w4a16_ws_gemm")
GROUPED = get_family("w4a16_ws_grouped_gemm")


def dense(**kw):
    return DENSE.parse_params({"n": 2048, "k": 7168, **kw})


def test_split_k_validity():
    assert DENSE.can_implement(dense(tile_n=64, split_k=8), "sm_90a") == []  # 112 k64 steps / 8
    assert DENSE.can_implement(dense(split_k=7), "sm_90a") == []
    assert any("split_k=5" in r for r in DENSE.can_implement(dense(split_k=5), "sm_90a"))
    # 48 k64 steps: 3 divides, 7 does not; 32 steps in splits of 8: at least 4 each
    assert DENSE.can_implement(dense(n=7168, k=3072, split_k=3), "sm_90a") == []
    assert any("divide" in r for r in DENSE.can_implement(dense(n=7168, k=3072, split_k=7), "sm_90a"))
    assert any("at least 4" in r for r in DENSE.can_implement(dense(n=7168, k=448, split_k=7), "sm_90a"))
    g = GROUPED.parse_params({"n": 6144, "k": 7168, "experts": 48, "split_k": 2})
    assert any("grouped family does not split K" in r for r in GROUPED.can_implement(g, "sm_90a"))


def test_split_k_signature_has_trailing_scratch():
    assert all(not a.scratch for a in DENSE.signature(dense()).args)  # unsplit: today's signature
    p = dense(tile_m=128, tile_n=64, split_k=4)
    sig = DENSE.signature(p)
    env = {**sig.static, "M": 65}
    shapes = {a.name: tuple(eval_dim(d, env) for d in a.shape) for a in sig.args if a.scratch}
    assert [a.name for a in sig.args][-2:] == ["flags", "workspace"]
    assert shapes == {"flags": (2, 16, 8), "workspace": (2, 16, 4 * 128 * 64)}


def test_check_catches_flags_left_set():
    p = dense(n=256, k=512, tile_m=128, tile_n=64, split_k=2)
    inp = DENSE.make_inputs(p, 5, torch.device("cpu"), seed=1)
    assert not inp["flags"].any() and torch.isnan(inp["workspace"]).all()
    want = DENSE.reference(p, inp)
    got = {"out": want["out"].to(torch.bfloat16), "flags": inp["flags"].clone()}
    assert DENSE.check(p, got, want) == []
    got["flags"][0, 1, 3] = 1
    assert "not reset" in DENSE.check(p, got, want)[0]


@pytest.mark.parametrize("m,n,k,tile_m,tile_n,split_k,grid", [
    (64, 2048, 7168, 128, 64, 8, 132), (256, 7168, 3072, 128, 64, 3, 132), (33, 7168, 2048, 128, 128, 2, 132),
    (1000, 512, 1024, 256, 64, 4, 7), (5, 256, 512, 128, 64, 2, 3)])
def test_split_schedule_covers_every_k_step_once(m, n, k, tile_m, tile_n, split_k, grid):
    """The producer's and consumers' walk (CTA b: items b, b + grid, ...) over token tiles x weight
    tiles x splits covers every (token tile, weight tile, k64 step) exactly once."""
    mt, kt = n // tile_m, k // 64
    ks = kt // split_k
    total = -(-m // tile_n) * mt * split_k
    seen = {}
    for b in range(grid):
        for i in range(max((total - b + grid - 1) // grid, 0)):
            item, k0 = split_item(b + i * grid, split_k, ks)
            j, mm = divmod(item, mt)  # _locate, dense (one expert)
            for kk in range(ks):
                key = (j, mm, k0 + kk)
                assert key not in seen
                seen[key] = b
    assert len(seen) == -(-m // tile_n) * mt * kt


@pytest.mark.parametrize("split_k,wgs,rb,an", [(2, 2, 1, 32), (3, 2, 2, 32), (8, 2, 1, 32), (4, 4, 1, 32), (7, 2, 1, 64)])
def test_last_arriver_reduction_emulated(split_k, wgs, rb, an):
    """Every (output tile, consumer warp) slot: split_k warps arrive in a random order, each stores
    its partial at ws_index, then increments the slot's flag; the one that sees split_k - 1 sums
    the split_k partials in split order and resets the flag. Result: the exact split-order fp32
    sum whatever the arrival order, flags all zero after, every workspace index inside the
    signature's buffer and written by exactly one (slot, split, lane, accumulator)."""
    rng = random.Random(split_k * 31 + wgs)
    tiles_j, mt = 3, 2
    per = 32 * an * rb
    p = dense(n=mt * 64 * wgs * rb, k=64 * 4 * split_k, tile_m=64 * wgs * rb, tile_n=2 * an, wgs=wgs,
              split_k=split_k, stages=2)
    env = {"N": p.n, "K": p.k, "M": tiles_j * p.tile_n}
    sizes = {a.name: math.prod(eval_dim(d, env) for d in a.shape) for a in DENSE.signature(p).args if a.scratch}
    flags = torch.zeros(sizes["flags"], dtype=torch.int32)
    ws = torch.full((sizes["workspace"],), float("nan"), dtype=torch.float32)
    owner = {}
    parts = torch.randn(tiles_j, mt, wgs, 4, split_k, 32, per // 32)
    outs = {}
    for j in range(tiles_j):
        for m in range(mt):
            for cw in range(wgs):
                for wq in range(4):
                    slot = reduce_slot(j, m, cw, wq, mt, wgs)
                    assert slot < sizes["flags"]
                    order = list(range(split_k))
                    rng.shuffle(order)
                    for s in order:
                        for lane in range(32):
                            for idx in range(per // 32):
                                i = ws_index(slot, s, lane, idx, split_k, per)
                                assert owner.setdefault(i, (slot, s, lane, idx)) == (slot, s, lane, idx)
                                ws[i] = parts[j, m, cw, wq, s, lane, idx]
                        old = int(flags[slot])
                        flags[slot] += 1
                        if old == split_k - 1:
                            acc = torch.stack([ws[[ws_index(slot, s2, ln, ix, split_k, per) for ln in range(32)
                                                   for ix in range(per // 32)]] for s2 in range(split_k)])
                            total = acc[0].clone()
                            for s2 in range(1, split_k):
                                total = total + acc[s2]
                            flags[slot] = 0
                            outs[(j, m, cw, wq)] = total
                    assert (j, m, cw, wq) in outs
    assert not flags.any()
    assert len(owner) == sizes["workspace"] and max(owner) == sizes["workspace"] - 1
    for (j, m, cw, wq), got in outs.items():
        want = parts[j, m, cw, wq, 0].reshape(-1).clone()
        for s in range(1, split_k):
            want = want + parts[j, m, cw, wq, s].reshape(-1)
        assert torch.equal(got, want)


def test_ctas_validity():
    """ctas 2 (dense; grouped only with the decode tiles, test_w4a16_ws_decode.py): two CTAs per SM need wgs 2, at most 32 accumulators per consumer thread
    (128 x 64) and both rings in the SM's shared memory; the split factors reach 16."""
    assert DENSE.can_implement(dense(tile_n=64, stages=8, split_k=16, ctas=2, pdl=True), "sm_90a") == []
    assert DENSE.can_implement(dense(n=7168, k=3072, tile_n=64, split_k=12), "sm_90a") == []
    assert any("ctas=3" in r for r in DENSE.can_implement(dense(ctas=3), "sm_90a"))
    assert any("accumulators" in r and "ctas=2" in r for r in DENSE.can_implement(dense(ctas=2), "sm_90a"))  # 128x128
    assert any("accumulators" in r for r in DENSE.can_implement(dense(tile_m=256, tile_n=64, ctas=2), "sm_90a"))
    assert any("wgs=2" in r for r in DENSE.can_implement(dense(tile_m=256, tile_n=64, wgs=4, ctas=2), "sm_90a"))
    assert any("per SM" in r for r in DENSE.can_implement(dense(tile_n=64, stages=12, ctas=2), "sm_90a"))
    assert DENSE.can_implement(dense(tile_n=64, stages=8, ctas=2), "sm_90a") == []
    g = GROUPED.parse_params({"n": 6144, "k": 7168, "experts": 48, "tile_n": 64, "ctas": 2})
    assert any("decode tile" in r for r in GROUPED.can_implement(g, "sm_90a"))  # grouped: tile_n 16 / 32 only
    assert any("at least 4" in r for r in DENSE.can_implement(dense(n=7168, k=2048, split_k=16), "sm_90a"))


def test_ctas_2_halves_the_register_pool():
    """Two CTAs per SM: the launch bound is REGS / (2 x 384 threads) -> 80, and the consumers'
    setmaxnreg.inc (104) fits what the producer frees inside that pool (else it waits forever)."""
    from nvfp4_aot.kernels.w4a16_ws.kernel import PRODUCER_REGS, REGS, W4A16WsKernel

    k = W4A16WsKernel(2048, 7168, 1, False, 128, 64, 8, 132, 2, split_k=16, ctas=2)
    launch = REGS // (k.threads * 2) // 8 * 8
    assert launch == 80 and k.consumer_regs == 104
    assert PRODUCER_REGS * 128 + k.consumer_regs * 128 * 2 <= launch * k.threads


def test_red_parts_and_validity():
    """red 1 (pairs of splits in clusters of 2): parts = 2 token halves (1 when the tile is one 16-token chunk); the
    flags scratch gets a flag per (tile, warp, half) (the pairs' halves meet in L2 when split_k > 2); split_k must be
    even, without mc 2 / ctas 2, and the fp32 partial must fit in the activation ring."""
    from nvfp4_aot.kernels.w4a16_ws import red_parts

    assert [red_parts(dense(tile_m=64, wgs=1, tile_n=256, split_k=s, red=1)) for s in (2, 4, 8)] == [2, 2, 2]
    assert red_parts(dense(tile_m=64, wgs=1, tile_n=16, split_k=4, red=1)) == 1
    assert red_parts(dense(tile_n=64, split_k=8)) == 1
    p = dense(tile_m=64, wgs=1, tile_n=64, split_k=4, red=1, pdl=True)
    assert DENSE.can_implement(p, "sm_90a") == []
    env = {**DENSE.signature(p).static, "M": 65}
    flags = next(a for a in DENSE.signature(p).args if a.name == "flags")
    assert tuple(eval_dim(d, env) for d in flags.shape) == (2, 32, 4 * 2)

    def why(**kw):
        return " ".join(DENSE.can_implement(dense(**kw), "sm_90a"))

    assert "split_k > 1" in why(red=1)
    assert "must be even" in why(tile_m=64, wgs=1, tile_n=64, split_k=7, red=1)
    assert "needs stages >= 8" in why(tile_m=256, tile_n=64, stages=4, split_k=4, red=1)
    assert "ctas=1" in why(tile_m=64, wgs=1, tile_n=32, split_k=4, red=1, ctas=2)
    assert "red=2 must be one of" in why(split_k=2, red=2)


@pytest.mark.parametrize("split_k,tile_n,rb,seed", [(2, 256, 1, 0), (4, 64, 1, 1), (2, 128, 2, 2), (8, 64, 1, 3),
                                                    (6, 128, 1, 4), (4, 16, 2, 5), (16, 32, 1, 6)])
def test_cluster_reduction_emulated(split_k, tile_n, rb, seed):
    """red 1 on one output tile (stream.py _split_reduce_cluster / _pairs_reduce), per warp, every interleaving of the
    pairs' L2 arrivals: split s's CTA keeps its partial in shared memory ([warp][r][v][lane][4]); rank r < P of pair q
    sums half r's vectors of CTAs 2q, 2q + 1; split_k 2 stores it; else it goes to workspace slot ((tile, warp, half),
    q) and the last of the S / 2 arrivals on the (tile, warp, half) flag sums the pairs' halves in pair order and
    stores them. Every column is stored exactly once, as ((s0 + s1) + (s2 + s3)) + ...: the same fp32 value whatever
    the arrival order; the vectors each rank reads are the columns its epilogue mask stores (_owns: col P / tile_n);
    flags are zero after."""
    from nvfp4_aot.kernels.w4a16_ws import red_parts

    rng = random.Random(seed)
    torch.manual_seed(seed)
    p = dense(tile_m=64 * rb, wgs=1, tile_n=tile_n, split_k=split_k, red=1)
    P, an = red_parts(p), tile_n // 2
    V = an // 4
    Vh, Q = V // P, split_k // 2
    W = 4  # warps of one consumer warpgroup
    smem = torch.randn(split_k, W, rb, V, 32, 4)  # each split's CTA's partials, as stored
    out = torch.full((W, rb, V, 32, 4), float("nan"))
    ws = {}  # (half, pair) -> the pair's half (L2)
    flags = [0] * P
    arrivals = [(q, h) for q in range(Q) for h in range(P)]  # (pair, its rank-h CTA) in a random order
    rng.shuffle(arrivals)
    for q, h in arrivals:
        vs = range(h * Vh, (h + 1) * Vh)
        # the columns of vector v (8 v .. 8 v + 7) are in part h by _owns' rule (col * P // tile_n)
        assert all(col * P // tile_n == h for v in vs for col in range(8 * v, 8 * v + 8))
        half = smem[2 * q][:, :, vs] + smem[2 * q + 1][:, :, vs]  # step 4: CTA 0's, then CTA 1's
        if split_k == 2:
            assert torch.isnan(out[:, :, vs]).all()
            out[:, :, vs] = half
            continue
        ws[h, q] = half
        old = flags[h]
        flags[h] += 1
        if old == Q - 1:  # the last arriver: pair order, whichever pair it is
            flags[h] = 0
            acc = ws[h, 0].clone()
            for q2 in range(1, Q):
                acc = acc + ws[h, q2]
            assert torch.isnan(out[:, :, vs]).all()  # each column once
            out[:, :, vs] = acc
    assert flags == [0] * P and not torch.isnan(out).any()
    want = smem[0] + smem[1]
    for q in range(1, Q):
        want = want + (smem[2 * q] + smem[2 * q + 1])
    assert torch.equal(out, want)


@pytest.mark.parametrize("split_k", [2, 4, 6, 8])
def test_cluster_launch_keeps_pairs_in_one_cluster(split_k):
    """red 1's launch (kernel.py _launch: sched.launch_grid with clusters of 2): the grid is whole clusters; when
    every CTA has one item (`single`: tiles x split_k <= slots), CTA b's item b is split b % split_k of output tile
    b // split_k, so cluster (2c, 2c + 1) holds splits 2q, 2q + 1 of one tile and its rank b % 2 is the split's
    parity; more items than that is the persistent grid (red 0's reduction at run time)."""
    from nvfp4_aot.kernels.w4a16_ws.sched import launch_grid

    slots, kt = 132, 96
    for tiles in range(1, 80):
        grid = launch_grid(tiles, kt, split_k, 0, 2, slots)
        assert grid % 2 == 0 and grid <= slots
        single = tiles * split_k <= grid
        assert single == (tiles * split_k <= slots)
        if single:
            for b in range(0, grid, 2):
                (t0, k0), (t1, k1) = (split_item(c, split_k, kt // split_k) for c in (b, b + 1))
                assert t0 == t1 == b // split_k and k0 // (kt // split_k) == b % split_k and k1 > k0


@pytest.mark.parametrize("tile_m,tile_n,split_k,wgs", [(64, 16, 4, 1), (64, 64, 6, 1), (128, 128, 8, 2), (64, 256, 4, 1),
                                                       (128, 64, 12, 2)])
def test_pairs_scratch_indices_fit_and_are_disjoint(tile_m, tile_n, split_k, wgs):
    """red 1, split_k > 2 (stream.py _pairs_reduce): every (tile, warp, half) flag (sched.half_slot) and every
    16-byte vector of every pair's half (sched.half_ws_index) lies inside the flags / workspace scratch the signature
    declares, and no two overlap (session 15's first build indexed halves as slot x 2 + half with 1-part tiles:
    past the flags of half the tiles)."""
    from nvfp4_aot.kernels.w4a16_ws import red_parts
    from nvfp4_aot.kernels.w4a16_ws.sched import half_slot, half_ws_index

    p = dense(n=512, k=3072, tile_m=tile_m, tile_n=tile_n, stages=4, split_k=split_k, wgs=wgs, red=1)
    assert DENSE.can_implement(p, "sm_90a") == []
    m = 3 * tile_n - 1
    env = {**DENSE.signature(p).static, "M": m}
    size = {a.name: math.prod(eval_dim(d, env) for d in a.shape) for a in DENSE.signature(p).args if a.scratch}
    P, Q, W = red_parts(p), split_k // 2, 4 * wgs
    rb, V = tile_m // 64 // wgs, tile_n // 8
    Vh = V // P
    hp = rb * Vh * 128
    tiles = -(-m // tile_n) * (512 // tile_m)
    flags, vecs = set(), set()
    for j in range(-(-m // tile_n)):
        for mm in range(512 // tile_m):
            for w in range(W):
                slot = reduce_slot(j, mm, w // 4, w % 4, 512 // tile_m, wgs)
                for h in range(P):
                    hs = half_slot(slot, h, P)
                    assert 0 <= hs < size["flags"] and hs not in flags
                    flags.add(hs)
                    for q in range(Q):
                        for lane in range(32):
                            for v in range(rb * Vh):
                                i = half_ws_index(hs, q, Q, lane, v, hp)
                                assert i % 4 == 0 and 0 <= i and i + 4 <= size["workspace"] and i not in vecs
                                vecs.add(i)
    assert len(flags) == tiles * W * P
