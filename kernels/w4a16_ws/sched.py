"""Plain index arithmetic of the w4a16_ws work schedule (kernel.py): split-K items, the raster
order, the split-K reduction's slots. Shared by the kernel (on DSL integers) and the CPU emulation of
the schedule and reduction (tests/kernels/test_w4a16_ws.py, test_w4a16_ws_split.py); moved out of
kernel.py unchanged (session 7, `wsdec`) to keep that module under 600 lines."""


# Split-K index math, plain arithmetic shared by the kernel (on DSL integers) and the CPU emulation
# of the schedule and reduction (tests/kernels/test_w4a16_ws_split.py).
def split_item(w, split_k: int, ks: int):
    """Work item w -> (output item, first k64 step): the split_k splits of an output tile are
    consecutive items; split s runs k64 steps [s ks, (s + 1) ks)."""
    return w // split_k, (w % split_k) * ks


def raster_item(local, tiles, mt: int, g: int, vmin=min):
    """An expert's local item index -> (token tile j, weight tile m) under raster g. g > 0: the
    expert's `tiles` token tiles go in bands of g (the last band may be narrower), j fastest inside
    a band: consecutive items (CTAs running at the same time) share a weight tile g at a time and
    read each activation tile about grid / g times at once instead of up to grid (g = 1: m
    fastest, every weight tile of a token tile in turn). g < 0: the mt weight tiles go in bands of
    -g, m fastest inside, j across (quack's / CUTLASS's swizzle): concurrent CTAs read about -g
    activation tiles' worth of weight tiles. A bijection onto [0, tiles) x [0, mt)
    (tests/kernels/test_w4a16_ws.py)."""
    if g > 0:
        band = local // (g * mt)
        j0 = band * g
        ge = vmin(g, tiles - j0)
        r = local - band * (g * mt)
        m = r // ge
        return j0 + r - m * ge, m
    w = -g
    band = local // (w * tiles)
    m0 = band * w
    we = vmin(w, mt - m0)
    r = local - band * (w * tiles)
    j = r // we
    return j, m0 + r - j * we


def reduce_slot(j, m, cw, wq, mt: int, wgs: int):
    """The (output tile (token tile j, weight tile m), consumer warp) slot: its flag index."""
    return (j * mt + m) * (4 * wgs) + cw * 4 + wq


def ws_index(slot, split, lane, idx, split_k: int, per: int):
    """fp32 index in the workspace of accumulator idx (< per / 32) of lane `lane` of a slot's
    partial of split `split`: [slot][split][idx][lane] (lane fastest: coalesced)."""
    return (slot * split_k + split) * per + idx * 32 + lane


def half_slot(slot, half, parts: int):
    """red 1, split_k > 2 (stream.py _pairs_reduce): the flag index of token half `half` (< parts =
    red_parts) of a (tile, warp) slot (reduce_slot): the flags scratch is [slot][parts]."""
    return slot * parts + half


def half_ws_index(hslot, pair, pairs: int, lane, v, hp: int):
    """fp32 index of the 4-float vector v (< hp / 128) of lane `lane` in pair `pair`'s half of half slot
    `hslot` (half_slot): [hslot][pair][v][lane][4], hp = floats of one warp's half (16-byte stores, 512
    contiguous bytes per warp instruction)."""
    return (hslot * pairs + pair) * hp + v * 128 + lane * 4


