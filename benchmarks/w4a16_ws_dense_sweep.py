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
  w4a16_ws_dense_sweep.py manifest --lg > sweep.toml     # lg_candidates(): lean / peek / pdl on the served large-M
                                                          # tilings of down / o_b / q_b, at LG_MS (BASE_MANIFEST=sweep;
                                                          # staged by session 14, not run)
  w4a16_ws_dense_sweep.py manifest --skt > sweep.toml    # skt_candidates(): split-K buckets with probes 3 / 4
                                                          # (reduction cost) and red 1, at SKT_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --r64 > sweep.toml    # r64_candidates(): down / o_b at M <= 128 split 2 with red 1
  w4a16_ws_dense_sweep.py manifest --ep > sweep.toml     # ep_candidates(): the large-M tilings with probe 5 (no
                                                          # epilogue), epi 2 and epi 3, at EP_MS (BASE_MANIFEST=sweep)
  w4a16_ws_dense_sweep.py manifest --ep2 > sweep.toml    # ep2_candidates(): --ep's winners over quack's buckets
  w4a16_ws_dense_sweep.py manifest --ep3 > sweep.toml    # ep3_candidates(): epi 3 / 2 twins of the tilings at EP3_MS
  w4a16_ws_dense_sweep.py manifest --gap > sweep.toml    # gap_candidates(): the M ranges quack still serves, at GAP_MS
  w4a16_ws_dense_sweep.py manifest --m256 > sweep.toml   # m256_candidates(): 128 x 256 split-K at M = 129..256
  w4a16_ws_dense_sweep.py manifest --low > sweep.toml    # low_candidates(): 16 / 32-token tiles at M <= 16, with
                                                          # w4a16_gemm's ops in the same manifest (its baseline row)
  w4a16_ws_dense_sweep.py manifest --p64 > sweep.toml    # p64_candidates(): q_a+kv / down / o_b at M = 33..64
  w4a16_ws_dense_sweep.py manifest --lp > sweep.toml     # lp_candidates(): lean / 8-stage twins of the served small
                                                          # token tiles at M = 9..128
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

from w4a16_ws_dense_candidates import (SHAPES, CANDIDATES, SPLIT_CANDIDATES, SMALL_CANDIDATES, BIG_CANDIDATES,
                                        MID_CANDIDATES, TAIL_CANDIDATES, lean_candidates, stream_candidates,
                                        wg1_candidates, q64_candidates, fit_candidates, ksplit_candidates,
                                        ks2_candidates, ks3_candidates, mc_candidates, sk64_candidates,
                                        skn_candidates, skp_candidates, skq_candidates, skr_candidates, lg_candidates, skt_candidates,
                                        r64_candidates, ep_candidates, EP_MS, ep2_candidates, EP2_MS, ep3_candidates,
                                        EP3_MS, gap_candidates, GAP_MS, m256_candidates, M256_MS, low_candidates,
                                        LOW_MS, p64_candidates, P64_MS, lp_candidates, LP_MS,
                                        WG1_MS,
                                        Q64_MS, FIT_MS, KS_MS, KS3_MS, MC_MS, SK64_MS, SKN_MS, SKP_MS, SKR_MS,
                                        KS2_MS, LG_MS, SKT_MS, R64_MS)

from nvfp4_aot.build.manifest import toml_value


QUACK_DENSE = ("quack_w4a16_gemm", "quack_w4a16_rowalpha_gemm")


def default_ops(families=QUACK_DENSE, ms=(128, 1024)) -> list[str]:
    """manifests/default.toml's ops of `families` for the sweep's shapes (an op whose n / k lists meet one), only
    the buckets meeting [ms], the first one starting at M = 1: a served sweep's baselines (quack's kernels; --low:
    w4a16_gemm) without compiling all of default.toml (run with BASE_MANIFEST = the sweep's manifest)."""
    import tomllib

    from nvfp4_aot.build.manifest import default_manifest_path

    shapes = {(n, k) for n, k, _ in SHAPES.values()}
    out = []
    for op in tomllib.loads(default_manifest_path().read_text())["op"]:
        ns, ks = ([v] if isinstance(v, int) else v for v in (op["problem"].get("n"), op["problem"].get("k")))
        if op["family"] not in families or not any((n, k) in shapes for n in ns for k in ks):
            continue
        keep = [b for b in op["buckets"] if b["m"][0] <= ms[1] and b["m"][1] >= ms[0]]
        rows = [f"  {{ m = [{1 if i == 0 else b['m'][0]}, {b['m'][1]}], tuning = {{ "  # buckets start at M = 1
                + ", ".join(f"{a} = {toml_value(v)}" for a, v in b["tuning"].items()) + " } },"
                for i, b in enumerate(keep)]
        prob = ", ".join(f"{a} = {toml_value(v)}" for a, v in op["problem"].items())
        out += ["", "[[op]]", f'family = "{op["family"]}"', f"problem = {{ {prob} }}", "buckets = [", *rows, "]"]
    return out


