"""Medians of repeat.sh's rounds (docs/experiments/close): the MoERunner decode rows (µs and × torch bf16, ours and
cfea70a's) and the dense bar cells (Nvfp4Linear's default kernel against torch bf16 matmul, hot and cold), with each
round's ratio beside the median so that the spread is on the page.

    python3 summarize.py LOG_DIR"""

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

# moe_layer.py rows: "  16      ours   556   2179   3.92x ..." (ours) / "  16   545   2177   3.99x ..." (cfea70a's)
DECODE = re.compile(r"^\s+(\d+)\s+(?:ours\s+)?(\d+)\s+(\d+)\s+([\d.]+)x")
SHAPE = re.compile(r"^(?:shared )?(\S+) \((\d+x\d+)")
# w4a16_ours.py dense rows: "  M=   64: ... | bf16    34.5 us | default ws       22.8 us, ..., 1.51x torch, ..."
DENSE = re.compile(r"^\s+M=\s*(\d+):.*\| bf16\s+([\d.]+) us \| default (\S+)\s+([\d.]+) us")


def decode_rows(path: Path) -> dict[int, tuple[float, float]]:
    rows = {}
    for line in path.read_text().splitlines():
        m = DECODE.match(line)
        if m:
            rows[int(m[1])] = (float(m[2]), float(m[4]))
    return rows


def dense_cells(path: Path) -> dict[tuple[str, int], tuple[float, float, str]]:
    cells, shape = {}, None
    for line in path.read_text().splitlines():
        s = SHAPE.match(line)
        if s:
            shape = s[1]
        d = DENSE.match(line)
        if d and shape:
            cells[(shape, int(d[1]))] = (float(d[4]), float(d[2]), d[3])
    return cells


def main(root: Path) -> int:
    print((root / "device.log").read_text().strip())
    print("\nMoERunner decode, median over rounds: tokens | ours us (x bf16) | cfea70a us (x bf16) | ours / cfea70a time")
    runs = {k: [decode_rows(p) for p in sorted(root.glob(f"{k}_decode.*.log"))] for k in ("ours", "base")}
    for t in sorted(set().union(*runs["ours"])):
        med = {k: [statistics.median(r[t][i] for r in v if t in r) for i in (0, 1)] for k, v in runs.items()}
        each = ", ".join(f"{o[t][0]:.0f}/{b[t][0]:.0f}" for o, b in zip(runs["ours"], runs["base"]) if t in o and t in b)
        print(f"  {t:>5} | {med['ours'][0]:7.0f} ({med['ours'][1]:.2f}x) | {med['base'][0]:7.0f} ({med['base'][1]:.2f}x)"
              f" | {med['ours'][0] / med['base'][0]:.3f}  (rounds ours/cfea70a us: {each})")
    bad = 0
    for cond in ("hot", "cold"):
        rounds = [dense_cells(p) for p in sorted(root.glob(f"dense_{cond}.*.log"))]
        ratios = defaultdict(list)
        for r in rounds:
            for key, (ours, bf16, _) in r.items():
                ratios[key].append(bf16 / ours)
        print(f"\ndense {cond}, Nvfp4Linear's default x torch bf16, median (rounds):")
        for key in sorted(ratios, key=lambda k: (k[0], k[1])):
            med = statistics.median(ratios[key])
            bad += med < 1.0
            print(f"  {key[0]:<8} M={key[1]:>5}: {med:.2f}x  ({', '.join(f'{x:.2f}' for x in ratios[key])})"
                  + ("  BELOW 1.0" if med < 1.0 else ""))
    print(f"\ndense cells with median below 1.0x: {bad}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
