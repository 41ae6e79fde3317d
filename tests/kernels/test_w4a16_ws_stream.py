"""w4a16_ws_gemm's stream-K mode (WsParams.stream = 1, kernels/w4a16_ws/stream.py) on the CPU box:
the schedule (sched.sk_*: the kernel's own index arithmetic) emulated over many (tiles, kt, grid)
shapes, the validity rules, the M-independent scratch, and an emulated last-arriver reduction of a
real GEMM against a float64 reference under random arrival orders."""

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvfp4_aot.kernels import eval_dim, get_family
from nvfp4_aot.kernels.w4a16_ws.sched import (reduce_slot, sk_range, sk_segment, sk_slot, sk_span, sk_tile,
                                              sk_ws_index)

DENSE = get_family("w4a16_ws_gemm")
GROUPED = get_family("w4a16_ws_grouped_gemm")


def dense(**kw):
    return DENSE.parse_params({"n": 2048, "k": 7168, "stream": 1, **kw})


def walk(tiles: int, kt: int, G: int):
    """Every CTA's segments [(b, t, k0, n)] as the producer and consumers walk them."""
    T = tiles * kt
    segs = []
    for b in range(G):
        lo, hi = sk_range(b, T, G)
        t0, cnt = sk_span(lo, hi, kt)
        for i in range(cnt):
            k0, n = sk_segment(t0 + i, lo, hi, kt)
            segs.append((b, t0 + i, k0, n))
    return segs


def check_schedule(tiles: int, kt: int, G: int) -> None:
    T = tiles * kt
    segs = walk(tiles, kt, G)
    seen = set()
    by_tile: dict[int, list] = {}
    slots: dict[int, set] = {}
    for b, t, k0, n in segs:
        assert n >= 1 and 0 <= k0 and k0 + n <= kt and 0 <= t < tiles
        for k in range(k0, k0 + n):
            assert (t, k) not in seen  # covered exactly once
            seen.add((t, k))
        by_tile.setdefault(t, []).append((b, k0, n))
    assert len(seen) == T
    sizes = [sk_range(b, T, G)[1] - sk_range(b, T, G)[0] for b in range(G)]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= (1 if T else 0)  # balanced; none empty when G <= T
    for t, parts in by_tile.items():
        f, nseg = sk_tile(t, kt, T, G)
        assert [b for b, _, _ in parts] == list(range(f, f + nseg))  # CTA f + i holds segment i
        assert [k0 for _, k0, _ in parts] == [sum(n for _, _, n in parts[:i]) for i in range(nseg)]  # k order
        if nseg > 1:
            for b, _, _ in parts:
                s = sk_slot(b, t, kt, T, G)
                assert s in (2 * b, 2 * b + 1)
                slots.setdefault(b, set()).add((s, t))
    for b, used in slots.items():  # at most 2 partials per CTA, in distinct slots
        assert len(used) <= 2 and len({s for s, _ in used}) == len(used)
    for b in range(G):  # tiles strictly inside a range are that CTA's alone (no partial, no slot)
        lo, hi = sk_range(b, T, G)
        t0, cnt = sk_span(lo, hi, kt)
        for t in range(t0 + 1, t0 + cnt - 1):
            assert sk_tile(t, kt, T, G)[1] == 1


@pytest.mark.parametrize("tiles,kt,G", [
    (48, 112, 132), (2, 112, 132), (1, 3, 132), (1, 1, 1), (5, 7, 3), (16, 112, 132), (56, 48, 132),
    (56, 32, 264), (192, 112, 132), (1, 131, 132), (3, 5, 15), (132, 1, 132), (7, 13, 91)])
def test_schedule_covers_every_step_once(tiles, kt, G):
    """Incl. T < G (the launch then takes G = T: one step per CTA), kt < T / G (CTAs spanning many
    tiles) and kt > T / G (tiles split over up to many CTAs)."""
    check_schedule(tiles, kt, min(G, tiles * kt))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300), st.integers(1, 130), st.integers(1, 264))
def test_schedule_property(tiles, kt, G):
    check_schedule(tiles, kt, min(G, tiles * kt))


def test_empty_launch_has_no_segment():
    """M = 0: T = 0, the launch still has one CTA; its range is empty and it walks no tile."""
    lo, hi = sk_range(0, 0, 1)
    assert sk_span(lo, hi, 112) == (0, 0)


def test_stream_validity():
    assert DENSE.can_implement(dense(tile_n=256, stages=6), "sm_90a") == []
    assert DENSE.can_implement(dense(tile_m=256, tile_n=64, wgs=4, stages=8, depth=3, epi=0), "sm_90a") == []
    assert DENSE.can_implement(dense(tile_n=64, stages=8, ctas=2), "sm_90a") == []
    assert any("stream=2" in r for r in DENSE.can_implement(dense(stream=2), "sm_90a"))
    assert any("stream=1" in r and "split_k" in r for r in DENSE.can_implement(dense(split_k=2), "sm_90a"))
    assert any("stream=1" in r and "pipe" in r for r in DENSE.can_implement(dense(pipe=64), "sm_90a"))
    assert any("stream=1" in r and "pdl" in r for r in DENSE.can_implement(dense(pdl=True), "sm_90a"))
    g = GROUPED.parse_params({"n": 6144, "k": 7168, "experts": 48, "stream": 1})
    assert any("stream=1" in r and "dense-only" in r for r in GROUPED.can_implement(g, "sm_90a"))


