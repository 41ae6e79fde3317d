"""Grouped prefill on our warp-specialized W4A16 kernel (w4a16_ws_grouped_gemm): routed-expert L1 /
L2 of DeepSeek-V4 EP8 (48 local experts) at t tokens per expert, unpadded groups, against torch
bf16 torch._grouped_mm over the same groups and (optional) quack_w4a16_grouped_gemm (groups padded
to its tile_n), all in the same run; device time from CUDA-graph replays. TFLOP/s counts real
rows only (2 t E N K); "pk" = fraction of the dense bf16 peak. One --ours store per tiling
(each with one w4a16_ws_grouped_gemm op per shape). Every tiling's output is compared bit for bit
with the first store's (the knobs epi / depth change neither the accumulation order nor the
rounding, so those must match exactly).

--dense STORE [STORE ...]: w4a16_ws_gemm on the five dense DeepSeek-V4 shapes at --m rows against
torch bf16 matmul, one store per tiling (one unsplit op per shape), same bitwise cross-check.

    python benchmarks/w4a16_ws.py --ours STORE[:MANIFEST] [...] [--quack STORE[:MANIFEST]]
    python benchmarks/w4a16_ws.py --dense STORE[:MANIFEST] [...] [--m 1024 4096 8192]"""

import argparse

import torch
from common import MOE_SHAPES, bf16_peak, device_name, grouped_bf16, open_stores, ops_of, tflops, time_cuda

from nvfp4_aot.runtime import open_store
from nvfp4_aot.runtime.word_order import word_order

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.quack_w4a16.grouped_family import padded_groups

SHAPES = MOE_SHAPES
DENSE_SHAPES = {"q_a+kv": (2048, 7168), "down": (7168, 3072), "o_b": (7168, 2048), "gate+up": (6144, 7168),
                "q_b": (65536, 1536)}
E = 48


def stores_of(specs: list[str]):
    """STORE or STORE:MANIFEST (one manifest of a store built from several) -> opened, primed stores."""
    out = []
    for spec in specs:
        root, _, man = spec.partition(":")
        out.append(open_store(root, manifest=man) if man else open_stores(root)[0])
        out[-1].prime()
    return out


def tag(p) -> str:
    return (f"ws{p.tile_m}x{p.tile_n}s{p.stages}" + (f"w{p.wgs}" if p.wgs != 2 else "")
            + (f"p{p.pipe}" if p.pipe != 16 else "") + f"e{p.epi}" + (f"d{p.depth}" if p.depth != 2 else "")
            + (f"r{p.raster}" if p.raster != 1 else "") + ("-rot" if p.word_order == "rot" else ""))


def nibble(fam, op, m: int):
    """The params op runs at m rows, in word order "nibble": make_inputs then gives the plain blob,
    which blob_in permutes for each store's tiling."""
    return fam.parse_params({**op.kernel_for(m).record["params"], "word_order": "nibble"})


def blob_in(b, p, cache: dict):
    """b's (nibble-order) blob in the word order tiling p reads (runtime/word_order.py), made once."""
    if p.word_order not in cache:
        cache[p.word_order] = word_order(b["blob"], p.word_order)
    return cache[p.word_order]


def every_op(stores, family: str, **problem) -> list:
    """Every store's ops of the shape, in each word order a store holds (the default store holds both:
    the '=' column then checks rot against nibble bit for bit); none is an error."""
    ops = [o for s in stores for o in ops_of(s, family, **problem)]
    if not ops:
        raise SystemExit(f"no {family} op with {problem} in {[str(s.root) for s in stores]}")
    return ops


