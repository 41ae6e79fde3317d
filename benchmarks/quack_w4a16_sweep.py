"""Tile sweep of quack_w4a16_gemm (and its per-row-alpha twin for q_a + kv) on the five dense
DeepSeek-V4 shapes: one store per (tile_m, tile_n, cluster_n) under ROOT/quack_* (built by
scripts/sweep_w4a16.sh with QUACK_TILES=...), each checked once against the float64 reference
(M = 100: a ragged token tile), then device time from graph replays per M, with the torch bf16
matmul of the same run as the bar. Usage: quack_w4a16_sweep.py ROOT [M ...]"""

import sys
from pathlib import Path

import torch
from common import bf16_peak, device_name, time_cuda

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime import open_store

SHAPES = {"gate+up": (6144, 7168, 1), "down": (7168, 3072, 1), "q_a+kv": (2048, 7168, 2), "o_b": (7168, 2048, 1),
          "q_b": (65536, 1536, 1)}


def main(root: str, ms: list[int]) -> None:
    dev = torch.device("cuda")
    peak = bf16_peak()
    print(f"device: {device_name()}; quack W4A16 tile sweep; cells: us (x torch bf16)")
    stores = [(d.name, open_store(d)) for d in sorted(Path(root).iterdir()) if d.name.startswith("quack_")]
    for _, s in stores:
        s.prime()
    for shape, (n, k, scales) in SHAPES.items():
        fname = "quack_w4a16_gemm" if scales == 1 else "quack_w4a16_rowalpha_gemm"
        fam = get_family(fname)
        w16 = torch.randn((n, k), device=dev, dtype=torch.bfloat16)
        acts = {m: torch.randn((m, k), device=dev).to(torch.bfloat16) for m in ms}
        tb = {m: time_cuda(lambda: torch.matmul(acts[m], w16.T), reps=5) for m in ms}
        print(f"{shape} ({n}x{k}) torch bf16: " + " ".join(f"M={m}: {tb[m] * 1e6:.1f}" for m in ms))
        for name, store in stores:
            op = store.op(fname, n=n, k=k)
            p = fam.parse_params(op.kernel_for(100).record["params"])
            b = fam.make_inputs(p, 100, dev, seed=n + k)
            op(*[b[a.name] for a in op.kernel_for(100).validator.args])
            bad = fam.check(p, b, fam.reference(p, b))
            cells = []
            for m in ms:
                b = fam.make_inputs(p, m, dev, seed=m)
                args = [b[a.name] for a in op.kernel_for(m).validator.args]
                t = time_cuda(lambda: op(*args, check=False), reps=5)
                fl = 2.0 * m * n * k
                cells.append(f"M={m}: {t * 1e6:.1f} ({tb[m] / t:.2f}x{f', {fl / t / peak:.0%}' if peak else ''})")
            print(f"  {name:20} {'CHECK OK' if not bad else f'CHECK FAILED {bad}'} | " + " | ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1], [int(x) for x in sys.argv[2:]] or [64, 128, 256, 512, 1024, 2048, 4096, 8192])
