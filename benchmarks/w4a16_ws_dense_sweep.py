"""Tiling sweep of our warp-specialized W4A16 GEMM in dense mode (w4a16_ws_gemm) on the five dense
DeepSeek-V4 shapes, against, in the same run: torch bf16 matmul, quack's W4A16 GEMM (scalar alpha,
or per-row alpha for the two-scale q_a + kv) as a store's `quack` manifest tiles it, and our
mma.sync decode kernel (w4a16_gemm) at small M. Device time from CUDA-graph replays.

  w4a16_ws_dense_sweep.py manifest > sweep.toml        # every candidate of CANDIDATES, one store
  w4a16_ws_dense_sweep.py manifest --split > sweep.toml   # SPLIT_CANDIDATES instead (split-K, M <= 256)
  w4a16_ws_dense_sweep.py manifest --small > sweep.toml   # SMALL_CANDIDATES (pdl, launch floor; M <= 256)
  w4a16_ws_dense_sweep.py manifest --big > sweep.toml     # BIG_CANDIDATES (M >= 193: raster, depth, split-K, pdl)
  w4a16_ws_dense_sweep.py manifest --mid > sweep.toml     # MID_CANDIDATES (M = 17 .. 384: ctas 2, wgs 4, split-K)
  w4a16_ws_dense_sweep.py manifest --tail > sweep2.toml   # TAIL_CANDIDATES (M <= 64: depth, pipe, epi, stages)
  w4a16_ws_dense_sweep.py manifest --lean > sweep.toml    # lean_candidates(): the served tilings at M = 32..256,
                                                          # their lean twins, probes 1 / 2 (build: NVFP4_AOT_WS_PROBE=1)
  w4a16_ws_dense_sweep.py manifest --stream > sweep.toml  # stream_candidates(): stream-K next to the served
                                                          # tilings at M = 128..1024, + quack's buckets there
                                                          # (run with BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --wg1 > sweep.toml     # wg1_candidates(): one consumer warpgroup (wgs 1)
                                                          # vs its wgs 2 twins and the served tilings at
                                                          # M = 256, 1024, + quack's buckets (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --q64 > sweep.toml     # q64_candidates(): tile_m 64 (wgs 1), peek, next to
                                                          # the served tilings at Q64_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --fit > sweep.toml     # fit_candidates(): partial token tiles after the
                                                          # 64-row-box change, at FIT_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --ksplit > sweep.toml  # ksplit_candidates(): 64-row tiles split over K (q_a+kv)
                                                          # or 64 x 64 / 64 x 128 at KS_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --ks2 > sweep.toml     # ks2_candidates(): their winners across the bucket
                                                          # edges at KS2_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --ks3 > sweep.toml     # ks3_candidates(): depth 3 / pdl / stream-K on them
                                                          # at KS3_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --mc > sweep.toml      # mc_candidates(): 2-CTA activation multicast, whole
                                                          # tiles / stream-K, at MC_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --sk64 > sweep.toml    # sk64_candidates(): stream-K on 64 x 64 / 64 x 128,
                                                          # at SK64_MS (BASE_MANIFEST=sweep; staged, not run)
  w4a16_ws_dense_sweep.py manifest --skn > sweep.toml    # skn_candidates(): stream-K's grid size scanned from the
                                                          # whole-tile count (aligned: the served kernel's work) up
                                                          # to 132, at SKN_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --skp > sweep.toml    # skp_candidates(): stream-K on grids dividing its steps
                                                          # into few k phases, at SKP_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --skq > sweep.toml    # skq_candidates(): 128 x 128 whole and stream-K there
  w4a16_ws_dense_sweep.py manifest --skr > sweep.toml    # skr_candidates(): the served stream-K buckets (M = 257..768)
                                                          # on few-phase grids, at SKR_MS (BASE_MANIFEST=sweep)
  nvfp4-build compile sweep.toml manifests/default.toml -o ROOT -j 2   # (CPU box; no --arch: that writes shard tables)
  w4a16_ws_dense_sweep.py run ROOT [M ...]             # (GPU) default M: 33 .. 8192 (env SWEEP_SHAPES=a,b: only those)
  SWEEP_COLD=1 SWEEP_REPEAT=2 ... run ROOT 128 256      # cold L2 (every kernel's weights rotated over
                                                          # common.cold_copies copies), each cell timed twice
  SWEEP_PROF=1 ncu --profile-from-start off --metrics ... w4a16_ws_dense_sweep.py run ROOT 256
                                                          # (GPU) each ws cell profiled once instead of timed
  SWEEP_TAGS="64x256 s6 w1 L SK pk@96;..." ... run ROOT 256   # only the cells whose printed tag (@ sm_count when not
                                                          # 132) is in the list (ncu on a few cells)

The sweep manifest gives each shape one op whose bucket [i, i] holds candidate i (buckets only
make the builder build every candidate into one store); `run` calls the store's kernels
directly, each checked against the float64 reference at CHECK_MS (fresh NaN-poisoned output),
then timed. The baselines come from the store's BASE_MANIFEST (default: "default"), opened
separately (an op id may be tiled differently by two manifests). Cells: us (x torch bf16, % of
the dense bf16 peak); "best" per M names the fastest candidate and its ratio to quack."""

