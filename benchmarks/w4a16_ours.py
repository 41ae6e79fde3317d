"""Our w4a16 GEMMs (kernels/w4a16) on Hopper against, in the same run: torch bf16 (grouped:
torch._grouped_mm over the same token groups; dense: matmul) and quack's SM90 W4A16 GEMM
(grouped: one quack call per expert inside one CUDA graph). Device time from graph replays;
"of copy" = NVFP4 weight bytes actually read (experts with tokens) / time / copy bandwidth;
TFLOP/s = 2 M N K / time, "pk" = fraction of the device's dense bf16 tensor-core peak.

Grouped problems are laid out as MoERunner lays them out on Hopper: t tokens per expert,
unpadded groups (route pad = 1), act rows = t * E.

Dense: per M, our w4a16_gemm and w4a16_ws_gemm, quack's kernel (scalar alpha; per-row alpha for
the two-scale q_a + kv layer), torch bf16 matmul, what Nvfp4Linear serves at that M by default
(runtime/linear.py: w4a16_gemm up to Nvfp4Linear.decode_upto(N, K), w4a16_ws_gemm on Nvfp4Linear.ws_ranges(N, K),
quack at the other M) and with quack=False (w4a16_gemm up to WS_FROM, w4a16_ws_gemm above), with ratios
to torch and quack.

--ws STORE[:MANIFEST] ...: grouped rows also time each store's w4a16_ws_grouped_gemm (one tiling per
store; the decode tiles tile_n 16 / 32 of session 7 `wgdec`) on the same weights, groups and activations
(natural K order), with % of copy, the ratio to ours and the output difference to ours.
"""

import argparse

import torch
from common import (MOE_SHAPES, TOPK, find_op, bf16_peak, cold_copies, copy_bandwidth, device_name, l2_bytes, tflops, time_cuda,
                    time_cuda_alt)

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.moe_glue import capacity
from nvfp4_aot.runtime import open_store
from nvfp4_aot.runtime.layout import ACT_ORDERS, act_unorder
from nvfp4_aot.runtime.linear import Nvfp4Linear
from nvfp4_aot.runtime.linear import WORD_ORDER as LINEAR_WORD_ORDER
from nvfp4_aot.runtime.moe import DECODE_ORDERS, PAD  # PAD: MoERunner's decode-path group padding on Hopper
from nvfp4_aot.runtime.moe import WORD_ORDER as MOE_WORD_ORDER
from nvfp4_aot.runtime.word_order import WORD_ORDERS
from nvfp4_aot.runtime.scratch import OpScratch

SHAPES = MOE_SHAPES
# name: (N, K, global scales). q_a + kv is one GEMM with two global scales (per-row alpha).
DENSE = {"shared gate+up": (6144, 7168, 1), "shared down": (7168, 3072, 1), "q_a+kv": (2048, 7168, 2),
         "o_b": (7168, 2048, 1), "q_b": (65536, 1536, 1)}
DENSE_MS = (1, 16, 32, 33, 64, 65, 128, 256, 512, 1024, 2048, 4096, 8192)
TOKENS = (1, 4, 16, 64, 128, 512)


def weight_bytes(n: int, k: int) -> int:
    return n * k // 2 + n * k // 16


def ws_tag(p) -> str:
    return (f"ws{p.tile_m}x{p.tile_n}s{p.stages}" + (f"w{p.wgs}" if p.wgs != 2 else "") + (f"p{p.pipe}" if p.pipe != 16
            else "") + (f"c{p.ctas}" if p.ctas != 1 else "") + (f"r{p.raster}" if p.raster != 1 else "")
            + (f"d{p.depth}" if p.depth != 2 else "") + ("" if p.epi else "e0"))


def ws_decode(ws_stores, n: int, k: int, e: int, rows: int, b, order: str, t: int, ours_out, floor, tours) -> str:
    """--ws: each store's w4a16_ws_grouped_gemm (the decode tiles, session 7 `wgdec`) on the same
    prepared weights, groups and activations as ours (act back in natural K order: w4a16_ws reads
    natural K); prints time, % of copy, ours / ws, and the largest difference to ours' output
    relative to its largest magnitude (different accumulation order: not bitwise, ~1e-2 at most)."""
    line = ""
    wfam = get_family("w4a16_ws_grouped_gemm")
    act = act_unorder(b["act"], order)
    for ws_store in ws_stores:
        try:
            wop = find_op(ws_store, "w4a16_ws_grouped_gemm", n=n, k=k, experts=e)
        except SystemExit:  # a store without this shape (or with several word orders of it)
            continue
        kern = wop.kernel_for(rows)
        out = torch.full_like(ours_out, float("nan"))
        args = {"act": act, "blob": b["blob"], "sf": b["sf"], "alpha": b["alpha"], "offsets": b["offsets"],
                "counts": b["counts"], "out": out}
        wargs = [args[a.name] for a in kern.validator.args]
        wop(*wargs)
        live = ours_out[: t * e].float()
        diff = ((out[: t * e].float() - live).abs().max() / live.abs().max().clamp_min(1e-30)).item()
        tw = time_cuda(lambda: wop(*wargs, check=False), reps=10)
        line += (f" | {ws_tag(wfam.parse_params(kern.record['params']))} {tw * 1e6:5.0f} us ({floor / tw:5.1%} of copy, "
                 f"{tours / tw:4.2f}x ours, diff {diff:.1e})")
    return line


