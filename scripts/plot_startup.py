#!/usr/bin/env python3
"""Plot start-up time (until every kernel is callable) vs number of variants, JIT vs AOT.

    python scripts/plot_startup.py --jit docs/startup_jit_cpu.json --aot OUT/startup_aot.json \
        -o docs/startup.png

Inputs are the JSON sweeps of benchmarks/startup.py (`jit --json`, `aot --json`): {"mode",
"arch", "device", "machine", "date", "command", "points": [{"variants", "seconds", ...}]}.
Log-log axes; the caption names both devices and dates and the ratio at the largest count
both sweeps have. Needs matplotlib (the `docs` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load_sweep(path: Path, mode: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"error: {path}: cannot read the sweep: {e}")
    points = data.get("points") if isinstance(data, dict) else None
    if data.get("mode") != mode or not points or not all({"variants", "seconds"} <= set(p) for p in points):
        sys.exit(f"error: {path}: not a benchmarks/startup.py {mode} sweep (needs mode={mode!r} and points with variants, seconds)")
    return data


def caption(jit: dict, aot: dict) -> str:
    j = {p["variants"]: p["seconds"] for p in jit["points"]}
    a = {p["variants"]: p["seconds"] for p in aot["points"]}
    common = sorted(set(j) & set(a))
    ratio = f"; at {common[-1]} variants AOT is {j[common[-1]] / a[common[-1]]:.0f}x faster" if common else ""
    load = f", load avg {jit['load_avg_at_start'][0]:.1f}" if jit.get("load_avg_at_start") else ""
    return (
        f"JIT: cute.compile, fresh process incl. DSL import, on {jit.get('device', '?')}{load} ({jit.get('date', '?')}). "
        f"AOT: open + verify + load + prime (torch import and CUDA context not counted: a JIT server pays them too), on "
        f"{aot.get('device', '?')} ({aot.get('date', '?')}); {aot.get('arch', '?')} variants{ratio}."
    )


def plot(jit: dict, aot: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=150)
    for data, label, style in ((jit, "JIT (cute.compile at start-up)", "o-"), (aot, "AOT (nvfp4-aot store)", "s-")):
        pts = sorted((p["variants"], p["seconds"]) for p in data["points"])
        ax.plot([x for x, _ in pts], [y for _, y in pts], style, label=label)
        for x, y in pts:
            ax.annotate(f"{y:.3g} s" if y >= 1 else f"{y * 1e3:.0f} ms", (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("kernel variants")
    ax.set_ylabel("time until every kernel is callable (s)")
    ax.set_title("Start-up: JIT compile vs ahead-of-time store")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, caption(jit, aot), fontsize=6.5, wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    # Fixed metadata: re-rendering the same JSON gives the same PNG.
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jit", type=Path, required=True, help="benchmarks/startup.py jit --json output")
    ap.add_argument("--aot", type=Path, required=True, help="benchmarks/startup.py aot --json output")
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/startup.png"))
    a = ap.parse_args(argv)
    jit, aot = load_sweep(a.jit, "jit"), load_sweep(a.aot, "aot")
    plot(jit, aot, a.out)
    print(f"{a.out}: {caption(jit, aot)}")


if __name__ == "__main__":
    main()
