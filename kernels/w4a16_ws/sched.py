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
