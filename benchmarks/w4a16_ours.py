"""Our w4a16 GEMMs (kernels/w4a16) on Hopper against, in the same run: torch bf16 (grouped:
torch._grouped_mm over the same token groups; dense: matmul) and quack's SM90 W4A16 GEMM
(grouped: one quack call per expert inside one CUDA graph). Device time from graph replays;
"of copy" = NVFP4 weight bytes actually read (experts with tokens) / time / copy bandwidth.

Grouped problems are laid out as MoERunner lays them out on Hopper: t tokens per expert,
unpadded groups (route pad = 1), act rows = t * E.
"""

import argparse

import torch
from common import copy_bandwidth, device_name, time_cuda

from nvfp4_aot.kernels import get_family
from nvfp4_aot.kernels.moe_glue import capacity
from nvfp4_aot.runtime import open_store

SHAPES = {"L1": (6144, 7168), "L2": (7168, 3072)}
DENSE = {"shared gate+up": (6144, 7168), "q_a+kv": (2048, 7168), "o_b": (7168, 2048), "q_b": (65536, 1536)}
TOPK, PAD = 6, 1  # MoERunner's layout on Hopper: unpadded groups


def weight_bytes(n: int, k: int) -> int:
    return n * k // 2 + n * k // 16


def grouped(store, bw, e: int, dev) -> None:
    fam = get_family("w4a16_grouped_gemm")
    qfam = get_family("quack_w4a16_gemm")
    print(f"\ngrouped, {e} experts: tokens/expert, ours | quack per expert | torch bf16 _grouped_mm")
    for name, (n, k) in SHAPES.items():
        op = store.op("w4a16_grouped_gemm", n=n, k=k, experts=e)
        qop = store.op("quack_w4a16_gemm", n=n, k=k)
        floor = e * weight_bytes(n, k) / bw
        print(f"{name} ({n}x{k}): NVFP4 weights {e * weight_bytes(n, k) / 1e6:.0f} MB, floor {floor * 1e6:.0f} us")
        w16 = torch.randn((e, n, k), device=dev, dtype=torch.bfloat16).transpose(1, 2)
        # distinct weights per expert (one shared set would sit in L2 and flatter quack)
        qp1 = qfam.parse_params(qop.kernel_for(1).record["params"])
        qws = [qfam.make_inputs(qp1, 1, dev, seed=100 + i) for i in range(e)]
        for t in (1, 4, 16, 128):
            m_tok = t * e // TOPK
            rows = capacity(m_tok, TOPK, e, PAD)
            p = fam.parse_params(op.kernel_for(rows).record["params"])
            b = fam.make_inputs(p, rows, dev, seed=t)
            sizes = torch.full((e,), -(-t // PAD) * PAD, dtype=torch.int32)
            offs = torch.zeros(e + 1, dtype=torch.int32)
            offs[1:] = torch.cumsum(sizes, 0)
            b["offsets"].copy_(offs)
            b["counts"].fill_(t)
            args = [b[a.name] for a in op.kernel_for(rows).validator.args]
            tours = time_cuda(lambda: op(*args, check=False), reps=10)
            # quack: one dense call per expert on its t rows
            qk = qop.kernel_for(t)
            acts = [b["act"][int(offs[i]) : int(offs[i]) + t] for i in range(e)]
            outs = [torch.empty((t, n), device=dev, dtype=torch.bfloat16) for _ in range(e)]

            def per_expert():
                for i in range(e):
                    qk(acts[i], qws[i]["blob"], qws[i]["sf"], qws[i]["alpha"], outs[i], check=False)

            tq = time_cuda(per_expert, reps=5)
            a_cat = torch.cat(acts)
            goffs = (torch.arange(1, e + 1, device=dev, dtype=torch.int32) * t)
            tb = time_cuda(lambda: torch._grouped_mm(a_cat, w16, offs=goffs), reps=5)
            print(f"  t={t:>4} rows={rows:>6}: ours {tours * 1e6:7.0f} us ({floor / tours:5.1%} of copy) | "
                  f"quack {tq * 1e6:7.0f} us ({tq / tours:4.2f}x ours) | bf16 {tb * 1e6:7.0f} us ({tb / tours:4.2f}x ours)")


def dense(store, bw, dev) -> None:
    fam = get_family("w4a16_gemm")
    qfam = get_family("quack_w4a16_gemm")
    print("\ndense: M, ours | quack | torch bf16 matmul")
    for name, (n, k) in DENSE.items():
        op = store.op("w4a16_gemm", n=n, k=k)
        try:
            qop = store.op("quack_w4a16_gemm", n=n, k=k)
        except Exception:  # noqa: BLE001 (quack is built only for the routed shapes)
            qop = None
        w16 = torch.randn((n, k), device=dev, dtype=torch.bfloat16)
        print(f"{name} ({n}x{k}): floor {weight_bytes(n, k) / bw * 1e6:.1f} us")
        for m in (1, 16, 64, 256, 1024, 4096, 8192):
            p = fam.parse_params(op.kernel_for(m).record["params"])
            b = fam.make_inputs(p, m, dev, seed=m)
            args = [b[a.name] for a in op.kernel_for(m).validator.args]
            to = time_cuda(lambda: op(*args, check=False), reps=10)
            tb = time_cuda(lambda: torch.matmul(b["act"], w16.T), reps=10)
            qs = ""
            if qop is not None:
                qb = qfam.make_inputs(qfam.parse_params(qop.kernel_for(m).record["params"]), m, dev, seed=m)
                qargs = [qb[a.name] for a in qop.kernel_for(m).validator.args]
                tq = time_cuda(lambda: qop(*qargs, check=False), reps=10)
                qs = f"quack {tq * 1e6:7.1f} us ({tq / to:4.2f}x ours) | "
            frac = weight_bytes(n, k) / to / bw
            print(f"  M={m:>5}: ours {to * 1e6:7.1f} us ({frac:5.1%} of copy) | {qs}bf16 {tb * 1e6:7.1f} us ({tb / to:4.2f}x ours)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="artifacts")
    ap.add_argument("--experts", type=int, nargs="*", default=[48])
    ap.add_argument("--skip-dense", action="store_true")
    a = ap.parse_args()
    store = open_store(a.store)
    store.prime()
    dev = torch.device("cuda")
    bw = copy_bandwidth()
    print(f"device: {device_name()}; copy {bw / 1e12:.2f} TB/s")
    for e in a.experts:
        grouped(store, bw, e, dev)
    if not a.skip_dense:
        dense(store, bw, dev)


if __name__ == "__main__":
    main()
