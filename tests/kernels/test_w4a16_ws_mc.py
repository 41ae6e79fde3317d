"""w4a16_ws_gemm's mc 2 mode (2-CTA clusters sharing the activation tile by TMA multicast; session 12) on
the CPU box: the validity rules, the pairing of items (whole tiles) and of stream-K segments (the
kernel's own index arithmetic, sched.py) — both CTAs of a cluster walk the same token tile and k steps
in lockstep on adjacent weight tiles, every (output tile, k64 step) exactly once, the partial slots
distinct per CTA and inside the workspace — and the producer's box split (sched.box_count / box_row):
the pair's boxes put in every column the row the single-CTA load puts there."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.w4a16_ws import TILE_NS, stream_ws_shape
from nvfp4_aot.kernels.w4a16_ws.sched import (BOX_ROWS, act_boxes, box_count, box_mine, box_row, cta_slot,
                                              sk_range, sk_segment, sk_slot, sk_span, sk_tile, token_col)
from nvfp4_aot.kernels.w4a16_ws.sched import launch_grid as sched_launch_grid

DENSE = get_family("w4a16_ws_gemm")
GROUPED = get_family("w4a16_ws_grouped_gemm")


def dense(**kw):
    return DENSE.parse_params({"n": 6144, "k": 7168, "tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "mc": 2,
                               **kw})


def test_mc_validity():
    for kw in ({}, {"stream": 1}, {"lean": 1, "peek": 1}, {"stream": 1, "lean": 1, "peek": 1}):
        assert DENSE.can_implement(dense(**kw), "sm_90a") == [], kw
    assert DENSE.can_implement(dense(tile_m=128, tile_n=128, wgs=2, stages=8, depth=3), "sm_90a") == []
    refusals = {"mc=3": dense(mc=3), "split_k": dense(split_k=2), "raster": dense(raster=4),
                "pdl": dense(pdl=True), "pipe": dense(pipe=64), "ctas": dense(tile_n=64, tile_m=128, wgs=2, ctas=2),
                "not an even number": dense(n=64 * 7), "sm_count": dense(sm_count=131)}
    for word, p in refusals.items():
        assert any(word in r for r in DENSE.can_implement(p, "sm_90a")), (word, DENSE.can_implement(p, "sm_90a"))
    g = GROUPED.parse_params({"n": 6144, "k": 7168, "experts": 48, "mc": 2})
    assert any("mc=2" in r and "dense-only" in r for r in GROUPED.can_implement(g, "sm_90a"))


def launch_grid(tiles: int, kt: int, sm_count: int, stream: bool, mc: int = 2) -> int:
    """kernel.py _launch's dense grid (sched.launch_grid: whole clusters, split_k 1)."""
    return sched_launch_grid(tiles, kt, 1, int(stream), mc, sm_count)