def grouped(store, bw, peak, e: int, dev, tokens, act_order: str, ws_stores=(), word_order: str = MOE_WORD_ORDER) -> None:
    """act_order / word_order: DECODE_ORDERS[word_order] is what MoERunner's decode path runs with word_order
    (make_inputs permutes act and the blob to them).
    ws_stores: stores with w4a16_ws_grouped_gemm decode tilings, timed on the same data (ws_decode)."""
    fam = get_family("w4a16_grouped_gemm")
    qfam = get_family("quack_w4a16_gemm")
    print(f"\ngrouped, {e} experts, act_order {act_order}, word_order {word_order}: tokens/expert, ours | quack per expert | torch bf16 _grouped_mm")
    for name, (n, k) in SHAPES.items():
        op = store.op("w4a16_grouped_gemm", n=n, k=k, experts=e, act_order=act_order, word_order=word_order)
        qop = store.op("quack_w4a16_gemm", n=n, k=k)
        floor = e * weight_bytes(n, k) / bw
        print(f"{name} ({n}x{k}): NVFP4 weights {e * weight_bytes(n, k) / 1e6:.0f} MB, floor {floor * 1e6:.0f} us")
        w16 = torch.randn((e, n, k), device=dev, dtype=torch.bfloat16).transpose(1, 2)
        # distinct weights per expert (one shared set would sit in L2 and flatter quack)
        qp1 = qfam.parse_params(qop.kernel_for(1).record["params"])
        qws = [qfam.make_inputs(qp1, 1, dev, seed=100 + i) for i in range(e)]
        for t in tokens:
            m_tok = -(-t * e // TOPK)  # enough tokens for t slots on each of e experts (t * e not a multiple of top-k: E = 32)
            rows = capacity(m_tok, TOPK, e, PAD)
            p = fam.parse_params(op.kernel_for(rows).record["params"])
            b = fam.make_inputs(p, rows, dev, seed=t)
            sizes = torch.full((e,), -(-t // PAD) * PAD, dtype=torch.int32)
            offs = torch.zeros(e + 1, dtype=torch.int32)
            offs[1:] = torch.cumsum(sizes, 0)
            b["offsets"].copy_(offs)
            b["counts"].fill_(t)
            args = [b[a.name] for a in op.kernel_for(rows).validator.args]
            reps = 10 if t <= 128 else 4
            tours = time_cuda(lambda: op(*args, check=False), reps=reps)
            # quack: one dense call per expert on its t rows
            qk = qop.kernel_for(t)
            acts = [b["act"][int(offs[i]) : int(offs[i]) + t] for i in range(e)]
            outs = [torch.empty((t, n), device=dev, dtype=torch.bfloat16) for _ in range(e)]
            scratch = OpScratch(qop, t, dev)(t)  # split-K buckets: one flag buffer, calls in sequence

            def per_expert():
                for i in range(e):
                    qk(acts[i], qws[i]["blob"], qws[i]["sf"], qws[i]["alpha"], outs[i], *scratch, check=False)

            tq = time_cuda(per_expert, reps=min(reps, 5))
            a_cat = torch.cat(acts)
            goffs = (torch.arange(1, e + 1, device=dev, dtype=torch.int32) * t)
            tb = time_cuda(lambda: torch._grouped_mm(a_cat, w16, offs=goffs), reps=min(reps, 5))
            fl = 2.0 * t * e * n * k
            wsl = ""
            if ws_stores:
                op(*args)  # ours' output for the cross-check
                wsl = ws_decode(ws_stores, n, k, e, rows, b, act_order, t, b["out"], floor, tours)
            print(f"  t={t:>4} rows={rows:>6}: ours {tours * 1e6:7.0f} us ({floor / tours:5.1%} of copy, "
                  f"{tflops(fl, tours, peak)}) | quack {tq * 1e6:7.0f} us ({tq / tours:4.2f}x ours) | "
                  f"bf16 {tb * 1e6:7.0f} us ({tflops(fl, tb, peak)}; {tb / tours:4.2f}x ours){wsl}", flush=True)


def _op(store, fam, **problem):
    try:
        return store.op(fam, **problem)
    except Exception:  # noqa: BLE001 (a store without it: Nvfp4Linear then serves w4a16_gemm at every M)
        return None


def dense(store, bw, peak, dev, ms, shapes=None, cold: bool = False, word_order: str = LINEAR_WORD_ORDER) -> None:
    """Per M: our w4a16_gemm (decode) and w4a16_ws_gemm, quack's (scalar alpha; per-row for the
    two-scale q_a + kv), torch bf16 matmul, and what Nvfp4Linear serves by default (its own choice,
    Nvfp4Linear.family_for, for a store holding every declared op) with its ratio to torch, and our
    own path (`quack=False`: w4a16_gemm up to decode_upto, ws above) with its ratios to torch and
    to quack. Every kernel reads the
    same prepared weights (one layout). A row's kernels are timed in alternation (common.time_cuda_alt),
    so that the ratios compare one clock state: a power-capped M = 8192 cell lowers the SM clock for the cells
    after it.

    cold: every kernel's weights (ours: packed NVFP4 + scales; torch: bf16) are rotated over
    common.cold_copies copies, so each call reads them from DRAM, as in a model's forward, where
    the other layers' weights evict a layer's from L2 between two of its calls. Without it, the same
    weights serve every call: a bf16 weight under the L2's size (down, o_b, q_a + kv) then streams
    from L2, which no served layer does."""
    fam = get_family("w4a16_gemm")
    if cold:
        print(f"\ndense, COLD L2 (weights rotated over copies: >= 2 x the {l2_bytes() >> 20} MiB L2 between two "
              "uses of one copy; activations and outputs shared)", end="")
    print("\ndense: M | ours w4a16_gemm | ours w4a16_ws_gemm | quack | torch bf16 matmul | Nvfp4Linear's default "
          "(w4a16_gemm up to WS_FROM, ws on ws_ranges(N, K), quack at the other M) | ours only (quack=False: w4a16_gemm up "
          "to WS_FROM, ws above)")
    for name, (n, k, scales) in DENSE.items():
        if shapes and not any(name.endswith(s) for s in shapes):
            continue
        op = store.op("w4a16_gemm", n=n, k=k, act_order="natural", word_order=word_order)
        wop = _op(store, "w4a16_ws_gemm", n=n, k=k, word_order=word_order)
        qname = "quack_w4a16_gemm" if scales == 1 else "quack_w4a16_rowalpha_gemm"
        qop = _op(store, qname, n=n, k=k)
        upto = Nvfp4Linear.decode_upto(n, k, word_order) if wop is not None else 1 << 62
        w16 = torch.randn((n, k), device=dev, dtype=torch.bfloat16)
        p = fam.parse_params(op.kernel_for(1).record["params"])
        mmax = max(m for m in ms if m <= op.max_m)
        b = fam.make_inputs(p, mmax, dev, seed=n + k)  # one weight copy for every kernel
        qscratch = OpScratch(qop, mmax, dev) if qop is not None else None
        wscratch = OpScratch(wop, mmax, dev) if wop is not None else None  # ws split-K buckets
        qalpha = b["alpha"] if scales > 1 else b["alpha"][:1].contiguous()
        ranges = Nvfp4Linear.ws_ranges(n, k)
        # weight copies: index 0 is the prepared weights themselves; the others are clones (cold)
        nq = cold_copies(weight_bytes(n, k)) if cold else 1
        w4s = [(b["blob"], b["sf"])] + [(b["blob"].clone(), b["sf"].clone()) for _ in range(nq - 1)]
        w16s = [w16] + [w16.clone() for _ in range(cold_copies(2 * n * k) - 1 if cold else 0)]

        print(f"{name} ({n}x{k}, {scales} global scale{'s' if scales > 1 else ''}): floor "
              f"{weight_bytes(n, k) / bw * 1e6:.1f} us; ws: {'yes' if wop else 'not in store'}, w4a16_gemm up to M = "
              f"{upto if wop else 'all'}; quack: {qname if qop else 'not in store'}; default: ws at M in {' '.join(f'({a}, {b}]' for a, b in ranges) or 'none'}")
        for m in ms:
            if m > mmax:
                continue
            a_m, o_m = b["act"][:m], b["out"][:m]
            # every kernel of the row timed in alternation (common.time_cuda_alt): one clock state for all
            runs = {"bf16": [lambda w=w: torch.matmul(a_m, w.T) for w in w16s]}
            if m <= max(upto, 256):
                runs["w4a16"] = [lambda w=w: op(a_m, *w, b["alpha"], o_m, check=False) for w in w4s]
            if wop is not None and m > upto:
                runs["ws"] = [lambda w=w: wop(a_m, *w, b["alpha"], o_m, *wscratch(m), check=False) for w in w4s]
            if qop is not None and m <= qop.max_m:
                runs["quack"] = [lambda w=w: qop(a_m, *w, qalpha, o_m, *qscratch(m), check=False) for w in w4s]
            got = dict(zip(runs, time_cuda_alt(list(runs.values()), reps=10 if m <= 1024 else 5)))
            to, tw, tq, tb = got.get("w4a16"), got.get("ws"), got.get("quack"), got["bf16"]
            timed = {"w4a16_gemm": ("w4a16", to), "w4a16_ws_gemm": ("ws   ", tw)}
            oname, served = timed[Nvfp4Linear.family_for(n, k, m, one_scale=scales == 1, quack=False,
                                                          word_order=word_order)]  # ours only
            dname, dflt = timed.get(Nvfp4Linear.family_for(n, k, m, one_scale=scales == 1, word_order=word_order), ("quack", tq))
            fl = 2.0 * m * n * k

            def us(t):
                return f"{t * 1e6:7.1f} us" if t is not None else "      -   "

            vq = f", {tq / served:4.2f}x quack" if tq is not None else ""
            dq = f", {tq / dflt:4.2f}x quack" if tq is not None else ""
            print(f"  M={m:>5}: w4a16 {us(to)} | ws {us(tw)} | quack {us(tq)} | bf16 {us(tb)} | default {dname} "
                  f"{us(dflt)}, {tflops(fl, dflt, peak)}, {tb / dflt:4.2f}x torch{dq} | ours "
                  f"{oname} {us(served)}, {tb / served:4.2f}x torch{vq}")
        del b, w16, w4s, w16s
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="artifacts")
    ap.add_argument("--manifest", default=None, help="open only this manifest of the store (default: all)")
    ap.add_argument("--experts", type=int, nargs="*", default=[48])
    ap.add_argument("--tokens", type=int, nargs="*", default=list(TOKENS), help="grouped: tokens per expert")
    ap.add_argument("--m", type=int, nargs="*", default=list(DENSE_MS), help="dense: rows")
    ap.add_argument("--skip-dense", action="store_true")
    ap.add_argument("--shapes", nargs="*", help="dense: only these (e.g. o_b q_b down gate+up q_a+kv)")
    ap.add_argument("--skip-grouped", action="store_true")
    ap.add_argument("--cold", action="store_true", help="dense: rotate every kernel's weights over copies (cold L2)")
    ap.add_argument("--word-order", default=None, choices=list(WORD_ORDERS),
                    help="the blob word order of our ops to time (runtime/word_order.py; the store must hold them) "
                         f"[default: each runner's: grouped {MOE_WORD_ORDER}, dense {LINEAR_WORD_ORDER}]")
    ap.add_argument("--act-order", nargs="*", default=None, choices=list(ACT_ORDERS),
                    help="grouped: activation K order(s) to time (default: what MoERunner's decode path runs with "
                         f"--word-order, {DECODE_ORDERS})")
    ap.add_argument("--ws", nargs="*", default=[], metavar="STORE[:MANIFEST]",
                    help="grouped: also time these stores' w4a16_ws_grouped_gemm (decode tiles) on the same data")
    a = ap.parse_args()
    store = open_store(a.store, manifest=a.manifest)
    store.prime()
    dev = torch.device("cuda")
    bw = copy_bandwidth()
    peak = bf16_peak()
    print(f"device: {device_name()}; copy {bw / 1e12:.2f} TB/s; dense bf16 peak "
          f"{f'{peak / 1e12:.0f} TFLOP/s' if peak else 'unknown for this part'}; torch {torch.__version__}")
    ws_stores = []
    for spec in a.ws:
        root, _, man = spec.partition(":")
        ws_stores.append(open_store(root, manifest=man or None))
        ws_stores[-1].prime()
    if not a.skip_grouped:
        wo = a.word_order or MOE_WORD_ORDER
        for e in a.experts:
            for order in a.act_order or [DECODE_ORDERS[wo]]:
                grouped(store, bw, peak, e, dev, a.tokens, order, ws_stores, wo)
    if not a.skip_dense:
        dense(store, bw, peak, dev, a.m, a.shapes, a.cold, a.word_order or LINEAR_WORD_ORDER)


if __name__ == "__main__":
    main()
