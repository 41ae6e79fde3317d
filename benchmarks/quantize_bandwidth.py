"""NVFP4 quantize throughput as a fraction of copy bandwidth measured in the same run (GPU).

Device time per call from CUDA-graph replays (20 calls a graph), so host launch cost is out.

Bytes counted: bf16 input read once + packed codes + scale bytes written once.
Inputs rotate over enough buffers (> 2x L2) that no rep reads from cache.
"""

import argparse
import json

from common import copy_bandwidth, device_name, time_quantize

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime import open_store


def open_quantize(store_path: str):
    """(store primed, the nvfp4_quantize family, copy bandwidth in B/s), the device line printed."""
    store = open_store(store_path)
    store.prime()
    bw = copy_bandwidth()
    print(f"device: {device_name()}; copy bandwidth {bw / 1e12:.2f} TB/s (read + write)")
    return store, get_family("nvfp4_quantize"), bw


def time_call(fam, p, m: int, call, reps: int) -> tuple[float, int]:
    """(seconds per call, bytes moved) of `call` (an op or a kernel) on graph-replayed fresh inputs."""
    return time_quantize(fam, p, m, lambda b: call(b["x"], b["global_scale"], b["q"], b["sf"], check=False), reps=reps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="artifacts")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    store, fam, bw = open_quantize(args.store)
    rows = []
    for k in (7168, 3072):
        op = store.op("nvfp4_quantize", k=k, sf_layout="swizzled")
        for m in (1, 16, 128, 1024, 4096, 8192):
            t, nbytes = time_call(fam, fam.parse_params(op.kernel_for(m).record["params"]), m, op, reps=30)
            rows.append({"k": k, "m": m, "us": t * 1e6, "tbps": nbytes / t / 1e12, "frac": nbytes / t / bw})
    print(f"{'K':>6} {'M':>6} {'time us':>9} {'TB/s':>6} {'of copy':>8}")
    for r in rows:
        print(f"{r['k']:>6} {r['m']:>6} {r['us']:>9.2f} {r['tbps']:>6.2f} {r['frac']:>8.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name(), "copy_tbps": bw / 1e12, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
