"""The candidate tilings of benchmarks/w4a16_ws_dense_sweep.py (one list or function per `manifest` mode) and the
M each served-next-to sweep times; each block says which session measured it and why (docs/PERFORMANCE.md)."""

from nvfp4_aot.kernels.w4a16_ws.tiles import Q64P

# narrow shapes first (the grid-starved ones)
SHAPES = {"q_a+kv": (2048, 7168, 2), "down": (7168, 3072, 1), "o_b": (7168, 2048, 1), "gate+up": (6144, 7168, 1),
          "q_b": (65536, 1536, 1),
          # the launch floor: one k64 step per CTA, one CTA per SM (132 weight tiles of 128 rows)
          "floor": (16896, 64, 1)}
# (tile_m, tile_n, stages): every tile the family takes, each with a deep ring (small M streams
# weights: bytes in flight per SM), plus shallower rings of the two small-M tiles
CANDIDATES = [(128, 64, 12), (128, 64, 6), (256, 64, 12), (128, 128, 10), (128, 128, 6), (256, 128, 8),
              (128, 256, 6)]
# split-K candidates per shape (tile_m, tile_n, stages, split_k), each with its unsplit twin: the
# splits that bring tiles x splits close to (not over) 132 SMs at M = 64 .. 256 (PERFORMANCE.md (r))
SPLIT_CANDIDATES = {
    "q_a+kv": [(128, 64, 6, 1), (128, 64, 6, 4), (128, 64, 6, 7), (128, 64, 6, 8), (128, 128, 6, 4),
               (128, 128, 6, 8), (128, 256, 6, 8)],
    "down": [(128, 64, 6, 1), (128, 64, 6, 2), (128, 64, 6, 3), (128, 128, 10, 1), (128, 128, 10, 2),
             (128, 128, 10, 3)],
    "o_b": [(128, 64, 6, 1), (128, 64, 6, 2), (128, 64, 6, 4), (128, 128, 10, 1), (128, 128, 10, 2),
            (128, 128, 10, 4)],
    "gate+up": [(128, 64, 12, 1), (128, 64, 12, 2), (128, 64, 12, 4), (128, 128, 10, 1), (128, 128, 10, 2),
                (128, 128, 10, 4)],
}
# small M (session 6, `wssmall`): the fixed cost per launch. Per shape, tunings (dicts): the pdl
# launch (programmatic dependent launch) next to the bucket it replaced (global split-K, no pdl),
# and a launch-floor shape (one k64 step on 132 CTAs). (The session's run also had cluster split-K
# candidates, a mode measured slower and removed: docs/PERFORMANCE.md "session 6, wssmall".)
_B = {"tile_m": 128, "tile_n": 64, "stages": 6}
_C = {"tile_m": 128, "tile_n": 128}
SMALL_CANDIDATES = {
    "q_a+kv": [{**_B, "split_k": 8}, {**_B, "split_k": 8, "pdl": True}, {**_B, "split_k": 4},
               {**_B, "split_k": 4, "pdl": True}, {**_C, "stages": 6, "split_k": 4},
               {**_C, "stages": 6, "split_k": 4, "pdl": True}],
    "down": [{**_B, "split_k": 2}, {**_B, "split_k": 2, "pdl": True}, {**_B, "pdl": True},
             {**_C, "stages": 10}, {**_C, "stages": 10, "pdl": True}],
    "o_b": [{**_B, "split_k": 2}, {**_B, "split_k": 2, "pdl": True}, {**_B, "pdl": True},
            {**_C, "stages": 10}, {**_C, "stages": 10, "pdl": True}],
    "gate+up": [{**_B, "stages": 12, "split_k": 2}, {**_B, "stages": 12, "split_k": 2, "pdl": True},
                {**_C, "stages": 10, "split_k": 2}, {**_C, "stages": 10, "split_k": 2, "pdl": True},
                {**_C, "stages": 10, "pdl": True}, {"tile_m": 128, "tile_n": 256, "stages": 6, "pdl": True}],
    "q_b": [{"tile_m": 256, "tile_n": 64, "stages": 12}, {"tile_m": 256, "tile_n": 64, "stages": 12, "pdl": True},
            {"tile_m": 256, "tile_n": 128, "stages": 8, "pdl": True},
            {"tile_m": 128, "tile_n": 256, "stages": 6, "pdl": True}],
    "floor": [{**_B, "stages": 2}, {**_B, "stages": 2, "pdl": True}],
}
# M >= 193 (session 6, `wstab`): the tables' rows above 192 (before the epilogue, raster and depth
# existed) next to raster 4 / 8 / -8, depth 3, pdl, and split-K where tiles x splits comes close to
# one or two waves of 132 SMs (q_a+kv's 16 and gate+up's 48 weight tiles at M = 256-2048)
_W = {"tile_m": 128, "tile_n": 256, "stages": 6}
_W3 = {**_W, "depth": 3}
_C6 = {**_C, "stages": 6}
_C10 = {**_C, "stages": 10}
BIG_CANDIDATES = {
    "q_a+kv": [{**_B, "pdl": True}, {**_B, "split_k": 2, "pdl": True}, {**_C6, "split_k": 4, "pdl": True},
               {**_C6, "split_k": 2, "pdl": True}, _C6, {**_C6, "depth": 3}, {**_W3, "split_k": 4},
               {**_W3, "split_k": 2}, _W, _W3],
    "down": [{**_C10, "pdl": True}, {**_C10, "split_k": 2, "pdl": True}, {**_C10, "depth": 3, "raster": 4},
             _W, {**_W, "raster": 4}, {**_W3, "raster": 4}, {**_W3, "raster": 4, "pdl": True},
             {**_W3, "raster": -8}, {**_W3, "split_k": 2, "raster": 4}],
    "o_b": [{**_C10, "pdl": True}, {**_C10, "split_k": 2, "pdl": True}, {**_C10, "depth": 3, "raster": 4},
            _W, {**_W, "raster": 4}, {**_W3, "raster": 4}, {**_W3, "raster": 4, "pdl": True},
            {**_W3, "raster": -8}, {**_W3, "split_k": 2, "raster": 4}],
    "gate+up": [{**_C10, "pdl": True}, {**_C10, "depth": 3, "raster": 4}, _W, {**_W3, "raster": 4},
                {**_W3, "raster": 4, "pdl": True}, {**_W3, "raster": 8}, {**_W3, "split_k": 2, "raster": 4},
                {**_W3, "split_k": 2, "raster": 4, "pdl": True}],
    "q_b": [{"tile_m": 256, "tile_n": 128, "stages": 8, "pdl": True}, {"tile_m": 256, "tile_n": 128, "stages": 8,
            "pipe": 64}, _W, {**_W, "raster": 4}, {**_W, "raster": 8}, {**_W3, "raster": 4}],
}
# M = 17 .. 384 (session 7, `wsmid`): two CTAs per SM (ctas 2, 128 x 64 tiles: two tiles' serial
# k chains overlap on one SM; the grid goes up to 264 CTAs) with the split-K that brings tiles x
# splits to <= 264 at M = 64, next to the buckets they would replace; 4-warpgroup 256 x 64 tiles
# split to ~112 CTAs; and at M = 256 the wider token tiles split 2 (one wave) and 128 x 128 split 4
# (3 rounds of 28 steps instead of one of 112)
_P = {**_B, "pdl": True}
_P2 = {**_P, "ctas": 2}
_Q4 = {"tile_m": 256, "tile_n": 64, "stages": 12, "wgs": 4, "pdl": True}
_W2 = {**_W, "split_k": 2, "pdl": True}
_R2 = {"tile_m": 256, "tile_n": 128, "stages": 8, "split_k": 2, "pdl": True}
MID_CANDIDATES = {
    "q_a+kv": [{**_P, "split_k": 8}, {**_P2, "split_k": 16}, {**_P2, "split_k": 14}, {**_P2, "split_k": 8},
               {**_Q4, "split_k": 16}, {**_C6, "split_k": 4, "pdl": True}, {**_W, "split_k": 8, "pdl": True},
               {**_R2, "split_k": 8}],
    "down": [{**_P, "split_k": 2}, {**_P2, "split_k": 4}, {**_P2, "split_k": 3}, {**_P2, "split_k": 2}, {**_P2},
             {**_P, "split_k": 4}, {**_Q4, "split_k": 4}, {**_C10, "pdl": True}, _W2, _R2],
    "o_b": [{**_P, "split_k": 2}, {**_P2, "split_k": 4}, {**_P2, "split_k": 2}, {**_P2}, {**_P, "split_k": 4},
            {**_Q4, "split_k": 4}, {**_C10, "pdl": True}, _W2, _R2],
    "gate+up": [{**_P, "stages": 12, "split_k": 2}, {**_P2, "split_k": 4}, {**_P2, "split_k": 2},
                {**_Q4, "split_k": 4}, {**_C10, "pdl": True}, {**_C10, "split_k": 4, "pdl": True}, _W2, _R2],
    "q_b": [{"tile_m": 256, "tile_n": 64, "stages": 12, "pdl": True}, _P2, {**_Q4}, {**_C10, "pdl": True},
            {"tile_m": 256, "tile_n": 128, "stages": 8, "pdl": True}, {**_W, "raster": 4, "depth": 3}],
}
# the narrow-grid shapes at M <= 64 (session 7, `wsmid`, after --mid): the served split bucket
# next to its consumer-loop knobs (depth 3, pipe 64, the register epilogue) and ring depths
TAIL_CANDIDATES = {shape: [{**_P, "split_k": sk}, {**_P, "split_k": sk, "depth": 3}, {**_P, "split_k": sk, "pipe": 64},
                           {**_P, "split_k": sk, "epi": 0}, {**_P, "split_k": sk, "stages": 4},
                           {**_P, "split_k": sk, "stages": 9}]
                   for shape, sk in (("q_a+kv", 8), ("down", 2), ("o_b", 2))}