def launch_grid(tiles, kt: int, split_k: int, stream: int, mc: int, slots: int, vmin=min, vmax=max):
    """Dense grid (kernel.py _launch; M, so the output tiles, known at launch): no CTA without work and
    at most slots = sm_count x ctas, in whole clusters of mc CTAs (mc 2: a unit is a pair of CTAs on a
    pair of weight tiles, tiles even). Stream-K: at most one unit per k64 step (every range non-empty);
    else one per work item (output tile x split)."""
    units = (tiles // mc) * kt if stream else tiles * split_k // mc
    return vmax(vmin(units, slots // mc), 1) * mc


# Stream-K (WsParams.stream, dense): the T = tiles x kt k64 steps of the launch (tile t's steps
# t kt .. t kt + kt - 1, tiles in the raster order) are cut into G contiguous ranges, one per CTA
# (G = the grid <= T, so every range is non-empty unless T = 0). Plain arithmetic shared by the
# kernel (stream.py, on DSL integers: Int64 where a product may pass 2^31) and the CPU emulation
# (tests/kernels/test_w4a16_ws_stream.py).
def sk_range(b, T, G):
    """CTA b's global k64 steps [lo, hi): lo = b T // G (balanced: sizes differ by at most 1)."""
    return b * T // G, (b + 1) * T // G


def sk_span(lo, hi, kt: int):
    """The tiles a range [lo, hi) intersects: (first tile, count) = (lo // kt, ceil(hi / kt) - lo // kt)
    (count 0 for the empty range of T = 0, where lo = hi = 0)."""
    return lo // kt, (hi + kt - 1) // kt - lo // kt


def sk_segment(t, lo, hi, kt: int, vmin=min, vmax=max):
    """Tile t's part of the range [lo, hi): (first k64 step inside the tile, number of steps >= 1)."""
    ts = t * kt
    k0 = vmax(lo, ts) - ts
    return k0, vmin(hi, ts + kt) - ts - k0


def sk_owner(s, T, G):
    """The CTA whose range holds global step s: the largest b with b T // G <= s, i.e.
    ceil((s + 1) G / T) - 1."""
    return ((s + 1) * G + T - 1) // T - 1


def sk_tile(t, kt: int, T, G):
    """Tile t's segments: (first CTA f, count nseg); CTA f + i holds segment i (k order)."""
    f = sk_owner(t * kt, T, G)
    return f, sk_owner(t * kt + kt - 1, T, G) - f + 1


def sk_slot(c, t, kt: int, T, G, vmin=min):
    """Workspace slot of CTA c's partial of tile t (c covers t): 2 c if t is c's first tile,
    2 c + 1 if it is its last (a tile strictly between is c's alone: nseg 1, no partial)."""
    return 2 * c + vmin(t - (c * T // G) // kt, 1)


def cta_slot(slot, u, r, mc: int):
    """mc 2: a unit's (CTA pair's) slot sk_slot(u, ...) in {2 u, 2 u + 1} -> the slot of the pair's
    rank-r CTA b = mc u + r: 2 b + (slot - 2 u), so the workspace keeps 2 slots per CTA (mc 1:
    slot itself)."""
    return slot + 2 * (mc - 1) * u + 2 * r


def sk_ws_index(slot, warp, lane, v, warps: int, per: int):
    """Stream-K workspace: fp32 index of the 4-float vector v (accumulators 4 v .. 4 v + 3, of
    per / 32 per lane) of lane `lane` of a warp's partial in a slot: [slot][warp][v][lane][4]
    (one 16-byte access per lane, 512 contiguous bytes per warp instruction)."""
    return (slot * warps + warp) * per + (v * 32 + lane) * 4


# Activation boxes of a token tile (session 10, `fit`). A TMA box reaching past the tensor's last
# row costs in proportion to the rows past it (zero fill): 64 x 256 at M = 128 took 76 us against 38
# at M = 256 on an H200 (docs/PERFORMANCE.md "session 10, fit"). So no box passes the tensor's end
# (when M >= the box): a token tile is one tile_n-row box moved back to end at its expert's last row
# whenever that keeps it at row >= 0 (one TMA per stage, as for a whole tile), else (the first rows of
# the tensor: M < tile_n dense) boxes of BOX_ROWS rows, only those holding a row of the expert, the last
# one moved back likewise (or to row 0).
BOX_ROWS = 64


def act_boxes(start, cnt, j, tile_n: int, vmin=min, vmax=max):
    """Token tile j (< ceil(cnt / tile_n)) of an expert whose rows are [start, start + cnt) ->
    (whole, nb, last, sh): the producer loads nb boxes of `size` rows (whole = 1: one box, size
    tile_n; whole = 0: size bx = min(tile_n, BOX_ROWS)) into columns [b size, (b + 1) size) of the
    tile, box b < nb - 1 from row start + j tile_n + b size, the last one (its first column last =
    (nb - 1) size) from that row minus sh: it ends at row start + cnt - 1, or starts at row 0 when
    the rows before the expert's end are fewer than the box. So column c holds the expert's token
    j tile_n + c (c < last) or j tile_n + c - sh (last <= c < nb size), a token of this tile when
    that is >= j tile_n + last and < cnt (token_col); every box lies in [0, max(start + cnt,
    size)), inside the tensor whenever M >= size (tests/kernels/test_w4a16_ws_boxes.py).
    Branch-free (the kernel runs it on DSL integers)."""
    bx = min(tile_n, BOX_ROWS)
    end = start + cnt
    whole = vmin(vmax(end - tile_n + 1, 0), 1)  # 1: a tile_n-row box ending at the expert's end starts >= 0
    size = bx + whole * (tile_n - bx)
    left = vmin(cnt - j * tile_n, tile_n)  # >= 1 for a tile with work
    nb = (left + (bx - 1)) // bx
    nb = nb + whole * (1 - nb)
    last = (nb - 1) * size
    r = start + j * tile_n + last  # the last box's unshifted first row (<= end - 1)
    return whole, nb, last, vmax(r - vmax(end - size, 0), 0)


def box_count(nb, whole, NB: int, mc: int):
    """Boxes the pair loads per stage (mc 2: a whole tile as its NB = tile_n / bx boxes, so the two
    CTAs can split them, CTA r issuing boxes b = r mod 2 into both); mc 1: act_boxes' nb."""
    return nb + whole * (NB - nb) if mc == 2 else nb


def box_mine(b: int, rank, whole, mc: int):
    """Does this CTA issue activation box b (< box_count) of a stage? mc 1: every box, unless the tile
    is one whole tile_n-row box (whole = 1: one TMA of its own); mc 2: the boxes b = rank mod 2 (each
    multicast into both CTAs of the pair)."""
    return rank == b % 2 if mc == 2 else whole == 0


def box_row(row0, b: int, nb, whole, sh, bx: int, mc: int, vmin=min, vmax=max):
    """First row of box b (< box_count) of a token tile whose first unshifted row is row0 (nb, whole,
    sh: act_boxes'): box b holds rows from row0 + b bx, the last box (b = nb - 1) moved back by sh;
    mc 2 with a whole tile: every box moved back by sh (act_boxes' one tile_n-row box, cut in bx-row
    boxes)."""
    shift = vmax(b + 2 - nb, 0)  # 1 for the last box b = nb - 1, 0 below
    if mc == 2:
        shift = vmax(vmin(shift, 1), whole)
    return row0 + b * bx - sh * shift


def token_col(col, last, sh, lim, vmin=min, vmax=max):
    """Column col of a token tile loaded by act_boxes (nb, last, sh) -> (token offset t from the
    tile's first token, stored?): lim = cnt - j tile_n, the expert's tokens from the tile's first
    on. Columns before the last box hold tokens col (all < lim: the last box holds the tile's last
    token); the last box's column col holds token col - sh, stored only from col = last + sh on
    (the rows before repeat the previous box's) and below lim (rows after the expert). Branch-free
    (the kernel's epilogue runs it on DSL integers)."""
    t = col - sh * vmin(vmax(col - last + 1, 0), 1)
    return t, (t < lim) & ((col < last) | (col >= last + sh))


def img_offset(lane, wq):
    """epi 3 (epilogue.py _epilogue_tma): the byte offset, in an m64 block's slot of the tile image, that lane
    hands stmatrix .trans for the first 16-token chunk of consumer warp wq (chunk ch adds ch * 16 * 128). The
    slot is laid out as TMA's SW128 box [tokens x 64 weight rows] of bf16: token t's 128-byte row at t * 128,
    its 16-byte chunk c (weight rows 8 c .. 8 c + 7) at chunk c ^ (t % 8). Lane 8 q + i addresses memory row i
    of matrix q = (u, h) = (q / 2, q % 2): token 8 u + i, weight rows 16 wq + 8 h .. (chunk 2 wq + h); t % 8 = i.
    Works on Python and DSL integers (tests/kernels/test_w4a16_ws_epi.py checks it against the SW128 rule)."""
    q = lane // 8
    i = lane % 8
    return (8 * (q // 2) + i) * 128 + (((2 * wq + q % 2) ^ i) * 16)
