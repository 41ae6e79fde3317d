"""Does the card's clock move a dense parity cell? Our w4a16_ws_gemm (Nvfp4Linear's default at these M) and torch
bf16 matmul on the same shape, alternated in ROUNDS rounds of sustained timing (common.time_cuda, REPS replays of 20
calls), while nvidia-smi samples the SM clock, power and throttle reasons every 50 ms (clocks.sh starts it); each
phase's samples are picked by the wall-clock window this script prints around it. Session 35 (H100): one run put down
M = 8192 hot at 0.97x torch, a run on another machine 0.83-0.88x, with quack and bf16 also slower there.

    python3 clocks.py SMI_CSV --store S [--shapes down gate+up] [--m 8192] [--rounds 4] [--reps 50]"""

import argparse
import datetime as dt
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from common import time_cuda  # noqa: E402
from w4a16_ours import DENSE  # noqa: E402

from nvfp4_aot.kernels import get_family  # noqa: E402
from nvfp4_aot.runtime import open_store  # noqa: E402
from nvfp4_aot.runtime.linear import WORD_ORDER  # noqa: E402
from nvfp4_aot.runtime.scratch import OpScratch  # noqa: E402

SMI_TIME = "%Y/%m/%d %H:%M:%S.%f"


def samples(csv: Path, start: dt.datetime, end: dt.datetime) -> list[list[str]]:
    """nvidia-smi rows (timestamp, sm MHz, W, throttle reasons) sampled inside [start, end]."""
    rows = []
    for line in csv.read_text().splitlines():
        f = [x.strip() for x in line.split(",")]
        try:
            t = dt.datetime.strptime(f[0], SMI_TIME)
        except ValueError:
            continue  # header or a partial last line
        if start <= t <= end:
            rows.append(f)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("smi", type=Path)
    ap.add_argument("--store", required=True)
    ap.add_argument("--shapes", nargs="*", default=["down", "gate+up"])
    ap.add_argument("--m", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args()
    dev = torch.device("cuda")
    store = open_store(a.store)
    fam = get_family("w4a16_gemm")
    phases = []
    for name, (n, k, _) in DENSE.items():
        if not any(name.endswith(s) for s in a.shapes):
            continue
        op = store.op("w4a16_gemm", n=n, k=k, act_order="natural", word_order=WORD_ORDER)
        wop = store.op("w4a16_ws_gemm", n=n, k=k, word_order=WORD_ORDER)
        p = fam.parse_params(op.kernel_for(1).record["params"])
        b = fam.make_inputs(p, a.m, dev, seed=n + k)
        scratch = OpScratch(wop, a.m, dev)
        w16 = torch.randn((n, k), device=dev, dtype=torch.bfloat16)
        act, out = b["act"][: a.m], b["out"][: a.m]
        fns = {"ours ws": lambda: wop(act, b["blob"], b["sf"], b["alpha"], out, *scratch(a.m), check=False),
               "bf16": lambda: torch.matmul(act, w16.T)}
        for r in range(a.rounds):
            for label, fn in fns.items():
                t0 = dt.datetime.now()
                sec = time_cuda(fn, reps=a.reps)
                phases.append((f"{name} M={a.m} round {r + 1} {label}", sec, 2.0 * a.m * n * k, t0, dt.datetime.now()))
        del b, w16
        torch.cuda.empty_cache()
    torch.cuda.synchronize()
    time.sleep(0.3)  # the sampler's last rows
    print(f"{'phase':<40} {'us':>8} {'TFLOP/s':>8} {'SM MHz med (min)':>17} {'W med':>6}  throttle reasons seen")
    cells = defaultdict(lambda: defaultdict(list))  # "shape M=m" -> kind -> [(seconds, median MHz or None)]
    for label, sec, fl, t0, t1 in phases:
        rows = samples(a.smi, t0, t1)
        mhz = [float(r[1]) for r in rows]
        cell, rest = label.split(" round ")
        kind = rest.split(" ", 1)[1]  # "ours ws" / "bf16"
        cells[cell][kind].append((sec, statistics.median(mhz) if mhz else None))
        watts = [float(r[2]) for r in rows]
        reasons = sorted({r[3] for r in rows})
        clk = f"{statistics.median(mhz):6.0f} ({min(mhz):4.0f})" if mhz else "       -"
        pw = f"{statistics.median(watts):6.0f}" if watts else "     -"
        print(f"{label:<40} {sec * 1e6:8.1f} {fl / sec / 1e12:8.0f} {clk:>17} {pw}  {' '.join(reasons)} [{len(rows)}]")
    print_cells(cells)
    return 0


def print_cells(cells) -> None:
    """cells: "shape M=m" -> {"ours ws": [(seconds, MHz or None)] per round, "bf16": the same}."""
    print("\nper cell: bf16 / ours time, median over rounds (each round), and the median SM MHz of each")
    for cell, kinds in cells.items():
        ours, bf16 = kinds["ours ws"], kinds["bf16"]
        ratios = [b[0] / o[0] for o, b in zip(ours, bf16)]
        clk = [[c for _, c in v if c is not None] for v in (ours, bf16)]
        mhz = " / ".join(f"{statistics.median(v):.0f}" if v else "-" for v in clk)
        print(f"  {cell:<24} {statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)})"
              f"  MHz ours / bf16 {mhz}")


if __name__ == "__main__":
    sys.exit(main())