def served_at(shape: str, m: int) -> dict:
    """The tiling tiles.dense_table serves the shape at M = m (build.plan.pick: the planner's own lookup)."""
    from nvfp4_aot.build.plan import pick
    from nvfp4_aot.kernels.w4a16_ws.tiles import dense_table

    n, k, _ = SHAPES[shape]
    return pick(dense_table({"n": n, "k": k}), m)


def lean_candidates(shape: str) -> list[dict]:
    """Session 7 `wsdec`: the tilings tiles.py serves at M = 32, 64, 128, 256 (one each), each
    next to its lean 1 twin; the M <= 64 one also as probe 1 (no decode) and probe 2 (no wgmma) —
    diagnostics whose output is wrong by design (not checked; kernels/w4a16_ws/lean.py)."""
    out: list[dict] = []
    for m in (32, 64, 128, 256):
        tun = served_at(shape, m)
        for extra in ({}, {"lean": 1}, *(({"probe": 1}, {"probe": 2}) if m == 64 and tun.get("pipe", 16) == 16
                                          else ())):
            if {**tun, **extra} not in out:
                out.append({**tun, **extra})
    return out


def served(shape: str, ms) -> list[dict]:
    """The distinct tilings tiles.dense_table serves the shape at the M of ms, in order."""
    out: list[dict] = []
    for m in ms:
        tun = served_at(shape, m)
        if tun not in out:
            out.append(tun)
    return out


