"""Time every nvfp4_quantize kernel of a store (built from benchmarks/quantize_sweep.toml) at
several M, as a fraction of copy bandwidth measured in the same run (GPU, graph-timed)."""

import argparse

from quantize_bandwidth import open_quantize, time_call


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--m", type=int, nargs="+", default=[128, 1024, 4096, 8192])
    a = ap.parse_args()
    store, fam, bw = open_quantize(a.store)
    kerns = sorted((k for k in store.kernels.values() if k.record["family"] == fam.name),
                   key=lambda k: (k.record["params"]["k"], k.record["params"]["stage_smem"], k.record["params"]["threads"]))
    for kern in kerns:
        p = fam.parse_params(kern.record["params"])
        row = []
        for m in a.m:
            t, nbytes = time_call(fam, p, m, kern, reps=20)
            row.append(f"M={m}: {t * 1e6:6.2f}us {nbytes / t / bw:5.1%}")
        print(f"k={p.k} threads={p.threads:3} stage_smem={p.stage_smem!s:5} | " + " | ".join(row))


if __name__ == "__main__":
    main()
