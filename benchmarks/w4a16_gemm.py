"""W4A16 NVFP4 GEMM on Hopper through the quack adapter family (GPU): dense at several M and
48 experts one after another in a CUDA graph ("grouped" by looping, the peer the issue-4
kernel must beat), against torch bf16 in the same run. Device time from graph replays.
Bandwidth fraction counts the NVFP4 weight bytes (codes + E4M3 scales) against copy speed."""

import argparse

import torch
from common import MOE_SHAPES, copy_bandwidth, device_name, time_cuda

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime import open_store
from nvfp4_aot.runtime.scratch import OpScratch

SHAPES = MOE_SHAPES


def weight_bytes(n: int, k: int) -> int:
    return n * k // 2 + n * k // 16


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="artifacts")
    ap.add_argument("--experts", type=int, default=48)
    a = ap.parse_args()
    store = open_store(a.store)
    store.prime()
    fam = get_family("quack_w4a16_gemm")
    bw = copy_bandwidth()
    dev = torch.device("cuda")
    print(f"device: {device_name()}; copy {bw / 1e12:.2f} TB/s")
    print(f"{'shape':5} {'M':>5} {'quack us':>9} {'bf16 us':>8} {'bf16/quack':>10} {'wt-bytes of copy':>16}")
    for name, (n, k) in SHAPES.items():
        op = store.op("quack_w4a16_gemm", n=n, k=k)
        w16 = torch.randn((n, k), device=dev, dtype=torch.bfloat16)
        for m in (1, 16, 64, 256, 1024, 4096, 8192):
            p = fam.parse_params(op.kernel_for(m).record["params"])
            b = fam.make_inputs(p, m, dev, seed=m)
            args = [b[x.name] for x in op.kernel_for(m).validator.args]
            tq = time_cuda(lambda: op(*args, check=False), reps=20)
            tb = time_cuda(lambda: torch.matmul(b["act"], w16.T), reps=20)
            frac = weight_bytes(n, k) / tq / bw
            print(f"{name:5} {m:>5} {tq * 1e6:>9.1f} {tb * 1e6:>8.1f} {tb / tq:>10.2f} {frac:>16.1%}")
    # 48 experts, each its own weights, tokens per expert t: one quack call per expert in a graph
    n, k = SHAPES["L1"]
    op = store.op("quack_w4a16_gemm", n=n, k=k)
    e = a.experts
    p1 = fam.parse_params(op.kernel_for(1).record["params"])
    ws = [fam.make_inputs(p1, 1, dev, seed=100 + i) for i in range(e)]
    w16 = torch.randn((e, k, n), device=dev, dtype=torch.bfloat16).transpose(1, 2).contiguous().transpose(1, 2)
    print(f"\n{e} experts, L1 ({n}x{k}), NVFP4 weights {e * weight_bytes(n, k) / 1e6:.0f} MB; floor at copy speed "
          f"{e * weight_bytes(n, k) / bw * 1e6:.0f} us")
    for t in (1, 4, 16, 128):
        kern = op.kernel_for(t)
        scratch = OpScratch(op, t, dev)(t)  # split-K buckets: one flag buffer, calls in sequence
        acts = [torch.randn((t, k), device=dev).to(torch.bfloat16) for _ in range(e)]
        outs = [torch.empty((t, n), device=dev, dtype=torch.bfloat16) for _ in range(e)]

        def all_experts():
            for i in range(e):
                kern(acts[i], ws[i]["blob"], ws[i]["sf"], ws[i]["alpha"], outs[i], *scratch, check=False)

        tq = time_cuda(all_experts, reps=10)
        a_cat = torch.cat(acts)
        offs = torch.arange(1, e + 1, device=dev, dtype=torch.int32) * t
        try:
            tb = time_cuda(lambda: torch._grouped_mm(a_cat, w16, offs=offs), reps=10)
            tbs = f"{tb * 1e6:8.0f} us ({tb / tq:.2f}x quack)"
        except Exception as ex:  # noqa: BLE001 (report the baseline as unavailable, keep going)
            tbs = f"unavailable: {type(ex).__name__}: {str(ex)[:80]}"
        frac = e * weight_bytes(n, k) / tq / bw
        print(f"tokens/expert {t:>4}: quack per expert {tq * 1e6:8.0f} us ({frac:.1%} of copy) | torch bf16 _grouped_mm {tbs}")


if __name__ == "__main__":
    main()