def with_served(out: list[dict], shape: str, ms) -> list[dict]:
    """out, then the tilings tiles.dense_table serves the shape at the M of ms that out lacks (the
    sweeps' baseline rows, timed in the same run)."""
    return out + [tun for tun in served(shape, ms) if tun not in out]


def stream_candidates(shape: str) -> list[dict]:
    """Session 8 `sk`: the tilings tiles.py serves at STREAM_MS, next to stream-K (stream 1: every
    CTA an equal share of the launch's k64 steps, kernels/w4a16_ws/stream.py) on the 128 x 256
    (depth 2 and 3), 128 x 128 and 256 x 128 tiles (ctas 1; stream-K takes no pdl)."""
    return served(shape, STREAM_MS) + [{**_W, "stream": 1}, {**_W3, "stream": 1}, {**_C10, "stream": 1},
                  {"tile_m": 256, "tile_n": 128, "stages": 8, "stream": 1}]


def wg1_candidates(shape: str) -> list[dict]:
    """Session 9 `wg1`: one consumer warpgroup per CTA (wgs 1: 256 threads, quack's CTA shape, up to
    256 registers per consumer thread) against its wgs 2 twins and the tilings tiles.py serves at
    WG1_MS. wgs 1 holds tile_m x tile_n / 128 accumulators per thread (<= 128): 128 x 128,
    256 x 64, 128 x 64; each plain, stream-K and (128 x 128) split 2 + pdl or depth 3."""
    out = served(shape, WG1_MS)
    s12 = {"tile_m": 256, "tile_n": 64, "stages": 12}
    for c in (_C10, {**_C10, "stream": 1}, {**_C10, "split_k": 2, "pdl": True}, {**_C10, "depth": 3},
              s12, {**s12, "stream": 1}, {"tile_m": 128, "tile_n": 64, "stages": 12}):
        for w in (1, 2):
            cand = {**c, **({"wgs": 1} if w == 1 else {})}
            if cand not in out and (w == 1 or c.get("stream") or c.get("split_k")):
                out.append(cand)
    return out


def q64_candidates(shape: str) -> list[dict]:
    """Session 9: quack's CTA at M = 129..1536 — one consumer warpgroup on a 64-row weight tile
    (tile_m 64, wgs 1, 64 x 256 or 64 x 128 tokens, no split-K) — plain, with peek 1 (the early
    full-barrier test), lean 1, stream-K; and the served tilings at Q64_MS with and without peek."""
    q = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1}
    h = {"tile_m": 64, "tile_n": 128, "stages": 10, "wgs": 1}
    out = [q, {**q, "peek": 1}, {**q, "lean": 1}, {**q, "peek": 1, "lean": 1}, {**q, "stream": 1},
           {**q, "stream": 1, "peek": 1}, h, {**h, "peek": 1}, {**h, "stream": 1}]
    for tun in served(shape, Q64_MS):
        for c in (tun, {**tun, "peek": 1}):
            if c not in out and c.get("pipe", 16) == 16:
                out.append(c)
    return out


def fit_candidates(shape: str) -> list[dict]:
    """Session 10 (`fit`): token tiles that end past M, now loaded as 64-row TMA boxes none of
    which passes the tensor's last row (sched.act_boxes): the 64 x 256 / 64 x 128 one-warpgroup
    tiles, 128 x 128 and 128 x 256, and the served tilings at FIT_MS (M inside and at the end of
    the 129-256 buckets)."""
    q = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "lean": 1}
    out = [q, {**q, "peek": 1}, {"tile_m": 64, "tile_n": 128, "stages": 10, "wgs": 1},
           {"tile_m": 128, "tile_n": 128, "stages": 10}, {"tile_m": 128, "tile_n": 256, "stages": 6}]
    return with_served(out, shape, FIT_MS)


