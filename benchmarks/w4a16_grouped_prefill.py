"""Grouped prefill (routed-expert L1 / L2 of DeepSeek-V4 EP8: 48 local experts) at t tokens per
expert: quack_w4a16_grouped_gemm (quack's persistent warp-specialized SM90 W4A16 kernel over
the expert groups, groups padded to its tile_n) and our w4a16_grouped_gemm (unpadded groups),
against torch bf16 torch._grouped_mm over the same groups, all in the same run, device time
from CUDA-graph replays. TFLOP/s counts real rows only (2 t E N K); "pk" = fraction of the
dense bf16 peak. Each --quack store's quack_w4a16_grouped_gemm ops (one per tile_n, a problem
parameter) are timed on groups padded to their tile_n, tile_m as their buckets pick (a sweep
passes one store per tile_m).

    python benchmarks/w4a16_grouped_prefill.py --quack artifacts --ours artifacts"""

import argparse

import torch
from common import MOE_SHAPES, bf16_peak, device_name, grouped_bf16, open_stores, ops_of, tflops, time_cuda

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.quack_w4a16.grouped_family import padded_groups

SHAPES = MOE_SHAPES
E = 48


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quack", nargs="+", required=True, help="stores with quack_w4a16_grouped_gemm")
    ap.add_argument("--ours", default=None, help="store with w4a16_grouped_gemm (optional)")
    ap.add_argument("--tokens", type=int, nargs="*", default=[1, 4, 16, 64, 128, 512, 1024])
    a = ap.parse_args()
    dev = torch.device("cuda")
    peak = bf16_peak()
    print(f"device: {device_name()}; torch {torch.__version__}; {E} experts")
    qfam, ofam = get_family("quack_w4a16_grouped_gemm"), get_family("w4a16_grouped_gemm")
    *qstores, ostore = open_stores(*a.quack, a.ours)
    for name, (n, k) in SHAPES.items():
        print(f"\n{name} ({n}x{k}): t tokens/expert | torch bf16 _grouped_mm | ours | quack grouped per tiling")
        w16 = torch.randn((E, n, k), device=dev, dtype=torch.bfloat16).transpose(1, 2)
        tmax = max(a.tokens)
        qbufs = []
        for s in qstores:  # every tile_n (a problem parameter: one op each) of this shape
            for op in sorted(ops_of(s, qfam.name, n=n, k=k, experts=E), key=lambda o: o.spec["problem"]["tile_n"]):
                rows_max = E * -(-tmax // 256) * 256
                p = qfam.parse_params(op.kernel_for(rows_max).record["params"])
                b = qfam.make_inputs(p, rows_max, dev, seed=1)
                qbufs.append((op, p, b))
        for t in a.tokens:
            fl, tb, line = grouped_bf16(t, w16, peak)
            if ostore and t >= 64:  # the store holds the prefill (split="wg") variant only
                op = ostore.op("w4a16_grouped_gemm", n=n, k=k, experts=E, act_order="natural", word_order="nibble")
                rows = t * E
                op_p = ofam.parse_params(op.kernel_for(rows).record["params"])
                b = ofam.make_inputs(op_p, rows, dev, seed=t)
                offs = torch.arange(0, E + 1, dtype=torch.int32) * t
                b["offsets"].copy_(offs)
                b["counts"].fill_(t)
                args = [b[x.name] for x in op.kernel_for(rows).validator.args]
                to = time_cuda(lambda: op(*args, check=False), reps=5)
                line += f" | ours {to * 1e6:7.0f} us ({tb / to:4.2f}x bf16)"
                del b, args
            for op, qp, b in qbufs:
                # groups padded to the op's tile_n (the route pad MoERunner declares with it); qp is
                # this op's params (not the loop's last `p`: that reuse once padded with another op's tile)
                offs, _ = padded_groups([t] * E, qp.tile_n)
                rows = int(offs[-1])
                p = qfam.parse_params(op.kernel_for(rows).record["params"])
                b["offsets"].copy_(offs)
                args = [b["act"][:rows], b["blob"], b["sf"], b["alpha"], b["offsets"], b["out"][:rows]]
                tq = time_cuda(lambda: op(*args, check=False), reps=5)
                line += (f" | q{p.tile_m}x{p.tile_n} {tq * 1e6:7.0f} us ({tflops(fl, tq, peak)}; "
                         f"{tb / tq:4.2f}x bf16)")
            print(line, flush=True)
        del qbufs, w16
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
