"""Time every nvfp4_quantize kernel of a store (built from benchmarks/quantize_sweep.toml) at
several M, as a fraction of copy bandwidth measured in the same run (GPU, graph-timed)."""

import argparse

import torch
from common import copy_bandwidth, device_name, time_cuda

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime import open_store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--m", type=int, nargs="+", default=[128, 1024, 4096, 8192])
    a = ap.parse_args()
    store = open_store(a.store)
    store.prime()
    fam = get_family("nvfp4_quantize")
    bw = copy_bandwidth()
    print(f"device: {device_name()}; copy {bw / 1e12:.2f} TB/s")
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    kerns = sorted((k for k in store.kernels.values() if k.record["family"] == fam.name),
                   key=lambda k: (k.record["params"]["k"], k.record["params"]["stage_smem"], k.record["params"]["threads"]))
    for kern in kerns:
        p = fam.parse_params(kern.record["params"])
        row = []
        for m in a.m:
            nbytes = m * p.k * 2 + m * p.k // 2 + p.k // 16 * (-(-m // 128) * 128)
            nbuf = max(1, min(16, -(-4 * l2 // nbytes)))
            bufs = [fam.make_inputs(p, m, torch.device("cuda"), seed=i) for i in range(nbuf)]
            it = iter(range(1 << 30))

            def call():
                b = bufs[next(it) % nbuf]
                kern(b["x"], b["global_scale"], b["q"], b["sf"], check=False)

            t = time_cuda(call, reps=20)
            row.append(f"M={m}: {t * 1e6:6.2f}us {nbytes / t / bw:5.1%}")
        print(f"k={p.k} threads={p.threads:3} stage_smem={p.stage_smem!s:5} | " + " | ".join(row))


if __name__ == "__main__":
    main()
