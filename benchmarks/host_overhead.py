"""Host overhead per call (GPU): our op (validated and unchecked), the bare tvm-ffi function,
and a torch op on tiny tensors, in the same run. Each figure is host wall time per call over
a long eager loop of tiny launches, so launch-side host cost dominates."""

import argparse
import time

import torch
from common import device_name

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime import open_store
from nvfp4_aot.runtime.linear import WORD_ORDER


def per_call(fn, n: int = 20000) -> float:
    for _ in range(min(200, n)):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="artifacts")
    args = ap.parse_args()
    store = open_store(args.store)
    store.prime()
    fam = get_family("nvfp4_quantize")
    op = store.op("nvfp4_quantize", k=7168, sf_layout="swizzled")
    kern = op.kernel_for(1)
    b = fam.make_inputs(fam.parse_params(kern.record["params"]), 1, torch.device("cuda"), seed=0)
    a = [b["x"], b["global_scale"], b["q"], b["sf"]]
    x, y = torch.randn(16, device="cuda"), torch.randn(16, device="cuda")
    rows = {
        "torch.add (16 floats)": per_call(lambda: torch.add(x, y)),
        "tvm-ffi function, bare": per_call(lambda: kern.fn(*a)),
        "op(...) unchecked (bucket dispatch only)": per_call(lambda: op(*a, check=False)),
        "op(...) default (quick + kernel's own checks)": per_call(lambda: op(*a)),
        'op(..., check="full") (every rule in Python)': per_call(lambda: op(*a, check="full")),
    }
    rows.update(ws_epi_rows(store))
    print(f"device: {device_name()}")
    base = rows["torch.add (16 floats)"]
    for name, t in rows.items():
        print(f"{name:44} {t * 1e6:7.2f} us/call  {t / base:5.2f}x torch.add")


def ws_epi_rows(store) -> dict[str, float]:
    """Host cost of epi 3's output TMA descriptor (encoded by the exported function at every eager call, like the
    activation's; captured once inside a CUDA graph): the bare functions of the o_b w4a16_ws_gemm buckets serving M =
    32 (epi 3 since session 16) and M = 96 (epi 1), both called at M = 32 (the dense kernel takes any M), few enough
    calls (WS_CALLS) that the launch queue never fills, so the figure is host time, not the GPU's ~8 us per launch.
    Rows are named by what the store serves (tile, epi), so a table change shows in the output."""
    fam = get_family("w4a16_ws_gemm")
    try:
        op = store.op(fam.name, n=7168, k=2048, word_order=WORD_ORDER)
    except Exception:  # noqa: BLE001 (a store without o_b's ws op)
        return {}
    rows = {}
    for m_pick in (32, 96):
        kern = op.kernel_for(m_pick)
        p = fam.parse_params(kern.record["params"])
        if p.split_k > 1 or p.stream:
            continue
        b = fam.make_inputs(p, 32, torch.device("cuda"), seed=0)
        a = [b["act"], b["blob"], b["sf"], b["alpha"], b["out"]]
        rows[f"ws 64x{p.tile_n} epi {p.epi} bare (M = 32)"] = per_call(lambda a=a, f=kern.fn: f(*a), n=WS_CALLS)
    return rows


WS_CALLS = 400


if __name__ == "__main__":
    main()
