"""A/B of w4a16_gemm, the decode kernel Nvfp4Linear serves at small M, across stores built with different tunings
(or kernel changes) of the same dense DeepSeek-V4 shapes (w4a16_ours.DENSE).

For each shape and M, each store's op is first checked against the float64 reference (fresh random data, a NaN-
poisoned output, the family's tolerance: w4a16_common.check), then the stores are timed in turn, REPS rounds of
them, so clock and thermal drift fall on every store alike. Printed per store: the median of its rounds in µs (and
the spread), the fraction of copy bandwidth on the weight bytes, and its ratio to the first store (> 1: faster).
Hot L2 by default (one weight copy: a weight under the L2's size then streams from L2); --cold rotates every
store's weights over common.cold_copies copies, as a model's forward reads them. Exit 1 if any check failed.

  w4a16_dense_ab.py STORE [STORE ...] [--m 1 8 16] [--shapes gate+up down ...] [--reps 3] [--cold]
"""

import argparse
import statistics
import sys
from dataclasses import MISSING, fields

import torch
from common import cold_copies, copy_bandwidth, device_name, find_op, time_cuda, time_cuda_rot
from w4a16_ours import DENSE, weight_bytes

from nvfp4_aot.kernels import get_family
from nvfp4_aot.runtime import open_store


def tag(store, p) -> str:
    """The store's name and the kernel's knobs that differ from W4A16Params' defaults (what tells two stores apart)."""
    knobs = [f"{f.name}={getattr(p, f.name)}" for f in fields(p)
             if f.default is not MISSING and getattr(p, f.name) != f.default]
    return f"{store.root.name}: {' '.join(knobs)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--m", type=int, nargs="+", default=[1, 8, 16])
    ap.add_argument("--shapes", nargs="*", help="only these of w4a16_ours.DENSE (a suffix: gate+up, down, q_a+kv, ...)")
    ap.add_argument("--reps", type=int, default=3, help="rounds over the stores")
    ap.add_argument("--cold", action="store_true")
    a = ap.parse_args()
    fam = get_family("w4a16_gemm")
    dev = torch.device("cuda")
    stores = [open_store(s) for s in a.stores]
    for s in stores:
        s.prime()
    bw = copy_bandwidth()
    print(f"device: {device_name()}; copy {bw / 1e12:.2f} TB/s; torch {torch.__version__}; "
          f"{'cold' if a.cold else 'hot'} L2; {a.reps} rounds over {len(stores)} stores")
    failed = 0
    for name, (n, k, _) in DENSE.items():
        if a.shapes and not any(name.endswith(s) for s in a.shapes):
            continue
        ops = [find_op(s, "w4a16_gemm", n=n, k=k) for s in stores]
        floor = weight_bytes(n, k) / bw
        print(f"{name} ({n}x{k}): copy floor {floor * 1e6:.1f} us")
        nq = cold_copies(weight_bytes(n, k)) if a.cold else 1
        for m in a.m:
            runs = []
            for s, op in zip(stores, ops):
                kern = op.kernel_for(m)
                p = fam.parse_params(kern.record["params"])
                b = fam.make_inputs(p, m, dev, seed=1000 * m + n % 997)
                op(*[b[x.name] for x in kern.validator.args])
                bad = fam.check(p, b, fam.reference(p, b))
                failed += bool(bad)
                copies = [(b["blob"], b["sf"])] + [(b["blob"].clone(), b["sf"].clone()) for _ in range(nq - 1)]
                # op, b and w bound now: the rounds below run after this loop has moved on to the next store
                fns = [lambda w=w, b=b, op=op: op(b["act"], *w, b["alpha"], b["out"], check=False) for w in copies]
                runs.append((tag(s, p), "OK" if not bad else f"FAILED {bad}", fns, []))
            for _ in range(a.reps):
                for _, _, fns, ts in runs:
                    ts.append(time_cuda_rot(fns, reps=20) if a.cold else time_cuda(fns[0], reps=20))
            base = statistics.median(runs[0][3])
            for label, ok, _, ts in runs:
                t = statistics.median(ts)
                print(f"  M={m:>3} {label:48} {t * 1e6:7.2f} us ({min(ts) * 1e6:.2f}-{max(ts) * 1e6:.2f}) "
                      f"{floor / t:6.1%} of copy  {base / t:5.3f}x  check {ok}")
            del runs
            torch.cuda.empty_cache()
    print(f"checks: {'all OK' if not failed else f'{failed} FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