import math
import os
import sys

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


def lean_candidates(shape: str) -> list[dict]:
    """Session 7 `wsdec`: the tilings tiles.py serves at M = 32, 64, 128, 256 (one each), each
    next to its lean 1 twin; the M <= 64 one also as probe 1 (no decode) and probe 2 (no wgmma) —
    diagnostics whose output is wrong by design (not checked; kernels/w4a16_ws/lean.py)."""
    from nvfp4_aot.kernels.w4a16_ws.tiles import dense_table

    n, k, _ = SHAPES[shape]
    out: list[dict] = []
    for m in (32, 64, 128, 256):
        tun = next(t for edge, t in dense_table({"n": n, "k": k}) if edge is None or m <= edge)
        for extra in ({}, {"lean": 1}, *(({"probe": 1}, {"probe": 2}) if m == 64 and tun.get("pipe", 16) == 16
                                          else ())):
            if {**tun, **extra} not in out:
                out.append({**tun, **extra})
    return out


def served(shape: str, ms) -> list[dict]:
    """The distinct tilings tiles.dense_table serves the shape at the M of ms, in order."""
    from nvfp4_aot.kernels.w4a16_ws.tiles import dense_table

    n, k, _ = SHAPES[shape]
    out: list[dict] = []
    for m in ms:
        tun = next(t for edge, t in dense_table({"n": n, "k": k}) if edge is None or m <= edge)
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
    q = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "lean": 1, "peek": 1, "pdl": True}
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
    q = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "lean": 1, "peek": 1}
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
    q = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "lean": 1, "peek": 1}
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
    q = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "lean": 1, "peek": 1, "stream": 1}
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
    q = {"tile_m": 64, "tile_n": 256, "stages": 6, "wgs": 1, "lean": 1, "peek": 1, "stream": 1}
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
    from nvfp4_aot.kernels.w4a16_ws.tiles import dense_table

    n, k, _ = SHAPES[shape]
    grids = {"gate+up": {384: (96, 126), 768: (96, 112, 126)}, "q_a+kv": {768: (96, 112)},
             "down": {768: (96, 112, 126)}, "o_b": {}}[shape]
    out = []
    for m, gs in grids.items():
        tun = next(t for edge, t in dense_table({"n": n, "k": k}) if edge is None or m <= edge)
        assert tun.get("stream") == 1, (shape, m, tun)
        out += [{**tun, "sm_count": g} for g in gs]
    return with_served(out, shape, SKR_MS) if out else []


