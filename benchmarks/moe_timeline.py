"""Where a MoE layer's time goes at decode: each kernel's duration and the gap before it, from
torch.profiler (CUPTI kernel records) over CUDA-graph replays of MoERunner, 48 local experts,
H 7168, I 3072, top-6 (benchmarks/moe_layer.py's setup and routing).

    python3 moe_timeline.py --store S [--tokens 1 16 64] [--reps 20]

Per token count: kernel (launch order), mean duration, mean gap from the previous kernel's end
(negative = overlap, e.g. a programmatic dependent launch), and the replay's span (first start to
last end) against the wall time of one replay. The span's excess over the kernels' sum is what
launch gaps cost; overlap shows as a sum above the span."""

import argparse

import torch
from common import MOE_E as E, MOE_H as H, MOE_I as I, TOPK, device_name, moe_runner, time_cuda
from graph_timeline import capture, print_timeline, profile

from nvfp4_aot.kernels.moe_glue.ref import make_routing
from nvfp4_aot.runtime import open_store


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
        graph = capture(lambda: runner(x, ids, w, out=out, check=False))
        wall = time_cuda(lambda: runner(x, ids, w, out=out, check=False), reps=10)
        print_timeline(f"tokens {m}", wall, *profile(graph, a.reps))


if __name__ == "__main__":
    main()