def dense(paths: list[str], ms: list[int]) -> None:
    dev = torch.device("cuda")
    peak = bf16_peak()
    print(f"device: {device_name()}; torch {torch.__version__}; w4a16_ws_gemm dense; cells: us (x torch bf16, "
          "TFLOP/s, % of peak); '=' output bitwise equal to the first tiling's")
    fam = get_family("w4a16_ws_gemm")
    stores = stores_of(paths)
    for name, (n, k) in DENSE_SHAPES.items():
        ops = every_op(stores, fam.name, n=n, k=k)
        mmax = max(ms)
        b = fam.make_inputs(nibble(fam, ops[0], mmax), mmax, dev, seed=n + k)
        blobs = {}  # word order -> the same weights' blob in it (a store's tiling may read "rot")
        w16 = torch.randn((n, k), device=dev, dtype=torch.bfloat16)
        print(f"{name} ({n}x{k})")
        for m in ms:
            tb = time_cuda(lambda: torch.matmul(b["act"][:m], w16.T), reps=10)
            line, first = f"  M={m:5}: bf16 {tb * 1e6:7.1f} us", None
            for op in ops:
                p = fam.parse_params(op.kernel_for(m).record["params"])
                out = torch.full((m, n), float("nan"), dtype=torch.bfloat16, device=dev)
                args = [b["act"][:m], blob_in(b, p, blobs), b["sf"], b["alpha"], out]
                op(*args)
                same = "" if first is None else ("=" if torch.equal(out.view(torch.int16), first) else "DIFF")
                first = out.view(torch.int16).clone() if first is None else first
                to = time_cuda(lambda: op(*args, check=False), reps=10)
                line += f" | {tag(p)}{same} {to * 1e6:7.1f} us ({tb / to:4.2f}x, {tflops(2.0 * m * n * k, to, peak)})"
            print(line, flush=True)
        del b, ops, w16
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", nargs="+", default=[], help="stores with w4a16_ws_grouped_gemm")
    ap.add_argument("--dense", nargs="+", default=[], help="stores with w4a16_ws_gemm (one unsplit tiling each)")
    ap.add_argument("--m", type=int, nargs="*", default=[1024, 4096, 8192])
    ap.add_argument("--quack", default=None, help="store with quack_w4a16_grouped_gemm (optional)")
    ap.add_argument("--tokens", type=int, nargs="*", default=[16, 64, 128, 512])
    a = ap.parse_args()
    if a.dense:
        dense(a.dense, a.m)
    if not a.ours:
        return
    dev = torch.device("cuda")
    peak = bf16_peak()
    print(f"device: {device_name()}; torch {torch.__version__}; {E} experts")
    fam, qfam = get_family("w4a16_ws_grouped_gemm"), get_family("quack_w4a16_grouped_gemm")
    stores, qstore = stores_of(a.ours), (stores_of([a.quack])[0] if a.quack else None)
    tmax = max(a.tokens)
    for name, (n, k) in SHAPES.items():
        print(f"\n{name} ({n}x{k}): t tokens/expert | torch bf16 _grouped_mm | ours per tiling | quack grouped")
        w16 = torch.randn((E, n, k), device=dev, dtype=torch.bfloat16).transpose(1, 2)
        ops = every_op(stores, "w4a16_ws_grouped_gemm", n=n, k=k, experts=E)
        # one buffer for every op and t (inputs depend on n, k, experts only)
        b = fam.make_inputs(nibble(fam, ops[0], tmax * E), tmax * E, dev, seed=1)
        blobs = {}
        # one quack op per tile_n (a problem parameter: the groups' padding)
        qops = ops_of(qstore, qfam.name, n=n, k=k, experts=E) if qstore else []
        for t in a.tokens:
            fl, tb, line = grouped_bf16(t, w16, peak)
            rows = t * E
            b["offsets"].copy_(torch.arange(0, E + 1, dtype=torch.int32) * t)
            b["counts"].fill_(t)
            first = None
            for op in ops:
                p = fam.parse_params(op.kernel_for(rows).record["params"])  # the tiling the op runs at these rows
                args = [b["act"][:rows], blob_in(b, p, blobs), b["sf"], b["alpha"], b["offsets"], b["counts"],
                        b["out"][:rows]]
                b["out"][:rows].fill_(float("nan"))
                op(*args)
                got = b["out"][:rows].view(torch.int16)
                same = "" if first is None else ("=" if torch.equal(got, first) else "DIFF")
                first = got.clone() if first is None else first
                to = time_cuda(lambda: op(*args, check=False), reps=5)
                line += (f" | {tag(p)}{same} {to * 1e6:7.0f} us ({tflops(fl, to, peak)}; "
                         f"{tb / to:4.2f}x bf16)")
            for qop in qops:
                qp = qfam.parse_params(qop.kernel_for(1).record["params"])
                offs, _ = padded_groups([t] * E, qp.tile_n)
                qrows = int(offs[-1])
                qp = qfam.parse_params(qop.kernel_for(qrows).record["params"])
                if qrows <= b["act"].shape[0]:
                    qoffs = offs.to(dev)
                    qargs = [b["act"][:qrows], b["blob"], b["sf"], b["alpha"], qoffs, b["out"][:qrows]]
                    tq = time_cuda(lambda: qop(*qargs, check=False), reps=5)
                    line += f" | quack{qp.tile_m}x{qp.tile_n} {tq * 1e6:7.0f} us ({tb / tq:4.2f}x bf16)"
            print(line, flush=True)
        del b, ops, w16
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
