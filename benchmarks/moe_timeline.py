"""Where a MoE layer's time goes at decode: each kernel's duration and the gap before it, from
torch.profiler (CUPTI kernel records) over CUDA-graph replays of MoERunner, 48 local experts,
H 7168, I 3072, top-6 (benchmarks/moe_layer.py's setup and routing).

    python3 moe_timeline.py --store S [--tokens 1 16 64] [--reps 20]

Per token count: kernel (launch order), mean duration, mean gap from the previous kernel's end
(negative = overlap, e.g. a programmatic dependent launch), and the replay's span (first start to
last end) against the wall time of one replay. The span's excess over the kernels' sum is what
launch gaps cost; overlap shows as a sum above the span."""

import argparse

from common import MOE_E as E, MOE_H as H, MOE_I as I, TOPK, device_name, moe_runner, time_cuda
from graph_timeline import layer_timelines

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
    runner = moe_runner(store, max(a.tokens))
    print(f"device: {device_name()}; MoE layer timeline, {E} local experts, H {H}, I {I}, top-{TOPK}")
    layer_timelines(runner, a.tokens, hidden=H, top_k=TOPK, experts=E, make_routing=make_routing,
                    time_cuda=time_cuda, reps=a.reps)


if __name__ == "__main__":
    main()