def ksplit_candidates(shape: str) -> list[dict]:
    """Session 11 (`ks64`): 64-row weight tiles (wgs 1) where a shape has too few of them for the
    SMs at M <= 256 — split-K on the narrow two-scale q_a + kv (2048 / 64 = 32 weight tiles:
    64 x 256 split 4 = 128 CTAs at M <= 256, 64 x 128 split 2 / 4), 64 x 64 and 64 x 128 with peek
    on down / o_b / gate + up at M = 64 .. 128 — next to the served tilings at KS_MS."""
    q = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "lean": 1}
    h = {"tile_m": 64, "tile_n": 128, "stages": 10, "wgs": 1}
    s = {"tile_m": 64, "tile_n": 64, "stages": 12, "wgs": 1}
    if shape == "q_a+kv":
        out = [{**q, "peek": 1, "split_k": 4}, {**q, "split_k": 4}, {**q, "peek": 1, "split_k": 4, "pdl": True},
               {**q, "peek": 1, "split_k": 2}, {**h, "peek": 1, "split_k": 2}, {**h, "peek": 1, "split_k": 4},
               {**h, "peek": 1, "split_k": 4, "pdl": True}, {**s, "split_k": 4}, {**s, "split_k": 4, "pdl": True}]
    else:
        out = [s, {**s, "pdl": True}, {**s, "peek": 1}, {**h, "peek": 1}, {**h, "pdl": True}]
    return with_served(out, shape, KS_MS)


def ks2_candidates(shape: str) -> list[dict]:
    """Session 11, second run: the ksplit winners across their buckets' edges (KS2_MS) — q_a + kv
    64 x 64 split 4 pdl (17-64), 64 x 128 split 4 pdl peek (65-128), 64 x 256 split 4 / 2 lean peek
    pdl (129-512); down / o_b 64 x 64 pdl (peek) and 64 x 128 pdl peek; gate + up 64 x 256 stream-K —
    next to the served tilings."""
    s = {"tile_m": 64, "tile_n": 64, "stages": 12, "wgs": 1, "pdl": True}
    h = {"tile_m": 64, "tile_n": 128, "stages": 10, "wgs": 1, "pdl": True, "peek": 1}
    q = {**Q64P, "pdl": True}
    if shape == "q_a+kv":
        out = [{**s, "split_k": 4}, {**s, "split_k": 4, "peek": 1}, {**h, "split_k": 4}, {**q, "split_k": 4},
               {**q, "split_k": 2}]
    elif shape in ("down", "o_b"):
        out = [s, {**s, "peek": 1}, h]
    else:  # gate + up: 64 x 256 stream-K (96 weight tiles x 112 k64 steps shared by all 132 SMs)
        w = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "stream": 1}
        out = [w, {**w, "lean": 1, "peek": 1}]
    return with_served(out, shape, KS2_MS)


def ks3_candidates(shape: str) -> list[dict]:
    """Session 11, third run: knobs on the new 64-row tilings — q_a + kv 64 x 256 split 4 / 2 with
    depth 3, without lean, stream-K; down / o_b / gate + up 64 x 256 lean peek with pdl (129-256,
    where quack's 64 x 256 is 5-6% faster on down / o_b) — next to the served tilings at KS3_MS."""
    q = Q64P
    if shape == "q_a+kv":
        out = [{**q, "split_k": 4, "pdl": True, "depth": 3}, {**q, "lean": 0, "split_k": 4, "pdl": True},
               {**q, "stream": 1}, {**q, "split_k": 2, "pdl": True, "depth": 3}]
    else:
        out = [{**q, "pdl": True}, {**q, "pdl": True, "depth": 3}]
    return with_served(out, shape, KS3_MS)


def mc_candidates(shape: str) -> list[dict]:
    """Session 12: mc 2 (2-CTA clusters sharing each activation box by TMA multicast) on the 64 x 256
    lean peek tile, whole tiles and stream-K (which then fills all 132 SMs: with mc 1 it ran the k64
    step at ~0.7x, the activation reads capped by L2 -> SM delivery), and on 128 x 256 stream-K,
    next to the served tilings at MC_MS."""
    q = Q64P
    out = [{**q, "stream": 1, "mc": 2}, {**q, "stream": 1}, {**_W, "stream": 1, "mc": 2}]
    if shape != "q_a+kv":  # 32 weight tiles: whole 64 x 256 tiles leave 100 SMs idle below M = 1024
        out = [{**q, "mc": 2}] + out
    return with_served(out, shape, MC_MS)


def sk64_candidates(shape: str) -> list[dict]:
    """Staged by session 12 for the next device run (not measured yet): stream-K on the small 64-row tiles at
    M <= 128, where the served buckets leave 20 (down / o_b: 112 tiles) or 36 (gate+up: 96) SMs idle or split K
    into whole waves; a balanced range per CTA over all 132 SMs. (Stream-K takes no pdl.)"""
    s64 = {"tile_m": 64, "tile_n": 64, "stages": 12, "wgs": 1, "peek": 1, "stream": 1}
    s128 = {"tile_m": 64, "tile_n": 128, "stages": 10, "wgs": 1, "peek": 1, "stream": 1}
    out = [s64, {**s64, "lean": 1}, s128]
    return with_served(out, shape, SK64_MS)