MS = (33, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
PROF = os.environ.get("SWEEP_PROF") == "1"  # profile each ws cell once (ncu --profile-from-start off) instead of timing
TAGS = [t for t in os.environ.get("SWEEP_TAGS", "").split(";") if t]  # only these ws cells (printed tags); all if empty
# checked against the float64 reference: those of the run's M
CHECK_MS = (17, 33, 64, 96, 128, 136, 192, 193, 200, 255, 256, 300, 320, 384, 640, 768, 1000, 1024, 1537)
OURS_MS = (16, 32, 33, 64)  # w4a16_gemm (Nvfp4Linear's decode kernel) timed here too, and every M <= 64 of the run


# The sweeps that time candidates next to the served tilings at their own M, on every shape but the floor and
# q_b, with quack's buckets over those M as the baseline: mode -> (candidates(shape), M).
SERVED_SWEEPS = {"fit": (fit_candidates, FIT_MS), "ksplit": (ksplit_candidates, KS_MS),
                 "ks2": (ks2_candidates, KS2_MS), "ks3": (ks3_candidates, KS3_MS), "mc": (mc_candidates, MC_MS),
                 "sk64": (sk64_candidates, SK64_MS), "skn": (skn_candidates, SKN_MS),
                 "skp": (skp_candidates, SKP_MS), "skq": (skq_candidates, SKP_MS),
                 "skr": (skr_candidates, SKR_MS), "lg": (lg_candidates, LG_MS),
                 "skt": (skt_candidates, SKT_MS), "r64": (r64_candidates, R64_MS),
                 "ep": (ep_candidates, EP_MS), "ep2": (ep2_candidates, EP2_MS),
                 "ep3": (ep3_candidates, EP3_MS), "gap": (gap_candidates, GAP_MS),
                 "m256": (m256_candidates, M256_MS), "low": (low_candidates, LOW_MS),
                 "p64": (p64_candidates, P64_MS), "lp": (lp_candidates, LP_MS)}
# modes whose candidates include q_b (the others leave it out: its 512 weight tiles never starve the grid)
WITH_Q_B = {"lg", "ep", "ep2", "ep3", "low", "lp"}
# modes whose manifest also carries w4a16_gemm's default ops (the decode kernel's baseline row at M <= 64)
WITH_DECODE = {"low", "lp"}


# the flag modes (`manifest --NAME`: manifest()'s keyword arguments); the others are SERVED_SWEEPS' keys
FLAG_MODES = ("split", "small", "big", "mid", "tail", "lean", "stream", "wg1", "q64")


def manifest(split: bool = False, small: bool = False, big: bool = False, mid: bool = False, tail: bool = False,
             lean: bool = False, stream: bool = False, wg1: bool = False, q64: bool = False, mode: str = "") -> str:
    """The sweep manifest of one mode: a flag, or `mode`, a key of SERVED_SWEEPS."""
    out = ['archs = ["sm_90a"]']
    for shape, (n, k, _) in SHAPES.items():
        if mode:
            cands = (SERVED_SWEEPS[mode][0](shape) if shape != "floor" and (shape != "q_b" or mode in WITH_Q_B)
                     else [])
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
        rows = [f"  {{ m = [{i + 1}, {i + 1}], tuning = {{ " + ", ".join(f"{a} = {toml_value(v)}" for a, v in c.items())
                + " } },"
                for i, c in enumerate(cands)]
        out += ["", f"# {shape}", "[[op]]", 'family = "w4a16_ws_gemm"', f"problem = {{ n = {n}, k = {k} }}",
                "buckets = [", *rows, "]"]
    if mode:
        ms = SERVED_SWEEPS[mode][1]
        out += default_ops(QUACK_DENSE + (("w4a16_gemm",) if mode in WITH_DECODE else ()), (ms[0], ms[-1]))
    elif stream or wg1 or q64:
        out += default_ops(ms=(Q64_MS[0], Q64_MS[-1]) if q64 else WG1_MS if wg1 else (128, 1024))
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
            kerns = store.op(fam.name, n=n, k=k, word_order="nibble").kernels()
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
            oop = base.op("w4a16_gemm", n=n, k=k, act_order="natural", word_order="nibble")
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
                   + (f" c{p.ctas}" if p.ctas != 1 else "") + (f" e{p.epi}" if p.epi != 1 else "")
                   + (" pdl" if p.pdl else "") + (" L" if p.lean else "") + (f" P{p.probe}" if p.probe else "")
                   + (" SK" if p.stream else "") + (" pk" if p.peek else "") + (" mc2" if p.mc == 2 else "")
                   + (f" R{p.red}" if p.red else "") + (f"@{p.sm_count}" if p.sm_count != 132 else ""))
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

    sweep_cli(__doc__, lambda: manifest(**{f: f"--{f}" in sys.argv for f in FLAG_MODES},
                                        mode=next((m for m in SERVED_SWEEPS if f"--{m}" in sys.argv), "")), run, MS)