def quack_ops(ms=(128, 1024)) -> list[str]:
    """manifests/default.toml's quack ops for the sweep's shapes, only the buckets meeting [ms]:
    the --stream store's baseline without compiling all of default.toml (run with BASE_MANIFEST=sweep)."""
    import tomllib

    from nvfp4_aot.build.manifest import default_manifest_path

    shapes = {(n, k) for n, k, _ in SHAPES.values()}
    out = []
    for op in tomllib.loads(default_manifest_path().read_text())["op"]:
        if (op["family"] not in ("quack_w4a16_gemm", "quack_w4a16_rowalpha_gemm")
                or (op["problem"].get("n"), op["problem"].get("k")) not in shapes):
            continue
        keep = [b for b in op["buckets"] if b["m"][0] <= ms[1] and b["m"][1] >= ms[0]]
        rows = [f"  {{ m = [{1 if i == 0 else b['m'][0]}, {b['m'][1]}], tuning = {{ "  # buckets start at M = 1
                + ", ".join(f"{a} = {_toml(v)}" for a, v in b["tuning"].items()) + " } },"
                for i, b in enumerate(keep)]
        prob = ", ".join(f"{a} = {_toml(v)}" for a, v in op["problem"].items())
        out += ["", "[[op]]", f'family = "{op["family"]}"', f"problem = {{ {prob} }}", "buckets = [", *rows, "]"]
    return out


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
KS2_MS = (17, 32, 48, 64, 65, 96, 128, 129, 160, 192, 224, 256, 257, 320, 384, 448, 512)
MID_MS = (17, 24, 32, 48, 64, 72, 128, 192, 256, 320, 384)
BIG_MS = (193, 256, 384, 385, 512, 768, 769, 1024, 1536, 1537, 2048, 4096, 8192)
MS = (33, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
PROF = os.environ.get("SWEEP_PROF") == "1"  # profile each ws cell once (ncu --profile-from-start off) instead of timing
TAGS = [t for t in os.environ.get("SWEEP_TAGS", "").split(";") if t]  # only these ws cells (printed tags); all if empty
CHECK_MS = (17, 33, 64, 128, 136, 192, 193, 200, 255, 256, 300, 1000, 1024, 1537)  # those of the run's M
OURS_MS = (16, 32, 33, 64)  # w4a16_gemm (Nvfp4Linear's decode kernel) timed here too, and every M <= 64 of the run


def _toml(v) -> str:
    return "true" if v is True else "false" if v is False else str(v)


# The sweeps that time candidates next to the served tilings at their own M, on every shape but the floor and
# q_b, with quack's buckets over those M as the baseline: mode -> (candidates(shape), M).
SERVED_SWEEPS = {"fit": (fit_candidates, FIT_MS), "ksplit": (ksplit_candidates, KS_MS),
                 "ks2": (ks2_candidates, KS2_MS), "ks3": (ks3_candidates, KS3_MS), "mc": (mc_candidates, MC_MS),
                 "sk64": (sk64_candidates, SK64_MS), "skn": (skn_candidates, SKN_MS),
                 "skp": (skp_candidates, SKP_MS), "skq": (skq_candidates, SKP_MS),
                 "skr": (skr_candidates, SKR_MS)}


def manifest(split: bool = False, small: bool = False, big: bool = False, mid: bool = False, tail: bool = False,
             lean: bool = False, stream: bool = False, wg1: bool = False, q64: bool = False, mode: str = "") -> str:
    """The sweep manifest of one mode: a flag, or `mode`, a key of SERVED_SWEEPS."""
    out = ['archs = ["sm_90a"]']
    for shape, (n, k, _) in SHAPES.items():
        if mode:
            cands = SERVED_SWEEPS[mode][0](shape) if shape not in ("floor", "q_b") else []
        elif q64:
            cands = q64_candidates(shape) if shape != "floor" else []
        elif wg1:
            cands = wg1_candidates(shape) if shape != "floor" else []
        elif stream:
            cands = stream_candidates(shape) if shape != "floor" else []
        elif lean:
            cands = lean_candidates(shape) if shape != "floor" else []
        elif small or big or mid or tail:
            cands = (BIG_CANDIDATES if big else MID_CANDIDATES if mid else TAIL_CANDIDATES if tail
                     else SMALL_CANDIDATES).get(shape, [])
        elif shape == "floor":
            continue
        else:
            tups = SPLIT_CANDIDATES.get(shape, []) if split else [(*c, 1) for c in CANDIDATES]
            cands = [{"tile_m": tm, "tile_n": tn, "stages": st, **({"split_k": sk} if sk > 1 else {})}
                     for tm, tn, st, sk in tups]
        if not cands:
            continue
        rows = [f"  {{ m = [{i + 1}, {i + 1}], tuning = {{ " + ", ".join(f"{a} = {_toml(v)}" for a, v in c.items())
                + " } },"
                for i, c in enumerate(cands)]
        out += ["", f"# {shape}", "[[op]]", 'family = "w4a16_ws_gemm"', f"problem = {{ n = {n}, k = {k} }}",
                "buckets = [", *rows, "]"]
    if mode:
        ms = SERVED_SWEEPS[mode][1]
        out += quack_ops((ms[0], ms[-1]))
    elif stream or wg1 or q64:
        out += quack_ops((Q64_MS[0], Q64_MS[-1]) if q64 else WG1_MS if wg1 else (128, 1024))
    return "\n".join(out) + "\n"


def run(root: str, ms: list[int]) -> None:
    import torch
    from common import bf16_peak, cold_copies, device_name, exit_on_failures, time_cuda, time_cuda_rot

    from nvfp4_aot.kernels import eval_dim, get_family
    from nvfp4_aot.runtime import open_store
    from nvfp4_aot.runtime.scratch import OpScratch

    dev = torch.device("cuda")
    peak = bf16_peak()
    store = open_store(root, manifest=os.environ.get("SWEEP_MANIFEST", "sweep"))
    base = open_store(root, manifest=os.environ.get("BASE_MANIFEST", "default"))
    store.prime()
    base.prime()
    fam = get_family("w4a16_ws_gemm")
    cold = os.environ.get("SWEEP_COLD") == "1"  # weights rotated over copies: read from DRAM every call
    rounds = int(os.environ.get("SWEEP_REPEAT", "1"))  # ws cells timed this many times (printed a/b)
    print(f"device: {device_name()}; torch {torch.__version__}; w4a16_ws_gemm dense tiling sweep; cells: us "
          f"(x torch bf16, % of dense bf16 peak); {'cold L2 (weights rotated over copies)' if cold else 'hot L2'}")

    def timer(fns):
        return time_cuda_rot(fns, reps=10) if cold else time_cuda(fns[0], reps=10)

    failures = 0
    mmax = max(ms)

    def pk(m, n, k, t):
        return f", {2.0 * m * n * k / t / peak:.0%}" if peak else ""

    only = os.environ.get("SWEEP_SHAPES", "").split(",") if os.environ.get("SWEEP_SHAPES") else None
    for shape, (n, k, scales) in SHAPES.items():
        if only is not None and shape not in only:
            continue
        try:
            kerns = store.op(fam.name, n=n, k=k).kernels()
        except Exception:  # noqa: BLE001 (a sweep store without this shape)
            continue
        p0 = fam.parse_params(kerns[0].record["params"])
        data = fam.make_inputs(p0, mmax, dev, seed=n + k)  # weights do not depend on the tiling
        checks = [m for m in CHECK_MS if m in ms and (n * k <= 1 << 26 or m <= 256)]  # fp64 cost
        want = {m: fam.reference(p0, {**data, "act": data["act"][:m], "out": data["out"][:m]})["out"] for m in checks}
        w16 = torch.randn((n, k), device=dev, dtype=torch.bfloat16)
        w16s = [w16] + [w16.clone() for _ in range(cold_copies(2 * n * k) - 1 if cold else 0)]
        nq = cold_copies(data["blob"].nbytes + data["sf"].nbytes) if cold else 1
        wq = [(data["blob"], data["sf"])] + [(data["blob"].clone(), data["sf"].clone()) for _ in range(nq - 1)]
        tb = {m: timer([lambda w=w, m=m: torch.matmul(data["act"][:m], w.T) for w in w16s]) for m in ms}
        print(f"{shape} ({n}x{k}, {scales} global scale{'s' if scales > 1 else ''}) torch bf16 us: "
              + " ".join(f"M={m}: {tb[m] * 1e6:.1f}" for m in ms))
        # baselines: quack as the base manifest tiles it, our decode kernel at small M
        qname = "quack_w4a16_gemm" if scales == 1 else "quack_w4a16_rowalpha_gemm"
        tq = {}
        try:
            qop = base.op(qname, n=n, k=k)
        except Exception:  # noqa: BLE001 (a base store without it)
            qop = None
        if qop is not None:
            scratch = OpScratch(qop, mmax, dev)
            alpha = data["alpha"] if scales > 1 else data["alpha"][:1].contiguous()
            cells = []
            for m in ms:
                sc = scratch(m)
                tq[m] = timer([lambda b=b, f=f, m=m, sc=sc: qop(data["act"][:m], b, f, alpha, data["out"][:m], *sc,
                                                                check=False) for b, f in wq])
                cells.append(f"M={m}: {tq[m] * 1e6:6.1f} ({tb[m] / tq[m]:.2f}x{pk(m, n, k, tq[m])})")
            print(f"  {'quack (' + qname.split('_')[-2] + ')':18}      | " + " | ".join(cells))
        try:
            oop = base.op("w4a16_gemm", n=n, k=k, act_order="natural")
            cells = []
            for m in sorted(set(OURS_MS) | {m for m in ms if m <= 64}):
                args = (data["act"][:m], data["blob"], data["sf"], data["alpha"], data["out"][:m])
                t = time_cuda(lambda: oop(*args, check=False), reps=10)
                tbm = tb.get(m) or time_cuda(lambda: torch.matmul(data["act"][:m], w16.T), reps=10)
                cells.append(f"M={m}: {t * 1e6:6.1f} ({tbm / t:.2f}x)")
            print(f"  {'ours w4a16_gemm':18}      | " + " | ".join(cells))
        except Exception as e:  # noqa: BLE001
            print(f"  ours w4a16_gemm: not timed ({e})")
        best, served, streamk = {}, {}, {}
        for kern in kerns:
            p = fam.parse_params(kern.record["params"])
            cells, bad = [], []
            # split-K scratch: zeroed flags + workspace at mmax, contiguous prefixes per m (as OpScratch)
            sdims = [(a.name, a.shape) for a in fam.signature(p).args if a.scratch]
            tag = (f"{p.tile_m}x{p.tile_n} s{p.stages}" + (f" k{p.split_k}" if p.split_k > 1 else "")
                   + (f" p{p.pipe}" if p.pipe != 16 else "") + (f" r{p.raster}" if p.raster != 1 else "")
                   + (f" d{p.depth}" if p.depth != 2 else "") + (f" w{p.wgs}" if p.wgs != 2 else "")
                   + (f" c{p.ctas}" if p.ctas != 1 else "") + (" e0" if p.epi == 0 else "")
                   + (" pdl" if p.pdl else "") + (" L" if p.lean else "") + (f" P{p.probe}" if p.probe else "")
                   + (" SK" if p.stream else "") + (" pk" if p.peek else "") + (" mc2" if p.mc == 2 else "")
                   + (f"@{p.sm_count}" if p.sm_count != 132 else ""))
            if TAGS and tag not in TAGS:
                continue
            env = {"N": n, "K": k, "M": mmax}
            sbuf = {nm: torch.zeros(math.prod(eval_dim(d, env) for d in sh), device=dev,
                                    dtype=torch.int32 if nm == "flags" else torch.float32) for nm, sh in sdims}
            for m in ms:
                out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device=dev)
                sc = {nm: sbuf[nm][:math.prod(shp)].view(shp) for nm, sh in sdims
                      for shp in [tuple(eval_dim(d, {**env, "M": m}) for d in sh)]}
                args = (data["act"][:m], data["blob"], data["sf"], data["alpha"], out, *sc.values())
                if m in want and not p.probe:  # a probe's output is wrong by design: timed only
                    for _ in range(2):  # twice: the second call proves the flags came back to zero
                        out.fill_(float("nan"))
                        kern(*args)
                        torch.cuda.synchronize()
                        bad += [f"M={m}: {x}" for x in fam.check(p, {"out": out, **sc}, {"out": want[m]})]
                if PROF:  # under Nsight Compute (--profile-from-start off): one warm-up, one profiled launch
                    kern(*args, check=False)
                    torch.cuda.synchronize()
                    print(f"PROF {shape} M={m} {tag}", flush=True)
                    torch.cuda.profiler.start()
                    kern(*args, check=False)
                    torch.cuda.synchronize()
                    torch.cuda.profiler.stop()
                    continue
                tr = [timer([lambda b=b, f=f, args=args: kern(args[0], b, f, *args[3:], check=False) for b, f in wq])
                      for _ in range(rounds)]
                t = sum(tr) / len(tr)
                tt = "/".join(f"{x * 1e6:.1f}" for x in tr) if rounds > 1 else f"{t * 1e6:6.1f}"
                if p.probe:  # never the "best": it computes something else
                    cells.append(f"M={m}: {tt} ({tb[m] / t:.2f}x)")
                    del out
                    continue
                best[m] = min(best.get(m, (float("inf"), "")), (t, tag))
                cells.append(f"M={m}: {tt} ({tb[m] / t:.2f}x{pk(m, n, k, t)})")
                if not p.stream:
                    served[m] = min(served.get(m, (float("inf"), "")), (t, tag))
                else:
                    streamk[m] = min(streamk.get(m, (float("inf"), "")), (t, tag))
                del out
            failures += bool(bad)
            print(f"  {'ws ' + tag:22} {'PRB ' if p.probe else 'OK  ' if not bad else 'FAIL'} | " + " | ".join(cells)
                  + (f"  {bad[:3]}" if bad else ""), flush=True)
        if not best:  # SWEEP_PROF: nothing timed
            continue
        print("  best ws: " + " | ".join(
            f"M={m}: {best[m][1]} {best[m][0] * 1e6:.1f} us ({tb[m] / best[m][0]:.2f}x torch"
            + (f", {tq[m] / best[m][0]:.2f}x quack)" if m in tq else ")") for m in ms))
        if streamk:  # stream-K's best against the best of the other candidates (same run)
            print("  stream-K vs not: " + " | ".join(
                f"M={m}: {streamk[m][1]} {streamk[m][0] * 1e6:.1f} vs {served[m][1]} {served[m][0] * 1e6:.1f} us "
                f"({served[m][0] / streamk[m][0]:.3f}x)" for m in ms if m in streamk and m in served))
        del data, want, w16, w16s, wq
        torch.cuda.empty_cache()
    exit_on_failures(failures)


if __name__ == "__main__":
    from common import sweep_cli

    sweep_cli(__doc__, lambda: manifest(split="--split" in sys.argv, small="--small" in sys.argv,
                                        big="--big" in sys.argv, mid="--mid" in sys.argv,
                                        tail="--tail" in sys.argv, lean="--lean" in sys.argv,
                                        stream="--stream" in sys.argv, wg1="--wg1" in sys.argv,
                                        q64="--q64" in sys.argv,
                                        mode=next((m for m in SERVED_SWEEPS if f"--{m}" in sys.argv), "")), run, MS)