def skn_candidates(shape: str) -> list[dict]:
    """Session 13: what makes stream-K's k64 step ~1.4x slower than the whole tile's (session 12 ncu). Stream-K
    on the 64 x 256 lean peek tile with the grid (sm_count) stepped from the whole-tile count — where every range
    is exactly one tile, so it does the served kernel's work on as many SMs, aligned in k — through count + 1
    (the same SMs, ranges no longer aligned: every CTA at a different k at any moment) up to 132; and 128 x 256
    stream-K at 48 (its whole tiles) and 132. Separates a cost of the stream-K code, of running more SMs at once,
    and of the CTAs reading different k64 activation boxes at once."""
    q = {**Q64P, "stream": 1}
    grids = {"gate+up": (96, 97, 112, 132), "down": (112, 113, 132), "o_b": (112, 113, 132),
             "q_a+kv": (128, 129, 132)}[shape]
    out = [{**q, **({"sm_count": g} if g != 132 else {})} for g in grids]
    if shape == "gate+up":
        out += [{**_W, "stream": 1, "sm_count": 48}, {**_W, "stream": 1}]
    return with_served(out, shape, SKN_MS)


def skp_candidates(shape: str) -> list[dict]:
    """Session 13, after --skn: stream-K is slow where its CTAs read different k64 activation boxes at once (the
    L2 serves ~2.2x fewer sectors than it delivers when many SMs ask for the same box together: ncu, skn). A grid
    G dividing T = tiles x kt gives every CTA L = T / G steps, and the CTAs' k phases (b L mod kt) take only
    kt / gcd(L, kt) values: gate+up's 96 tiles of 112 steps on 128 CTAs -> L = 84, 4 phases of 32 CTAs (as
    q_a+kv's split 4, which coalesces like whole tiles); down / o_b on 128 -> 8 phases of 16. Next to them
    non-dividing grids, 128 x 256 on 96 (2 phases) and 64 CTAs, and the mc 2 pair on 128."""
    q = {**Q64P, "stream": 1}
    grids = {"gate+up": (128, 120), "down": (128, 126), "o_b": (128,), "q_a+kv": ()}[shape]
    out = [{**q, "sm_count": g} for g in grids]
    if shape == "gate+up":
        out += [{**q, "sm_count": 128, "mc": 2}, {**_W, "stream": 1, "sm_count": 96},
                {**_W, "stream": 1, "sm_count": 64}]
    return with_served(out, shape, SKP_MS)


def skq_candidates(shape: str) -> list[dict]:
    """Session 13, after --skp: stream-K on 128 CTAs (4 k phases) ties the whole 64 x 256 tiles at M = 256 because
    both deliver ~10 TB/s from L2 to the SMs (ncu), the activations being 94% of the bytes. 128-row weight tiles
    (two consumer warpgroups) read each activation box half as often: 128 x 128 whole (96 tiles at M = 129..256 on
    gate+up: as many CTAs and MMAs per CTA as 64 x 256, 0.59x the bytes), and stream-K on 128 (gate+up: L = 84, 4
    phases) and 132 CTAs, with mc 2 and depth 3 variants."""
    c = {"tile_m": 128, "tile_n": 128, "stages": 10}
    out = [c, {**c, "stream": 1, "sm_count": 128}, {**c, "stream": 1}]
    if shape == "gate+up":
        out += [{**c, "stream": 1, "sm_count": 128, "depth": 3}, {**c, "stream": 1, "sm_count": 128, "mc": 2},
                {**c, "sm_count": 96, "stream": 1}]
    return with_served(out, shape, SKP_MS) if shape != "q_a+kv" else []


def skr_candidates(shape: str) -> list[dict]:
    """Session 13: the stream-K buckets the tables serve (M = 257..768, 132 CTAs: ranges at scattered k phases) on
    grids that cut their k64 steps into few phases (see skp_candidates): per shape the served stream-K tiling at
    sm_count values whose L = T / G is a whole number with kt / gcd(L, kt) <= 7, next to the served tilings."""
    grids = {"gate+up": {384: (96, 126), 768: (96, 112, 126)}, "q_a+kv": {768: (96, 112)},
             "down": {768: (96, 112, 126)}, "o_b": {}}[shape]
    out = []
    for m, gs in grids.items():
        tun = served_at(shape, m)
        assert tun.get("stream") == 1, (shape, m, tun)
        out += [{**tun, "sm_count": g} for g in gs]
    return with_served(out, shape, SKR_MS) if out else []


def lg_candidates(shape: str) -> list[dict]:
    """Staged by session 14 for the next device run (not measured yet): ours at M = 1024 .. 8192 on the short-K
    shapes, where `quack=False` runs 0.91-0.95x quack (o_b / q_b, cold, session 14) and the gap grows as K shrinks
    (per-tile costs?). The served 128 x 256 tilings with lean 1 (16 fewer uniform-pipe SASS per k64 step: 39 vs
    quack's 23), peek and pdl (quack's large-M buckets launch with pdl; ours do not), next to the served tilings."""
    if shape not in ("down", "o_b", "q_b"):
        return []
    out = []
    for tun in served(shape, LG_MS):
        if tun.get("stream"):  # stream-K takes no pdl
            continue
        for extra in ({"lean": 1}, {"lean": 1, "peek": 1}, {"lean": 1, "pdl": True}, {"pdl": True}):
            if {**tun, **extra} not in out:
                out.append({**tun, **extra})
    return with_served(out, shape, LG_MS)


