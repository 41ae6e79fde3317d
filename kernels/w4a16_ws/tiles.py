"""Dense tile tables of w4a16_ws_gemm (Nvfp4Linear's kernel above its decode threshold).

Measured on an H200 (benchmarks/w4a16_ws_dense_sweep.py: 7 tilings x M = 33..8192 on the five
DeepSeek-V4 dense shapes, docs/PERFORMANCE.md section (r)). What the sweep shows: the token tile
is what matters (tile_m 256 only pays on the very wide q_b at small M); 64 tokens while M is small
(the grid is then N / 128 weight tiles, each streaming all of K: time flat in M), 128 in the
middle, 256 for prefill; the stage count moves times by a few percent at most.

Split-K (split_k > 1, kernel.py _split_reduce; H200 sweep `w4a16_ws_dense_sweep.py manifest
--split`, docs/PERFORMANCE.md "wssplit"): it pays exactly where token tiles x weight tiles x
splits stays within one wave of 132 SMs: q_a+kv (16 weight tiles of 128 rows) split 8 at M <= 64
(39 -> 11.7 us), 4 up to 256; gate+up (48) split 2 up to 128; down / o_b (56) split 2 at
M <= 64. A second wave costs more than the split saves (e.g. down 128 x 64 split 2 at M = 128:
25.5 vs 19.1 us unsplit).

pdl (programmatic dependent launch, kernel.py; `w4a16_ws_dense_sweep.py manifest --small`,
docs/PERFORMANCE.md "session 6, wssmall"): the launch floor (one k64 step on 132 CTAs) 3.5 ->
2.7 us, and 0.7-1.3 us off the buckets up to M = 384 (e.g. q_a + kv split 8 at M = 33: 11.7 ->
11.0 us; down 128 x 128 at M = 33-256: -0.9 to -1.4 us); set on every bucket up to 384 (the larger
ones were not measured with it). Cluster split-K (the splits of a tile as one cluster reducing
through DSMEM) was measured too and lost (q_a + kv split 8: 28 vs 11 us; split 4: 15.5 vs 14.5):
not kept. Session 15 (`skt`, docs/PERFORMANCE.md "session 15") found why: 32 clusters of 4 do not
fit the H200 at once (27.2 vs 16.9 us, a second wave), clusters of 2 always do (a TPC is 2 SMs).
red 1 (stream.py _split_reduce_cluster: splits 2q, 2q + 1 one cluster of 2, summed through DSMEM)
serves the split-2 buckets: q_a+kv 257-512 22.7-23.3 vs 25.3-25.5 us cold (hot 22.6-22.9 vs
24.8), gate+up 1-64 22.8-22.9 vs 24.3 cold (hot 21.9 vs 23.5). Split 4 with the pairs' halves
through L2 ties red 0 (M = 256: 17.1 vs 17.5 cold, 17.2 vs 17.5 hot; M = 64: 11.3 vs 10.7): not
served.

Session 7 (`wsmid`, `w4a16_ws_dense_sweep.py manifest --mid`, M = 17 .. 384, docs/PERFORMANCE.md
"session 7, wsmid"): two CTAs per SM (ctas 2: 128 x 64 tiles, half the registers each, splits up
to 16 so tiles x splits fills 264 slots) and 4-warpgroup 256 x 64 tiles (wgs 4) split to ~112 CTAs
lost to the one-CTA 128 x 64 buckets at every M <= 64 (down 13.5-15.5 vs 12.5 us, o_b 11.2-13.0 vs
10.0, q_a+kv 14.6-17.4 vs 10.8): the k64 step is bound by the SM's issue and tensor-core
throughput, not by one CTA's serial chain, so more resident chains do not help. What changed:
gate+up 129-256 128 x 256 split 2 (45.2 / 46.0 vs 49.9 / 50.5 us at 192 / 256), q_b 129-256 128 x
256 raster 4 depth 3; WS_OVER_QUACK below (from M = 17 on q_a+kv and q_b, ranges ending at the
measured crossover with quack inside its 129-384 bucket).

Session 8 (`sk`, stream-K: stream 1, kernels/w4a16_ws/stream.py; `w4a16_ws_dense_sweep.py manifest
--stream`, cold L2, docs/PERFORMANCE.md "session 8, sk"): stream-K balances the launch's k64 steps
over 132 CTAs where whole tiles leave a partial wave; kept where it beat the served bucket by >= 3%
in the same run (each cell timed twice): gate+up 257-384 256 x 128 (63.0 vs 71.4 us at 384),
513-1024 128 x 256 (105.7 vs 136.4 at 768; 136.3 / 136.0 vs 148.7 / 151.5 at 1024, two runs; quack
serves 769+ by default); q_a+kv 257-384 128 x 128 (27.9 vs 29.2), 513-768 128 x 256 depth 3 (42.8
vs 46.0); down 513-768 128 x 256 (60.1 vs 64.9). Each bucket has the same token-tile count at every
M inside it as at the M measured. Elsewhere (M <= 256, o_b, q_b) stream-K lost or tied.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from . import WsParams

_ALWAYS = ("tile_m", "tile_n", "stages")  # every row names its tile and ring depth
_DEFAULTS = {f.name: f.default for f in fields(WsParams)}


def _t(tile_m: int, tile_n: int, stages: int, split_k: int = 1, **knobs: Any) -> dict[str, Any]:
    """One row's tuning as a manifest names it: the tile, the ring depth, and only the knobs that differ from
    WsParams' defaults, in WsParams' field order (plan writes rows in this order: the committed manifests
    follow it). A knob WsParams does not have is a TypeError here, not a bad manifest later."""
    given = {"tile_m": tile_m, "tile_n": tile_n, "stages": stages, "split_k": split_k, **knobs}
    if unknown := sorted(set(given) - set(_DEFAULTS)):
        raise TypeError(f"_t: {unknown} are not WsParams knobs")
    return {n: given[n] for n in _DEFAULTS if n in given and (n in _ALWAYS or given[n] != _DEFAULTS[n])}


# Session 13 (`w4a16_ws_dense_sweep.py manifest --skn / --skp / --skr`, docs/PERFORMANCE.md "session 13"): stream-K's
# k64 step is slow when its CTAs read different activation boxes at once (132 CTAs: every range starts at another
# k; the L2 then serves ~2x the sectors it does when many SMs ask for the same box together, H200 ncu). A grid G
# that divides the launch's T = tiles x kt steps puts the ranges' starts on only kt / gcd(T / G, kt) k phases.
# Kept where it beat the 132-CTA bucket by >= 3% in two cold timings and hot: gate+up 257-384 256 x 128 on 126
# CTAs (L = 64, 7 phases: 64.1 / 65.2 vs 72.2 / 67.2 us cold at M = 320 / 384, 63.7 / 63.8 vs 67.4 / 67.0 hot);
# down 513-768 128 x 256 on 126 (L = 64, 3 phases: 56.2 / 58.7 vs 59.7 / 62.3 cold at 640 / 768, 56.3 / 56.9 vs
# 57.9 / 59.0 hot). sm_count is only the grid size: on a device with fewer SMs the extra CTAs queue (stream-K CTAs
# never wait on each other).
SK126 = 126


# Session 9 (`q64`, docs/PERFORMANCE.md "session 9, q64"): quack's own CTA at these M, one consumer
# warpgroup on a 64-row weight tile x 256 tokens (tile_m 64, wgs 1; ~96 CTAs on 6144 / 2048 rows
# without split-K), with lean 1 (per-step descriptor arithmetic) and peek 1 (early full-barrier test;
# session 9 served gate+up 201-256 without it, "Q64")
Q64P = _t(64, 256, 6, wgs=1, lean=1, peek=1)


# Session 10 (`fit`, docs/PERFORMANCE.md "session 10, fit"): with no TMA box past the tensor's end
# (sched.act_boxes) a 64 x 256 tile costs the same at every M in 129..256 (down 19.2-19.8 us, o_b
# 13.8-14.2, gate+up 38.1-40.4 at M = 136..256, H200, cold L2), so Q64P takes down / o_b / gate+up
# 129-256 (down / o_b: 128 x 128 21.5-22.2 / 15.2-17.6 before). 64 x 128 on one warpgroup took
# down / o_b 65-128 (down 15.8 vs 18.3 us, o_b 11.6 vs 13.0 at M = 128 against 128 x 64 pdl).
# Session 11 (`ks64`, docs/PERFORMANCE.md "session 11, ks64": `w4a16_ws_dense_sweep.py manifest
# --ksplit` / `--ks2`, M = 17 .. 512, cold and hot L2, each cold cell timed twice): the same 64-row
# tiles with pdl and peek (H64P: down 13.9-14.0 vs 15.6-15.7 us at M = 65..128, o_b 10.3-10.4 vs
# 11.0-11.5), and 64 x 64 for down / o_b 17-64 (S64P: down 12.0-12.7 vs 12.7 for 128 x 64 split 2
# pdl, o_b 8.8-9.3 vs 10.0-10.1); on the two-scale q_a + kv (32 weight tiles of 64 rows) split-K
# over 64-row tiles puts 128 CTAs on the SMs at every M up to 512 (see its row).
H64P = _t(64, 128, 10, wgs=1, pdl=True, peek=1)
S64P = _t(64, 64, 12, wgs=1, pdl=True, peek=1)


# Session 16 (`w4a16_ws_dense_sweep.py manifest --ep / --ep2 / --ep3`, docs/PERFORMANCE.md "session 16", H200,
# cold L2, each cell timed 2-3 times): probe 5 (no epilogue) showed the tile's global stores costing 4-14% of a
# large-M launch (o_b M = 8192: 328 vs 374-384 us; q_b 2325 vs 2702): every SM stores its tile at the same moment
# and the k loop waits for it. epi 3 (epilogue.py _epilogue_tma) writes the tile's bf16 image to shared memory and
# lets TMA bulk stores drain it under the next tile's k loop; it needs the image's shared memory (64 KiB at 128 x
# 256: 4 stages instead of 6), and pays wherever a CTA runs more than one tile. T256E = 128 x 256 epi 3: o_b M =
# 8192 333.9-344.5 vs 367-380 us (quack 345.7), q_b 2408-2415 vs 2655-2673 (quack 2479), down 500-520 vs 534-556
# (quack 512), gate+up 995-1042 vs 1043-1091 (quack 1073), q_a+kv 323-326 vs 336-339 (quack 347). Q64P with epi 2
# (4 chunks per shared-memory round trip) on q_a+kv 769-1024: 39.8-40.1 vs 45.1-46.4 us (quack 39.7).
T256E = _t(128, 256, 4, epi=3)


# Session 17 (`w4a16_ws_dense_sweep.py manifest --gap`, docs/PERFORMANCE.md "session 17", H200, each cell timed three
# times cold and twice hot, quack in the same run): the M ranges quack still served. At 17-32 quack runs 64 x 32; ours
# had no 32-token dense tile: 64 x 32 one-warpgroup pdl peek epi 3 (T32E) down 10.2-10.3 vs quack 11.2-11.4 us cold
# (hot 10.2 vs 10.2), o_b 7.6-7.7 vs 8.2-9.4 (hot 7.5-7.6 vs 7.7-7.8); gate+up 128 x 32 split 2 pdl red 1 (G32)
# 20.3-20.6 vs 26.8 (hot 20.1-20.5 vs 26.9; the served 128 x 64 split 2 23.0-24.1). Q64P with pdl on down / o_b
# 129-256: down 17.8-18.1 vs quack 18.9-24.2 cold (hot 17.5-18.0 vs 17.3-23.9), o_b 12.7-12.9 vs 14.9-17.1 (hot
# 12.5-12.7 vs 12.6-17.6); Q64P without pdl 18.7-18.9 / 13.9-14.2.
T32E = _t(64, 32, 12, wgs=1, pdl=True, peek=1, epi=3)
G32 = _t(128, 32, 12, 2, pdl=True, red=1)


# Session 34 (`w4a16_ws_dense_sweep.py manifest --p64`, docs/experiments/p64, docs/PERFORMANCE.md "session 34", H100,
# hot x2 / cold x3, torch and quack in the same run): issue 11's M = 64 parity cells. down / o_b at 49-64: S64P epi 3 on
# 8 stages instead of 12 (S64P8), o_b 7.8-8.0 vs 8.1 us hot at M = 64 (cold 8.2 vs 8.6), down 11.2 vs 11.5 (cold 11.6
# vs 11.8); tied at M = 48 and 0.2-0.5 us slower at 33, so 33-48 keeps 12 stages. q_a+kv 33-64: lean 1 + peek 1 on the
# served 64 x 64 split 4, 10.0-10.1 vs 10.3-10.5 us hot and 10.2-10.3 vs 11.0-11.1 cold at every M of the bucket.
S64P8 = _t(**{**S64P, "epi": 3, "stages": 8})
# Then (`manifest --lp`, docs/experiments/p64: lean 1 / 8-stage twins of the served small token tiles at M = 12, 16,
# 32, 96, 128; H100, hot x1 / cold x2, every cell 1-7% either way, kept where both hot and cold won inside the row's
# bucket): lean 1 on q_a+kv 1-16 (8.0-8.1 vs 8.2-8.5 us) and 65-128 (12.5-12.7 vs 12.8-12.9), q_b 1-16 (25.6-25.9 vs
# 26.7-26.9), gate+up 17-32 (G32: 20.2-21.2 vs 21.5-21.9), down 17-32 (T32E: 10.1-10.3 vs 10.3-10.5), down / o_b 65-128
# (H64PL: down 13.0-13.3 vs 13.4-13.8, o_b 9.5-9.9 vs 9.8-10.3); 8 stages on o_b 17-32 (T32E: 7.2-7.6 vs 7.7-8.0; down
# loses with it) and gate+up 65-128 (stream-K 64 x 128: 29.3-29.8 vs 30.2-31.9 cold, 28.7 / 29.8 vs 28.5 / 31.3 hot).
# No change: q_a+kv and q_b 17-32, q_b 65-128 (mixed).
H64PL = _t(**H64P, lean=1)


# Rule for an unmeasured shape (the one the one-scale 7168-wide shapes measured before session 6's `wstab` sweep).
DENSE = ((64, _t(128, 64, 6, 2, pdl=True)), (128, _t(128, 64, 6, pdl=True)), (384, _t(128, 128, 10, pdl=True)),
         (None, _t(128, 256, 6)))

# Above M = 192 (session 6, `wstab`: benchmarks/w4a16_ws_dense_sweep.py manifest --big, 42 candidates x
# M = 193 .. 8192 on an H200, docs/PERFORMANCE.md "session 6, wstab"). Inside one tiling the time is a
# step function of the token tiles (ceil(M / tile_n)) and of the rounds of 132 SMs they take, so a
# bucket boundary sits where the winner's tile count steps (256, 512, 768, 1024). What moved: 128 x 256
# (2 token tiles) from M = 257 on where 128 x 128 needed 3 (gate+up 74 vs 98 us at M = 384, down 37
# vs 45); 128 x 128 again at 513-768 on down / o_b (3 rounds either way, the smaller tile faster);
# split-K 2 where tiles x 2 stays within about two rounds (q_a+kv 257-1024: 30-48 vs 39-78 us before;
# gate+up 513-768: 138 vs 149); raster / depth only where they won at every measured M of the bucket
# (o_b, q_b; elsewhere within +-3% either way).
DENSE_SHAPES: dict[tuple[int, int], tuple] = {  # (n, k) -> table
    # shared-expert down (session 10: 129-256 Q64P; session 11: 1-64 S64P, 65-128 H64P; see H64P)
    # (session 16: 1-64 S64P epi 3, 11.6-11.7 vs 12.0 us; 257-512 T256E 33.4 vs 34.9 at 384 / 512; 769+ T256E)
    # (session 17: 17-32 T32E, 129-256 Q64P pdl)
    (7168, 3072): ((32, _t(**T32E, lean=1)), (48, _t(**S64P, epi=3)), (64, S64P8), (128, H64PL), (256, _t(**Q64P, pdl=True)), (512, T256E),
                   (768, _t(128, 256, 6, stream=1, sm_count=SK126)), (None, T256E)),
    # o_b (session 10: 129-256 Q64P; session 11: 1-64 S64P, 65-128 H64P; see H64P)
    # (session 16: 1-64 S64P epi 3, 8.4 vs 8.6-8.7 us; T256E from 257 on: 23.7 vs 24.7-25.1 at 384 / 512, 43.4-43.7 vs
    # 46.5-47.2 for 128 x 128 r4 d3 at 640 / 768, and above)
    # (session 17: 17-32 T32E, 129-256 Q64P pdl)
    (7168, 2048): ((32, _t(**{**T32E, "stages": 8})), (48, _t(**S64P, epi=3)), (64, S64P8), (128, H64PL), (256, _t(**Q64P, pdl=True)), (None, T256E)),
    # shared gate + up
    # (session 9: 201-256 Q64, 40.3 / 40.3 us at M = 256 vs 48.6 / 46.9 for 128 x 256 split 2 and 46.0 for
    # quack; 769-1024 Q64P, 116.6 / 116.7 at 1024 vs stream-K 131.4 / 140.0 (quack 115.9). Session 10:
    # 129-256 Q64P, 37.7-40.4 us at M = 136..256 vs 44.5-45.8 for 128 x 256 split 2 pdl)
    # (session 13, sk64 sweep: 65-128 64 x 128 stream-K, 29.1 / 28.1 vs 30.0 / 30.0 us cold at M = 96 / 128 for 128 x
    # 128 split 2 pdl, 28.4 / 27.8 vs 29.7 / 29.9 hot; quack serves these M by default (28.4 / 28.2 cold))
    # (session 17, `--gap` and an M scan of 769-1536, cold and hot: 17-32 G32; 769-1024 Q64P epi 3 (5 stages)
    # 129.8-134.5 us cold at M = 769-896 (Q64P 118-145, noisy), 116.9-130.2 at 1000-1024; 1025-1280 T256E 146-163
    # (Q64P epi 3 170-173: 5 token tiles x 96 weight tiles take 4 rounds of 132 SMs, T256E's 240 tiles 2); 1281-1536
    # Q64P epi 3 210-214 (T256E 223-238))
    (6144, 7168): ((32, _t(**G32, lean=1)), (64, _t(128, 64, 12, 2, pdl=True, red=1)),
                   (128, _t(64, 128, 8, wgs=1, peek=1, stream=1)),
                   (256, Q64P), (384, _t(256, 128, 8, stream=1, sm_count=SK126)),
                   (512, _t(128, 256, 6)), (768, _t(128, 256, 6, stream=1)),
                   (1024, _t(**{**Q64P, "epi": 3, "stages": 5})),
                   (1280, T256E), (1536, _t(**{**Q64P, "epi": 3, "stages": 5})), (None, T256E)),
    # q_a + kv: split-K up to M = 1024 (tiles x splits within one or two rounds of 132 SMs), unsplit
    # 128 x 256 above. Session 9: 769-1024 Q64P (39.0 / 39.1 vs 47.3 / 47.8 us for 128 x 256 split 2
    # depth 3; quack 39.2). Session 11 (`ks64`, see H64P): 32 weight tiles of 64 rows x splits = 128
    # CTAs at every M up to 512, cold L2: 64 x 64 split 4 pdl 10.3-10.5 us at M = 17..64 (128 x 64
    # split 8 pdl 10.8-11.0), 64 x 128 split 4 pdl peek 12.4-12.6 at 65..128 (128 x 64 split 4 pdl
    # peek 14.2-14.3), 64 x 256 split 4 lean peek pdl 17.1-17.8 at 129..256 (128 x 128 split 4 pdl
    # 18.4-18.5), split 2 24.6-24.9 at 257..512 (128 x 128 stream-K 28.0 to 384, split 2 pdl peek 30.4
    # to 512). Session 17 (`--m256`, cold x3 / hot x2): red 1 on the split-4 129-256 bucket, 16.5-17.0 vs 17.2-17.6
    # us cold (hot 16.6-17.1 vs 17.4-17.7); 128 x 256 split 8 (16 weight tiles x 8 = 128 CTAs) 20.9-21.8 (red 0:
    # 25.8-26.7).
    # Session 17 (`--low`, cold x3 / hot x2): 64 x 16 split 4 pdl peek at M <= 16, 7.8-8.0 us (w4a16_gemm 9.7-10.3 at
    # 9-16); 64 x 32 split 4 pdl peek at 17-32, 8.2-8.4 vs 10.4-10.7 for the 64 x 64 split 4 served before
    (2048, 7168): ((16, _t(64, 16, 12, 4, pdl=True, wgs=1, lean=1, peek=1)), (32, _t(64, 32, 12, 4, pdl=True, wgs=1, peek=1)),
                   (64, _t(64, 64, 12, 4, pdl=True, wgs=1, lean=1, peek=1)),
                   (128, _t(64, 128, 10, 4, pdl=True, wgs=1, lean=1, peek=1)),
                   (256, _t(64, 256, 6, 4, pdl=True, wgs=1, lean=1, peek=1, red=1)),
                   (512, _t(64, 256, 6, 2, pdl=True, wgs=1, lean=1, peek=1, red=1)),
                   (768, _t(128, 256, 6, depth=3, stream=1)),
                   (1024, _t(**Q64P, epi=2)), (None, T256E)),
    # q_b: 512 weight tiles; 256-row tiles are as fast at M <= 64 and fewer activation reloads;
    # 129-256 128 x 256 raster 4 depth 3 (session 7: 71.1 / 74.8 us at 192 / 256 vs 256 x 128 80.6 / 89.5)
    # (session 16: T256E raster 4 depth 3 on 129-256 and 385+: 69.7 vs 80.4 us at M = 256 (quack 75.2), 151.5 vs
    # 164-166 at 512, 223 vs 247-251 at 768; 2408-2415 vs 2655-2673 at 8192)
    # (session 17, `--low`: 256 x 16 pdl at M <= 16, 25.8-26.0 us vs w4a16_gemm 37.8-41.6 at 9-16; 256 x 32 pdl
    # at 17-32, 27.8-28.2 vs 32.5-33.2 for 256 x 64)
    (65536, 1536): ((16, _t(256, 16, 12, pdl=True, lean=1)), (32, _t(256, 32, 12, pdl=True)), (64, _t(256, 64, 12, pdl=True)),
                    (128, _t(256, 128, 8, pdl=True)),
                    (256, _t(**T256E, raster=4, depth=3)), (384, _t(256, 128, 8, pdl=True)),
                    (None, _t(**T256E, raster=4, depth=3))),
}


# Nvfp4Linear's default path (quack=True, runtime/linear.py): per (n, k), the M ranges (lo, hi]
# above its decode threshold where it serves w4a16_ws_gemm instead of quack's kernel, because ours
# measured at least as fast there on an H200 at both ends of the range (and at least 0.95x at the
# measured M inside it). Up to M = 192: benchmarks/w4a16_ours.py at M = 33, 64, 65, 72, 96, 128,
# 129, 136, 192, 256 (docs/PERFORMANCE.md "session 6, wssmall"); quack is slow at the low end of
# its wide token buckets (tile_n 128 for 65-128, 256 for 129-384: e.g. down 20.6 us at M = 65 vs
# 13.5 at 128, 36.2 at 136 vs 17.5 at 256), where ours is flat. Above 192: the `wstab` sweep at M =
# 193, 256, 384, 385, 512, 768, 769, 1024, 1536, 1537, 2048, 4096, 8192 (docs/PERFORMANCE.md
# "session 6, wstab"). Two kinds of edge there were not measured but argued from tile counts (both
# kernels tile tokens by 128 or 256 (swap-AB), and inside one tiling the time steps with the token
# tiles): M = 257 (a range's lower end: both kernels run the same token tiles at 257 as at 384,
# where ours measured 1.42-1.69x quack) and 513 (an inner edge of ours: the same tiles and rounds
# of 132 SMs as at 768 for both). `plan` declares w4a16_ws_gemm for these layers (Nvfp4Linear.ops).
# hi None: every M above lo; a layer whose one range is (16, None) declares no quack kernel at all.
# Session 16 (epi 3, T256E above; `w4a16_ws_dense_sweep.py manifest --ep2 / --ep3`, H200, cold L2 with each cell
# timed 2-3 times, and hot): ours x quack at M = 769 / 1024 / 1536 / 2048 / 4096 / 8192, cold — q_a+kv 1.69 /
# 0.99 / 1.11 / 0.97 / 1.02 / 1.07 (hot at 1024 / 2048: 1.12 / 1.04), down 1.10 / 1.15 / 1.03 / 1.02 / 0.97 / 1.00
# (hot at 4096: 1.03), o_b 1.09 / 1.04 / 1.02 / 0.99 / 0.94 / 1.02 (hot at 4096: 1.02; the --ep run's cold cell
# 1.05), q_b 1.05 / 0.97 / 1.03 / 1.01 / 1.01 / 1.03 (hot at 1024: 0.99), gate+up at 2048 / 4096 / 8192 1.04 /
# 1.04 / 1.06 (0.88 / 0.90 at 1024 / 1536: quack keeps 769-1536); q_b at 192 / 256 / 512 / 640 / 768: 1.03 / 1.08
# / 0.98 / 1.02 / 1.04. So: q_a+kv and q_b ours at every M, down / o_b from 257 on, gate+up from 1537 on.
# Session 17 (`--gap`, per shape below): ours at every M on all five shapes; quack serves Nvfp4Linear only on a shape
# not listed here (and stays in the benchmarks as the peer).
WS_OVER_QUACK: dict[tuple[int, int], tuple[tuple[int, int | None], ...]] = {
    # Session 7 (`wsmid`, docs/PERFORMANCE.md "session 7, wsmid": the --mid sweep, the final table at
    # M = 16 .. 384 and a crossover run at M = 136 .. 256, H200): quack's 129-384 buckets get faster
    # as M grows inside them (gate+up 74.3 / 52.1 / 36.3 us at M = 129 / 193 / 256) while ours is
    # flat per bucket, so each shape's range ends at the last M of the crossover run where ours was
    # >= 3% faster (200: gate+up 45.0 vs 48.5, down 23.0 vs 25.0, o_b 16.9 vs 17.5 us; q_a+kv 224:
    # 19.3 vs 19.9; q_b 160: 70.1 vs 72.9), quack from the next measured M on (208 / 232 / 176: tie
    # or quack faster).
    # q_a + kv: split-K 8 / 4 with pdl: 17-32 10.5-10.6 us (w4a16_gemm 11.8-14.2, quack 21.5), 1.24-1.32x
    # quack at 33-64, 1.09-1.33x at 65-128, 1.22-1.53x at 129-193; split 2 1.50 / 1.30 / 1.16x at 257
    # / 320 / 384 (session 6: 1.07 / 1.25x at 512 / 768; 0.82x at 1024, quack's 64 x 256 39 us)
    # Session 11 (`ks64`): the 64-row split-K tiles beat quack at 224 / 256 too (17.8 / 17.4 vs 19.9 /
    # 18.9 us cold, 17.7 / 17.4 vs 19.9 / 18.5 hot): ours from 17 to 768
    (2048, 7168): ((16, None),),
    # gate + up: split 2 with pdl 1.02-1.03x quack at 33-64 (quack 1.04-1.05x at 17-32), 1.23-1.37x at
    # 65-72 (0.93x at 128), 128 x 256 split 2 1.57 / 1.18 / 1.08x at 129 / 192 / 200; 128 x 256
    # 1.52-1.71x at 257-384, 1.00 / 0.98x at 385 / 512 (session 6), split 2 raster 4 depth 3 1.06x at
    # 768; quack at 769-1536 (0.79x at 1024) and above (0.96x at 8192). Session 9: 201-256 is ours too
    # (Q64: 40.3 / 40.3 vs quack 46.0 us at M = 256; 201-255 argued: quack runs the same 64 x 256
    # tiling, one token tile, there)
    # Session 17 (`--gap`, cold x3 and hot x2, and a scan of M = 769 .. 1536 in the same way): ours at every M. 17-32
    # G32 1.30-1.34x quack; 73-128 the stream-K 64 x 128 28.1-28.5 us cold / 27.7 hot vs quack 30.5-31.1; 769-1536:
    # quack's 64 x 256 moves 116-277 us with M (769: 232, 896: 189, 1000: 116, 1024: 129-134, 1025: 258, 1280: 150,
    # 1408: 277, 1536: 195 cold; the same hot), ours 117-214 (1.3-2.0x quack at 769-960, 1025-1100 and 1408; 0.92-1.0x
    # at 1000-1024, 1280 and 1536, where quack is at its fastest)
    (6144, 7168): ((16, None),),
    # down, o_b: quack at 17-64 (down 12.3-12.6 vs 10.4-11.9 us, o_b 9.8-10.0 vs 7.7-8.8); 1.08-1.16x
    # at 65-72 (0.74-0.79x at 128), 1.16-1.48x at 129-192, 1.04-1.09x at 200; 257-768 (128 x 256 to
    # 512, 128 x 128 above) 1.81-2.33x at 257-384, session 6 1.00-1.05x at 385-768; quack at
    # 201-256 and 769-1536 (0.86-0.94x at 1024). o_b 1537-8192 is quack's again: raster -8 depth 3
    # lost in two repeats of one run (0.98 / 0.97x at 1537, 0.94 / 0.95x at 4096, 0.91 / 0.97x at 8192)
    # Session 11 (`ks64`, S64P / H64P): ours at 33-200 — down 12.1 / 12.0 vs quack 12.5 / 12.5 us at M =
    # 48 / 64 cold (hot 12.0 / 11.9 vs 11.9 / 11.8), 13.9 / 14.0 / 14.0 vs 20.4 / 16.2 / 14.1 at 65 / 96 /
    # 128 (hot 13.6 vs 13.4 at 128); o_b 8.9 / 8.8 vs 9.2 / 9.2 (hot 8.7 / 8.6 vs 8.9 / 8.8), 10.3 /
    # 10.4 / 10.4 vs 14.2 / 11.8 / 10.3 (hot 10.0 vs 9.8 at 128). 33-47 argued: both kernels run one
    # token tile, flat in M, over 33-64 (quack's 33-64 bucket). quack keeps 17-32 (down 11.0 vs 12.1-12.7,
    # o_b 8.1-8.2 vs 8.9-9.3) and 201-256.
    # Session 17 (`--gap`): ours at every M. 17-32 T32E: down 1.09-1.11x quack cold, 1.00x hot; o_b 1.07-1.23x cold,
    # 1.01-1.03x hot. 201-256 Q64P pdl: down 1.04-1.07x cold (hot 1.08 / 0.99x at 224 / 256), o_b 1.16x cold (hot
    # 1.11 / 1.01x)
    (7168, 3072): ((16, None),),
    (7168, 2048): ((16, None),),
    # q_b (65536 x 1536): 256 x 64 1.12x quack at 17-32, 1.04-1.06x at 33-64; 256 x 128 1.14-1.17x at
    # 65-72, 1.04x at 128; 128 x 256 raster 4 depth 3 1.15 / 1.09 / 1.04x at 129 / 136 / 160 (0.98x
    # at 176, 0.94-0.97x at 192-256); 256 x 128 1.53 / 1.59 / 1.12x at 257 / 320 / 384; 0.92-0.99x above
    (65536, 1536): ((16, None),),
}


# Session 17 (`w4a16_ws_dense_sweep.py manifest --low`, H200, M = 1 .. 32, cold x3 and hot x2, w4a16_gemm in the same
# run): the M up to which Nvfp4Linear serves w4a16_gemm (the mma.sync decode kernel) on a shape where ws serves right
# above it, when that is not runtime/linear.py WS_FROM (16). q_a+kv: 64 x 16 split 4 7.8-8.0 us at M = 9-16 vs
# w4a16_gemm 9.7-10.3 cold (hot 7.8-7.9 vs 8.8-9.3), while at 1-8 w4a16_gemm is as fast or faster (cold 8.3-8.7 vs 7.8,
# hot 7.3-7.6 vs 7.8); q_b: 256 x 16 25.8-26.0 vs 37.8-41.6 at 9-16 (w4a16_gemm's 16-token tile), 22.0-25.2 vs 25.5-25.8
# at 1-8. down / o_b tie at 9-16 (down 10.0-10.2 vs 10.0-10.9 cold, 9.8 vs 9.6-10.6 hot) and gate+up loses there
# (18.8-19.3 vs 15.1-17.3): they keep WS_FROM.
DECODE_UPTO: dict[tuple[int, int], int] = {(2048, 7168): 8, (65536, 1536): 8}


def dense_table(problem: Mapping[str, Any]):
    return DENSE_SHAPES.get((problem["n"], problem["k"]), DENSE)
