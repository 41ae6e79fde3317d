"""The w4a16_ws producer's activation boxes and the epilogue's column -> token map (sched.act_boxes,
sched.token_col; session 10 `fit`), emulated on plain integers: for every expert layout and token
tile, the stored columns give each token of the tile exactly once, from the row the producer
loaded into that column, no box starts before row 0 or passes the tensor's last row (M >= box
rows), and only boxes holding a row of the expert are loaded."""

from hypothesis import given, settings
from hypothesis import strategies as st

from nvfp4_aot.kernels.w4a16_ws import TILE_NS
from nvfp4_aot.kernels.w4a16_ws.sched import BOX_ROWS, act_boxes, token_col


def _check_tile(start: int, cnt: int, j: int, tile_n: int, m_rows: int) -> None:
    whole, nb, last, sh = act_boxes(start, cnt, j, tile_n)
    bx = tile_n if whole else min(tile_n, BOX_ROWS)
    first = j * tile_n
    want = list(range(first, min(cnt, first + tile_n)))
    assert whole == (start + cnt >= tile_n)  # one whole-tile box whenever it fits before the expert's end
    assert 1 <= nb <= tile_n // bx and last == (nb - 1) * bx and 0 <= sh < bx
    # every loaded box holds at least one row of this tile's tokens (no load without work)
    for b in range(nb):
        row = start + first + b * bx - (sh if b == nb - 1 else 0)
        assert row >= 0
        if m_rows >= bx:
            assert row + bx <= m_rows, (start, cnt, j, tile_n, m_rows, b)
        assert any(start + t in range(row, row + bx) for t in want)
    got = []
    lim = cnt - first
    for col in range(tile_n):
        t, ok = token_col(col, last, sh, lim)
        if col >= nb * bx:
            assert not ok  # stale shared memory: never stored
            continue
        row = start + first + col - (sh if col >= last else 0)  # the row the producer put in this column
        assert start + first + t == row
        if ok:
            got.append(first + t)
    assert got == want, (start, cnt, j, tile_n, got[:4], want[:4])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TILE_NS), st.lists(st.integers(0, 700), min_size=1, max_size=6), st.integers(0, 300))
def test_boxes_cover_each_token_once_inside_the_tensor(tile_n, counts, pad):
    """Grouped layouts (experts back to back, then `pad` rows of no expert) and dense (one expert)."""
    m_rows = sum(counts) + pad
    start = 0
    for cnt in counts:
        for j in range((cnt + tile_n - 1) // tile_n):
            _check_tile(start, cnt, j, tile_n, m_rows)
        start += cnt


def test_full_tiles_are_one_unshifted_box():
    for tile_n in TILE_NS:
        for start in (0, 5, 1000):
            assert act_boxes(start, 3 * tile_n, 1, tile_n) == (1, 1, 0, 0)


def test_partial_tiles():
    # dense M = 200, 256-token tile (M < tile_n): 64-row boxes 0, 64, 128 and the last moved back to rows 136..199
    assert act_boxes(0, 200, 0, 256) == (0, 4, 192, 56)
    # M = 128: two boxes, nothing past row 127 (the session-9 case: one 256-row box, half past M)
    assert act_boxes(0, 128, 0, 256) == (0, 2, 64, 0)
    # dense M = 300: the second tile is one 256-row box moved back to rows 44..299
    assert act_boxes(0, 300, 1, 256) == (1, 1, 0, 212)
    # a 16-token decode tile of a 5-token expert at row 40: the box ends at the expert's last row
    assert act_boxes(40, 5, 0, 16) == (1, 1, 0, 11)
    # fewer rows than a box before the expert's end: the box starts at row 0
    assert act_boxes(3, 5, 0, 16) == (0, 1, 0, 3)