def skt_candidates(shape: str) -> list[dict]:
    """Split-K's reduction (sessions 14-15): the served split buckets (q_a+kv up to 512, gate+up up to 64) next to
    probe 3 (the last arriver skips the read-back), probe 4 (no reduction at all) and red 1 (pairs of splits in
    clusters of 2 summed through distributed shared memory, the pairs' halves through L2 when split_k > 2:
    stream.py _split_reduce_cluster); build with NVFP4_AOT_WS_PROBE=1. t(served) - t(probe 4) is what a cheaper
    reduction could win. docs/PERFORMANCE.md "session 15"."""
    out = []
    for tun in served(shape, SKT_MS):
        if tun.get("split_k", 1) > 1:
            out += [{**tun, "probe": 3}, {**tun, "probe": 4}, {**tun, "red": 1}]
    return with_served(out, shape, SKT_MS) if out else []


def r64_candidates(shape: str) -> list[dict]:
    """Session 15: red 1 (split-K pairs reduced in a cluster of 2, stream.py _split_reduce_cluster) took ~1.5 us off
    the split-2 buckets; down / o_b at M <= 128 are served unsplit on 112 64-row tiles (S64P / H64P), and split 2
    with the old reduction lost to them (session 11). The 56 128-row tiles split 2 with red 1 (112 CTAs), next to
    the served ones and the old reduction."""
    if shape not in ("down", "o_b"):
        return []
    c64 = {"tile_m": 128, "tile_n": 64, "split_k": 2, "pdl": True}
    out = [{**c64, "stages": 6, "red": 1}, {**c64, "stages": 12, "red": 1}, {**c64, "stages": 12, "peek": 1, "red": 1},
           {**c64, "stages": 12}, {"tile_m": 128, "tile_n": 128, "stages": 8, "split_k": 2, "pdl": True, "red": 1}]
    return with_served(out, shape, R64_MS)


def stages_fitting(tun: dict, epi: int) -> int:
    """The most stages, at most tun's, with which tun's tile fits one CTA's shared memory under epilogue `epi`
    (w4a16_ws.smem_bytes: epi 2's staging blocks, epi 3's tile image)."""
    from nvfp4_aot.kernels.w4a16_ws import SMEM_PER_BLOCK, smem_bytes

    st = tun["stages"]
    while smem_bytes(tun["tile_m"], tun["tile_n"], st, 1, tun.get("wgs", 2), epi) > SMEM_PER_BLOCK:
        st -= 1
    return st


def ep_candidates(shape: str) -> list[dict]:
    """Session 16: the epilogue at large M, where ours (`quack=False`) runs 0.91-0.95x quack on the short-K shapes
    with the same k64 loop (session 14's SASS) and 84-86% tensor-active against quack's 92% (session 15's ncu).
    The served tilings at EP_MS next to probe 5 (no epilogue: what it costs; build with NVFP4_AOT_WS_PROBE=1),
    epi 2 (EPI_BLOCKS[2] chunks per shared-memory round trip) and epi 3 (TMA stores of the tile image), with lean 1
    (session 15's best at large M on down) and as many stages as their shared memory leaves (and that stage count
    with epi 1, to tell the two apart)."""
    out = []
    for tun in served(shape, EP_MS):
        s2, s3 = stages_fitting(tun, 2), stages_fitting(tun, 3)
        probe = {"probe": 5, **({"epi": 1} if tun.get("epi") == 3 else {})}  # (probe 5 replaces epi 0-2's epilogue)
        for extra in (probe, {"epi": 2, "stages": s2, "lean": 1}, {"epi": 3, "stages": s3},
                      {"epi": 3, "stages": s3, "lean": 1}, *(({"stages": s3},) if s3 != tun["stages"] else ())):
            if {**tun, **extra} not in out:
                out.append({**tun, **extra})
    return with_served(out, shape, EP_MS)


def ep2_candidates(shape: str) -> list[dict]:
    """Session 16, after --ep: the epi 3 (and Q64P epi 2) tilings that beat the served ones at large M, next to them
    across the buckets quack serves today (M >= 769), each cold cell timed three times (and hot), to set the tables."""
    t256 = {"tile_m": 128, "tile_n": 256, "stages": 4, "epi": 3}
    q64 = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "lean": 1, "peek": 1}
    out = {"q_a+kv": [{**q64, "epi": 2}, t256, {**t256, "lean": 1}],
           "down": [t256, {**t256, "lean": 1}],
           "o_b": [t256, {**t256, "raster": -8, "depth": 3}, {**t256, "lean": 1}],
           "gate+up": [{**q64, "epi": 2}, t256, {**t256, "lean": 1}],
           "q_b": [{**t256, "raster": 4, "depth": 3}, {**t256, "raster": 4, "depth": 3, "lean": 1}]}.get(shape, [])
    return with_served(out, shape, EP2_MS)


