"""cfea70a's MoERunner per kernel at decode, on the card of the call (its benchmarks have no moe_timeline.py): the
runner built as cfea70a's own moe_layer.py builds it (imported from its directory: weights, routing, E / H / I / TOPK),
captured and profiled by benchmarks/graph_timeline.py as benchmarks/moe_timeline.py does (each kernel's mean duration
and the gap before it). Run from .gpu-base/bench with PYTHONPATH=/tmp/basesite (scripts/base_env.sh's install):

    python3 base_timeline.py --store /tmp/basestore [--tokens 4 16]"""

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.getcwd())  # cfea70a's benchmark directory: its moe_layer and common come first
sys.path.append(str(Path(__file__).resolve().parents[3] / "benchmarks"))  # ours, for graph_timeline only
import moe_layer as ml  # noqa: E402
from graph_timeline import layer_timelines  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--tokens", type=int, nargs="*", default=[4, 16])
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    E, H, I, TOPK = ml.E, ml.H, ml.I, ml.TOPK
    store = ml.open_store(a.store)
    store.prime()
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    q13, s13, q2, s2 = [], [], [], []
    for _ in range(E):
        q, s = ml.random_nvfp4_weights(2 * I, H, g, dev)
        q13.append(q), s13.append(s)
        q, s = ml.random_nvfp4_weights(H, I, g, dev)
        q2.append(q), s2.append(s)
    runner = ml.MoERunner(store, w13=torch.stack(q13), w13_scale=torch.stack(s13).view(torch.float8_e4m3fn),
                          w13_scale_2=torch.full((E,), 1e-4, device=dev), w2=torch.stack(q2),
                          w2_scale=torch.stack(s2).view(torch.float8_e4m3fn),
                          w2_scale_2=torch.full((E,), 1e-4, device=dev), expert_start=0, top_k=TOPK,
                          max_tokens=max(a.tokens))
    print(f"device: {ml.device_name()}; cfea70a MoE layer timeline, {E} local experts, H {H}, I {I}, top-{TOPK}")
    layer_timelines(runner, a.tokens, hidden=H, top_k=TOPK, experts=E, make_routing=ml.make_routing,
                    time_cuda=ml.time_cuda, reps=a.reps)


if __name__ == "__main__":
    main()