def test_stream_scratch_is_m_independent():
    p = dense(tile_m=128, tile_n=256, stages=6)
    sig = DENSE.signature(p)
    assert [a.name for a in sig.args][-2:] == ["flags", "workspace"]
    for m, tt in ((1, 1), (256, 1), (1000, 4)):
        env = {**sig.static, "M": m}
        shapes = {a.name: tuple(eval_dim(d, env) for d in a.shape) for a in sig.args if a.scratch}
        assert shapes == {"flags": (tt, 16, 8), "workspace": (264, 128 * 256)}
    inp = DENSE.make_inputs(dense(n=256, k=512, tile_n=64, stages=4, sm_count=4), 70, torch.device("cpu"), seed=3)
    assert inp["flags"].shape == (2, 2, 8) and not inp["flags"].any()
    assert inp["workspace"].shape == (8, 128 * 64) and torch.isnan(inp["workspace"]).all()


@pytest.mark.parametrize("tiles_j,mt,kt,G,wgs,rb,an", [
    (1, 2, 7, 5, 2, 1, 4), (2, 3, 5, 13, 2, 2, 4), (1, 1, 9, 9, 4, 1, 4), (3, 2, 4, 4, 2, 1, 8),
    (2, 2, 3, 12, 4, 1, 4)])
def test_stream_reduction_emulated(tiles_j, mt, kt, G, wgs, rb, an):
    """A GEMM out[n, r] = sum_k W[n, k] act[r, k] in the kernel's accumulator layout per
    (tile, warp, lane, idx): every segment's partial (its k64 steps, fp32) is stored at the
    kernel's workspace index (16-byte vectors, sched.sk_ws_index) of its CTA's slot in a buffer of
    the signature's size; arrivals come in a random order; the last arriver sums the slots of CTAs
    f .. f + nseg - 1 in that order (CTA f's partial from its registers when it is f) and resets
    the flag; nseg 1 keeps its registers. Result within fp32 accumulation error of the float64
    reference, bitwise equal under other arrival orders, flags all zero after, no workspace
    index outside the buffer or written twice per call."""
    W, per = 4 * wgs, 32 * an * rb
    assert an % 4 == 0  # tile_n >= 16: whole 16-byte vectors per lane
    tiles, T = tiles_j * mt, tiles_j * mt * kt
    p = dense(n=mt * 64 * wgs * rb, k=64 * kt, tile_m=64 * wgs * rb, tile_n=2 * an, wgs=wgs, stages=2, sm_count=G)
    env = {"N": p.n, "K": p.k, "M": tiles_j * p.tile_n}
    sizes = {a.name: math.prod(eval_dim(d, env) for d in a.shape) for a in DENSE.signature(p).args if a.scratch}
    g = torch.Generator().manual_seed(tiles * kt + G)
    # per (tile, warp, lane, idx) accumulator, its 64 k contributions per k64 step (fp32 products)
    contrib = torch.randn(tiles, W, 32, per // 32, kt, 64, generator=g)
    want = contrib.double().sum(dim=(-1, -2))
    segs = walk(tiles, kt, G)

    def vec_index(slot, w):
        """[lane][accumulator] -> workspace index: accumulator 4 v + i at sk_ws_index(.., v, ..) + i."""
        return torch.tensor([[sk_ws_index(slot, w, ln, ix // 4, W, per) + ix % 4 for ix in range(per // 32)]
                             for ln in range(32)])

    def run(seed):
        rng = random.Random(seed)
        flags = torch.zeros(sizes["flags"], dtype=torch.int32)
        ws = torch.full((sizes["workspace"],), float("nan"))
        out = torch.full((tiles, W, 32, per // 32), float("nan"))
        written = set()
        order = [(b, t, k0, n, w) for b, t, k0, n in segs for w in range(W)]
        rng.shuffle(order)
        for b, t, k0, n, w in order:
            acc = torch.zeros(32, per // 32)
            for k in range(k0, k0 + n):  # the k loop: fp32 accumulation in step order
                acc = acc + contrib[t, w, :, :, k].sum(-1)
            f, nseg = sk_tile(t, kt, T, G)
            if nseg == 1:
                out[t, w] = acc
                continue
            idx = vec_index(sk_slot(b, t, kt, T, G), w)
            for i in idx.flatten().tolist():
                assert 0 <= i < sizes["workspace"] and i not in written
                written.add(i)
            ws[idx] = acc
            j, m = divmod(t, mt)
            fl = reduce_slot(j, m, w // 4, w % 4, mt, wgs)
            old = int(flags[fl])
            flags[fl] += 1
            if old == nseg - 1:
                tot = acc.clone() if b == f else ws[vec_index(sk_slot(f, t, kt, T, G), w)]
                for c in range(f + 1, f + nseg):
                    tot = tot + ws[vec_index(sk_slot(c, t, kt, T, G), w)]
                flags[fl] = 0
                out[t, w] = tot
        assert not flags.any()
        return out

    a = run(1)
    assert torch.isfinite(a).all()
    for seed in (2, 3, 4):
        assert torch.equal(a, run(seed))  # deterministic: the arrival order does not change a bit
    err = float((a.double() - want).norm() / want.norm())
    assert err < 1e-6, err