def ep3_candidates(shape: str) -> list[dict]:
    """Session 16: epi 3 below M = 769, where a tiling runs more than one round of tiles per SM (q_b's 512 weight
    tiles at every M, the 385-768 buckets): each served unsplit, non-stream-K tiling at EP3_MS next to its epi 3
    twin (as many stages as its shared memory leaves) and, for the one-warpgroup tiles, its epi 2 twin."""
    out = []
    for tun in served(shape, EP3_MS):
        if tun.get("split_k", 1) > 1 or tun.get("stream"):
            continue
        st = stages_fitting(tun, 3)
        for extra in ({"epi": 3, "stages": st}, *(({"epi": 2},) if tun.get("wgs", 2) == 1 else ())):
            if {**tun, **extra} not in out:
                out.append({**tun, **extra})
    return with_served(out, shape, EP3_MS)


def gap_candidates(shape: str) -> list[dict]:
    """Session 17: the M ranges quack still serves (tiles.WS_OVER_QUACK's gaps: gate+up 17-32, 73-128, 769-1536;
    down / o_b 17-32, 201-256), each cell timed three times cold and twice hot, to move them to ours or to state
    the measured reason they stay. quack runs 64 x 32 at 17-32 (ours had no 32-token dense tile in any table): 64 x
    32 one-warpgroup tiles with pdl / peek and their epi 3 twins; at 201-256 (down / o_b) and 769-1536 (gate+up)
    quack's 64 x 256 is Q64P's tile: Q64P with pdl, epi 2 / epi 3, and T256E at 769-1536; at 73-128 (gate+up) the
    64 x 128 one-warpgroup tile with pdl / peek next to the served stream-K one."""
    if shape not in ("down", "o_b", "gate+up"):
        return []
    t32 = {"tile_m": 64, "tile_n": 32, "stages": 12, "wgs": 1, "pdl": True, "peek": 1}
    out = [t32, {**t32, "epi": 3, "stages": stages_fitting(t32, 3)}, {**t32, "pdl": False}]
    q = Q64P
    if shape == "gate+up":
        out += [{"tile_m": 128, "tile_n": 32, "stages": 12, "split_k": 2, "pdl": True, "red": 1},
                {"tile_m": 64, "tile_n": 128, "stages": 10, "wgs": 1, "pdl": True, "peek": 1},
                {"tile_m": 64, "tile_n": 128, "stages": 10, "wgs": 1, "pdl": True, "peek": 1, "epi": 2},
                {**q, "epi": 2}, {**q, "epi": 3, "stages": stages_fitting(q, 3)}, {**q, "pdl": True},
                {"tile_m": 128, "tile_n": 256, "stages": 4, "epi": 3},
                {"tile_m": 128, "tile_n": 256, "stages": 4, "epi": 3, "lean": 1}]
    else:
        out += [{**q, "epi": 2}, {**q, "epi": 3, "stages": stages_fitting(q, 3)}, {**q, "pdl": True},
                {**q, "pdl": True, "epi": 2}]
    return with_served(out, shape, GAP_MS)


GAP_MS = (17, 24, 32, 64, 96, 128, 200, 224, 256, 769, 1024, 1536)


def m256_candidates(shape: str) -> list[dict]:
    """Session 17: the M = 129-256 misses (gate+up 0.89-0.93x torch). A 128 x 256 CTA (two consumer warpgroups
    sharing each activation stage) ran gate+up M = 256 at ~91% of the SM's tensor peak per SM on its 48 CTAs (T256E,
    68.4 us, session 17 --gap) against ~85% for the served 64 x 256 on 96: split 2 puts it on 96 CTAs (down / o_b:
    112), split 8 on q_a+kv's 16 weight tiles on 128. Last measured before lean / peek / epi 3 / red 1 existed
    (session 9: 47-49 us at M = 256 on gate+up): now with pdl, 6 stages, red 0 / 1, lean, depth 3. Measured (H200,
    docs/PERFORMANCE.md "session 17"): gate+up M = 256 40.4-41.4 us with red 1 (red 0 46.2) vs the served 64 x 256
    37-40; the reduction of a 128 x 256 tile's halves costs ~6 us that nothing overlaps. Kept: red 1 on q_a+kv's
    64 x 256 split 4 (3-5%)."""
    w = {"tile_m": 128, "tile_n": 256, "stages": 6, "pdl": True}
    sk = 8 if shape == "q_a+kv" else 2
    out = [{**w, "split_k": sk, "red": 1}, {**w, "split_k": sk}, {**w, "split_k": sk, "red": 1, "lean": 1},
           {**w, "split_k": sk, "red": 1, "depth": 3}]
    if shape == "q_a+kv":
        out.append({**Q64P, "split_k": 4, "pdl": True, "red": 1})
    return with_served(out, shape, M256_MS)


M256_MS = (129, 192, 256)


