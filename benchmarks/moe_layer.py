"""Whole routed-expert MoE layer on Hopper (DeepSeek-V4 EP8: 48 local experts, H 7168, I 3072,
top-6, every slot routed to this rank's experts): MoERunner (route, permute, grouped W4A16
L1/L2: ours at decode ("ours"), at prefill our warp-specialized w4a16_ws kernel on unpadded
groups ("ws") or quack's grouped kernel on groups padded to its tile_n ("quack/P"), as
runtime/moe.py PREFILL picks; silu_mul, combine) against a torch bf16 pipeline (argsort grouping, two
torch._grouped_mm, silu*up, index_add_ combine) in the same run, both timed as CUDA graphs.
Also the glue kernels' share of the runner's time (route + permute + silu_mul + combine), and
the runner's GEMM FLOP rate (2 x tokens x top-k x 3 H I) against the dense bf16 peak."""

import argparse

import torch
from common import MOE_E as E, MOE_H as H, MOE_I as I, TOPK, bf16_peak, device_name, moe_runner, tflops, time_cuda

from nvfp4_aot.kernels.moe_glue.ref import make_routing
from nvfp4_aot.runtime import open_store
from nvfp4_aot.runtime.layout import capacity
from nvfp4_aot.runtime.word_order import WORD_ORDERS


def torch_moe(x, ids, w, w13, w2, counts, offs):
    """bf16 reference pipeline, graph-capturable (no host sync)."""
    flat = ids.reshape(-1).long()
    order = torch.argsort(flat, stable=True)
    counts.zero_().scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
    torch.cumsum(counts, 0, out=offs)
    xg = x[order // TOPK]
    h1 = torch._grouped_mm(xg, w13, offs=offs)
    a = torch.nn.functional.silu(h1[:, :I]) * h1[:, I:]
    y = torch._grouped_mm(a, w2, offs=offs)
    out = torch.zeros_like(x)
    out.index_add_(0, order // TOPK, y * w.reshape(-1)[order].unsqueeze(1).to(y.dtype))
    return out


def path_name(tier) -> str:
    """The runner's path for a prefill tier (runner.tier_for): None = decode."""
    return "ours" if tier is None else "ws" if tier == 1 else f"quack/{tier}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="artifacts")
    ap.add_argument("--tokens", type=int, nargs="*", default=[1, 4, 16, 64, 1024, 8192])
    ap.add_argument("--decode-only", action="store_true",
                    help="prefill=False: our kernels at every T; without it (MoERunner's default) the quack "
                         "prefill tiers serve large T (both read the one weight copy)")
    ap.add_argument("--word-order", choices=list(WORD_ORDERS), default=None,
                    help="the runner's blob word order (runtime/word_order.py; rot: the store must hold the ops of "
                         "`nvfp4-build plan --word-order rot`)")
    ap.add_argument("--all-paths", action="store_true",
                    help="also time the paths MoERunner does not pick at each token count (marked *): the data behind PREFILL")
    a = ap.parse_args()
    store = open_store(a.store)
    store.prime()
    dev = torch.device("cuda")
    runner = moe_runner(store, max(a.tokens), prefill=not a.decode_only, word_order=a.word_order)
    w13 = (torch.randn((E, 2 * I, H), device=dev, dtype=torch.bfloat16) * 0.01).transpose(1, 2)
    w2 = (torch.randn((E, H, I), device=dev, dtype=torch.bfloat16) * 0.01).transpose(1, 2)
    counts = torch.zeros(E, dtype=torch.int32, device=dev)
    offs = torch.zeros(E, dtype=torch.int32, device=dev)
    print(f"device: {device_name()}; MoE layer, {E} local experts, H {H}, I {I}, top-{TOPK}, all slots local; "
          f"word order {runner.word_order}")
    peak = bf16_peak()
    print(f"{'tokens':>6} {'path':>9} {'runner us':>10} {'torch bf16 us':>14} {'speed-up':>9} {'glue us':>8} {'glue share':>10}"
          "  runner GEMM rate")
    for m in a.tokens:
        ids, start = make_routing(m, TOPK, E, seed=m, mode="local")
        ids = (ids - start).to(dev)  # local ids: the runner's expert_start is 0, torch indexes experts
        x = torch.randn((m, H), device=dev).to(torch.bfloat16)
        w = torch.rand((m, TOPK), device=dev)
        out = torch.empty((m, H), dtype=torch.bfloat16, device=dev)
        t_run = time_cuda(lambda: runner(x, ids, w, out=out, check=False), reps=10)
        t_torch = time_cuda(lambda: torch_moe(x, ids, w, w13, w2, counts, offs), reps=5)
        tier, pad = runner.tier_for(m), runner.pad_for(m)
        ws, rows = runner.ws, capacity(m, TOPK, E, pad)
        route = runner.route if tier is None else getattr(runner, f"route_{tier}")
        permute = runner.permute if tier is None else getattr(runner, f"permute_{tier}")
        silu = runner.silu if tier is None else runner.silu_pre  # decode: quad order; prefill: natural
        path = path_name(tier)
        glue = [
            lambda: route(ids, runner.expert_start, ws["counts"], ws["offsets"], ws["slot_of"][:m],
                          ws["src_token"][:rows], check=False),
            lambda: permute(x, ws["src_token"][:rows], ws["xg"][:rows], check=False),
            lambda: silu(ws["h1"][:rows], ws["a2"][:rows], check=False),
            lambda: runner.combine(ws["y"][:rows], ws["slot_of"][:m], w, out, check=False),
        ]
        runner(x, ids, w, out=out, check=False)  # real routing state for the glue timings
        t_glue = sum(time_cuda(f, reps=10) for f in glue)
        fl = 2.0 * m * TOPK * 3 * H * I
        print(f"{m:>6} {path:>9} {t_run * 1e6:>10.0f} {t_torch * 1e6:>14.0f} {t_torch / t_run:>8.2f}x {t_glue * 1e6:>8.1f} "
              f"{t_glue / t_run:>10.1%}  {tflops(fl, t_run, peak)}")
        if a.all_paths:  # the other paths at this token count (runner.tiers forced for the timing only)
            tiers = runner.tiers
            for p in [None] + [p for _, _, p in tiers]:
                if p == tier or capacity(m, TOPK, E, p or 1) > ws["xg"].shape[0]:
                    continue
                runner.tiers = [(0, None, p)] if p is not None else []
                t_p = time_cuda(lambda: runner(x, ids, w, out=out, check=False), reps=10)
                runner.tiers = tiers
                name = path_name(p) + "*"
                print(f"{m:>6} {name:>9} {t_p * 1e6:>10.0f} {'':>14} {t_torch / t_p:>8.2f}x {'':>8} {'':>10}  {tflops(fl, t_p, peak)}")


if __name__ == "__main__":
    main()