@pytest.mark.parametrize("tt,mt,sm", [(1, 96, 132), (2, 96, 132), (3, 112, 132), (1, 2, 132), (5, 8, 6), (9, 32, 2)])
def test_whole_tiles_pair(tt, mt, sm):
    """CTA b = 2u + r takes items b + i grid (kernel.py _body): both CTAs of a cluster get the same
    number, item i of each is the same token tile on weight tiles 2p, 2p + 1; every item once."""
    tiles = tt * mt
    grid = launch_grid(tiles, 1, sm, False)
    assert grid % 2 == 0 and grid <= sm
    seen = []
    for u in range(grid // 2):
        walks = []
        for r in (0, 1):
            b = 2 * u + r
            mine = max((tiles - b + grid - 1) // grid, 0)
            walks.append([divmod(b + i * grid, mt) for i in range(mine)])  # (token tile j, weight tile m): raster 1
        assert len(walks[0]) == len(walks[1])
        for (j0, m0), (j1, m1) in zip(*walks):
            assert j0 == j1 and m0 % 2 == 0 and m1 == m0 + 1
        seen += walks[0] + walks[1]
    assert sorted(seen) == [divmod(w, mt) for w in range(tiles)]


def check_stream_pairs(tiles: int, kt: int, sm: int) -> None:
    grid = launch_grid(tiles, kt, sm, True)
    G, T = grid // 2, tiles // 2 * kt  # units (pairs of CTAs) and the k64 steps of the pair tiles
    covered, slots = set(), {}
    for u in range(G):
        lo, hi = sk_range(u, T, G)
        t0, cnt = sk_span(lo, hi, kt)
        for r in (0, 1):  # both ranks walk these same segments (stream.py _sk_item)
            b = 2 * u + r
            for i in range(cnt):
                t = t0 + i
                k0, n = sk_segment(t, lo, hi, kt)
                real = 2 * t + r
                for k in range(k0, k0 + n):
                    assert (real, k) not in covered
                    covered.add((real, k))
                f, nseg = sk_tile(t, kt, T, G)
                assert f <= u < f + nseg
                if nseg > 1:
                    s = cta_slot(sk_slot(u, t, kt, T, G), u, r, 2)
                    assert s in (2 * b, 2 * b + 1) and s < stream_ws_shape(dense(sm_count=sm))[0]
                    assert s not in slots or slots[s] == real, (s, slots[s], real)
                    slots[s] = real
                    # the last arriver of output tile `real` reads units f .. f + nseg - 1 at rank r
                    for c in range(f, f + nseg):
                        sc = cta_slot(sk_slot(c, t, kt, T, G), c, r, 2)
                        assert sc in (2 * (2 * c + r), 2 * (2 * c + r) + 1)
    assert len(covered) == tiles * kt


@pytest.mark.parametrize("tiles,kt,sm", [(96, 112, 132), (112, 48, 132), (32, 112, 132), (2, 3, 132), (8, 7, 6),
                                         (192, 112, 132), (2, 1, 2), (64, 24, 10)])
def test_stream_pairs(tiles, kt, sm):
    check_stream_pairs(tiles, kt, sm)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 150), st.integers(1, 120), st.integers(1, 66))
def test_stream_pairs_property(half_tiles, kt, half_sm):
    check_stream_pairs(2 * half_tiles, kt, 2 * half_sm)


def _columns(start: int, cnt: int, j: int, tile_n: int, mc: int):
    """Column -> row loaded into one CTA's stage by the producer(s) of its cluster, as producer.py issues
    them: mc 1, the whole tile_n-row box (whole = 1) or act_boxes' nb boxes; mc 2, box_count boxes at
    box_row. Every box is issued by exactly one rank (sched.box_mine)."""
    whole, nb, _, sh = act_boxes(start, cnt, j, tile_n)
    bx = min(tile_n, BOX_ROWS)
    cols = {}
    if mc == 1 and whole == 1:
        cols = {c: start + j * tile_n - sh + c for c in range(tile_n)}
    for b in range(box_count(nb, whole, tile_n // bx, mc)):
        issuers = [r for r in range(mc) if box_mine(b, r, whole, mc)]
        if mc == 1 and whole == 1:
            assert issuers == [], b  # the whole box covers it
            continue
        assert len(issuers) == 1, (b, issuers)
        row = box_row(start + j * tile_n, b, nb, whole, sh, bx, mc)
        for c in range(bx):
            assert b * bx + c not in cols
            cols[b * bx + c] = row + c
    return cols


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 600), st.integers(1, 700), st.sampled_from([t for t in TILE_NS if t >= 64]), st.data())
def test_mc_boxes_load_the_rows_of_one_cta(start, cnt, tile_n, data):
    """Every column the epilogue stores (token_col) holds, under mc 2, the row the single-CTA load
    (one tile_n box, or act_boxes' bx-row boxes) puts there; no box starts before row 0 or ends past
    the expert's end when the expert ends at or after the box size."""
    j = data.draw(st.integers(0, (cnt - 1) // tile_n))
    whole, nb, last, sh = act_boxes(start, cnt, j, tile_n)
    cols = _columns(start, cnt, j, tile_n, 2)
    one = _columns(start, cnt, j, tile_n, 1)
    bx = min(tile_n, BOX_ROWS)
    first = start + j * tile_n
    for col in range(tile_n):
        t, ok = token_col(col, last, sh, cnt - j * tile_n)
        if ok:
            assert cols[col] == first + t, (col, cols[col], first + t)
            assert one[col] == first + t, (col, one[col], first + t)
    for b in range(len(cols) // bx):
        row = cols[b * bx]
        assert row >= 0
        if start + cnt >= bx:
            assert row + bx <= start + cnt