def low_candidates(shape: str) -> list[dict]:
    """Session 17: M <= 16, where Nvfp4Linear serves w4a16_gemm (the mma.sync decode kernel; runtime/linear.py
    WS_FROM, set in session 7 against ws tiles of 64+ tokens). The 32-token tiles that beat quack at 17-32 (T32E,
    G32) and 16-token twins, next to the shape's served 17-32 tiling; the sweep times w4a16_gemm at every M <= 64 of
    the run from the same manifest (w4a16_ws_dense_sweep.default_ops)."""
    t16 = {"tile_m": 64, "tile_n": 16, "stages": 12, "wgs": 1, "pdl": True, "peek": 1}
    t32 = {**t16, "tile_n": 32}
    if shape == "gate+up":
        out = [{"tile_m": 128, "tile_n": 16, "stages": 12, "split_k": 2, "pdl": True, "red": 1}, t16, t32]
    elif shape == "q_a+kv":
        out = [{**t16, "split_k": 4}, {**t32, "split_k": 4}, {**t32, "split_k": 2}]
    elif shape == "q_b":
        out = [{"tile_m": 256, "tile_n": 16, "stages": 12, "pdl": True}, {"tile_m": 256, "tile_n": 32, "stages": 12,
                                                                         "pdl": True}, t32]
    else:
        out = [t16, {**t16, "epi": 3}, {**t32, "pdl": False}]
    return with_served(out, shape, (17, 32))


LOW_MS = (1, 4, 8, 9, 12, 16, 17, 32)


def p64_candidates(shape: str) -> list[dict]:
    """Session 34: issue 11's dense parity cells at M = 33..64 (session 33, H100, hot: q_a+kv M = 64 0.96x, o_b 0.99x
    torch bf16). q_a+kv (served 64 x 64 split 4 pdl, no peek): peek, peek + lean, peek on 8 stages, the 17-32 winner's
    64 x 32 split 4 / 2 on two token tiles, 128 x 64 split 8 (half the activation re-reads); down / o_b (served S64P
    epi 3, 112 CTAs): lean, epi 1, 8 stages, 64 x 32 pdl peek epi 3 on two token tiles (224 CTAs)."""
    s = {"tile_m": 64, "tile_n": 64, "stages": 12, "wgs": 1, "pdl": True}
    if shape == "q_a+kv":
        k4 = {**s, "split_k": 4}
        out = [{**k4, "peek": 1}, {**k4, "peek": 1, "lean": 1}, {**k4, "peek": 1, "stages": 8},
               {**k4, "tile_n": 32, "peek": 1}, {**k4, "tile_n": 32, "peek": 1, "split_k": 2},
               {"tile_m": 128, "tile_n": 64, "stages": 12, "split_k": 8, "pdl": True, "peek": 1}]
    elif shape in ("down", "o_b"):
        e3 = {**s, "peek": 1, "epi": 3}
        out = [{**e3, "lean": 1}, {**e3, "epi": 1}, {**e3, "stages": 8}, {**e3, "tile_n": 32}]
    else:
        return []
    return with_served(out, shape, P64_MS)


P64_MS = (33, 48, 64)


def lp_candidates(shape: str) -> list[dict]:
    """Session 34, after p64 (lean 1 took 3-7% off q_a+kv's 64 x 64 split 4, 8 stages 3-5% off down / o_b's 64 x 64 at
    M = 64): the served tilings at LP_MS (M = 9..128, the small token tiles) next to their lean 1 twin and, where they
    hold more, their 8-stage twin."""
    out: list[dict] = []
    for tun in served(shape, LP_MS):
        out.append(tun)
        if not tun.get("lean"):
            out.append({**tun, "lean": 1})
        if tun["stages"] > 8:
            out.append({**tun, "stages": 8})
    return out


LP_MS = (12, 16, 24, 32, 96, 128)
EP3_MS = (64, 128, 192, 256, 384, 512, 640, 768)
EP2_MS = (769, 1024, 1536, 2048, 4096, 8192)
EP_MS = (1024, 2048, 4096, 8192)
STREAM_MS = (128, 192, 256, 384, 512, 768, 1024)
WG1_MS = (256, 1024)
Q64_MS = (128, 256, 384, 512, 1024)
FIT_MS = (128, 136, 192, 200, 240, 255, 256)
KS_MS = (64, 128, 192, 256)
KS3_MS = (129, 192, 256, 320, 512)
MC_MS = (192, 256, 384, 512, 768, 1024, 2048)
SK64_MS = (17, 32, 48, 64, 96, 128)
SKN_MS = (192, 256)
SKP_MS = (129, 192, 256)
SKR_MS = (320, 384, 640, 768)
LG_MS = (1024, 2048, 4096, 8192)
SKT_MS = (64, 128, 256, 384, 512)
R64_MS = (33, 48, 64, 96, 128)
KS2_MS = (17, 32, 48, 64, 65, 96, 128, 129, 160, 192, 224, 256, 257, 320, 384, 448, 512)
MID_MS = (17, 24, 32, 48, 64, 72, 128, 192, 256, 320, 384)
BIG_MS = (193, 256, 384, 385, 512, 768, 769, 1024, 1536, 1537, 2048, 4096, 8192)
