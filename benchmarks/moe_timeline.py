"""Where a MoE layer's time goes at decode: each kernel's duration and the gap before it, from
torch.profiler (CUPTI kernel records) over CUDA-graph replays of MoERunner, 48 local experts,
H 7168, I 3072, top-6 (benchmarks/moe_layer.py's setup and routing).

    python3 moe_timeline.py --store S [--tokens 1 16 64] [--reps 20]

Per token count: kernel (launch order), mean duration, mean gap from the previous kernel's end
(negative = overlap, e.g. a programmatic dependent launch), and the replay's span (first start to
last end) against the wall time of one replay. The span's excess over the kernels' sum is what
launch gaps cost; overlap shows as a sum above the span."""

import argparse
from collections import defaultdict

import torch
from common import MOE_E as E, MOE_H as H, MOE_I as I, TOPK, device_name, moe_runner, time_cuda

from nvfp4_aot.kernels.moe_glue.ref import make_routing
from nvfp4_aot.runtime import open_store


def replays(graph: torch.cuda.CUDAGraph, reps: int) -> list[list[tuple[str, float, float]]]:
    """(name, start us, end us) of every kernel of each replay, in start order."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            graph.replay()
            torch.cuda.synchronize()
    ks = sorted(((e.name, e.time_range.start, e.time_range.end) for e in prof.events()
                 if e.device_type == torch.autograd.DeviceType.CUDA and "memcpy" not in e.name.lower()
                 and "memset" not in e.name.lower()), key=lambda k: k[1])
    n = len(ks) // reps
    return [ks[i * n:(i + 1) * n] for i in range(reps)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="artifacts")
    ap.add_argument("--tokens", type=int, nargs="*", default=[1, 16, 64])
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    store = open_store(a.store)
    store.prime()
    dev = torch.device("cuda")
    runner = moe_runner(store, max(a.tokens))
    print(f"device: {device_name()}; MoE layer timeline, {E} local experts, H {H}, I {I}, top-{TOPK}")
    for m in a.tokens:
        ids, start = make_routing(m, TOPK, E, seed=m, mode="local")
        ids = (ids - start).to(dev)
        x = torch.randn((m, H), device=dev).to(torch.bfloat16)
        w = torch.rand((m, TOPK), device=dev)
        out = torch.empty((m, H), dtype=torch.bfloat16, device=dev)
        runner(x, ids, w, out=out, check=False)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            runner(x, ids, w, out=out, check=False)
        graph.replay()
        wall = time_cuda(lambda: runner(x, ids, w, out=out, check=False), reps=10)
        reps = replays(graph, a.reps)
        dur, gap = defaultdict(float), defaultdict(float)
        names = [k[0] for k in reps[0]]
        span = 0.0
        for r in reps:
            span += (r[-1][2] - r[0][1]) / len(reps)
            for i, (name, s, e) in enumerate(r):
                dur[i] += (e - s) / len(reps)
                if i:
                    gap[i] += (s - r[i - 1][2]) / len(reps)
        print(f"\ntokens {m}: replay wall {wall * 1e6:.1f} us, kernel span {span:.1f} us, kernels' sum "
              f"{sum(dur.values()):.1f} us")
        print(f"  {'kernel':<60} {'us':>8} {'gap before':>11}")
        for i, name in enumerate(names):
            print(f"  {name[:60]:<60} {dur[i]:>8.1f} {gap[i] if i else 0.0:>11.1f}")


if __name__ == "__main__":
    main()
