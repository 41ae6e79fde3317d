"""benchmarks/startup.py's AOT sweep (CPU: open + load, no prime) writes the JSON shape that
scripts/plot_startup.py renders; the plot script on a synthetic JIT sweep of the same shape."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _jit_sweep(path: Path) -> Path:
    """Synthetic, shaped like `startup.py jit --json` (numbers made up: only the plot is tested)."""
    pts = [{"variants": n, "seconds": 3.0 + 0.4 * n} for n in (1, 2, 4)]
    path.write_text(json.dumps({"mode": "jit", "arch": "sm_90a", "device": "CPU: test, 2 cores", "date": "2026-12-02",
                                "machine": "test", "command": "synthetic", "points": pts, "variants": 4, "seconds": 4.6}))  # fmt: skip
    return path


def test_aot_sweep_json_feeds_the_plot(built_store, tmp_path):
    pytest.importorskip("matplotlib")
    aot = tmp_path / "aot.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "startup.py"), "aot", "--store", str(built_store), "--counts", "1,2,all", "--json", str(aot)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(aot.read_text())
    assert data["mode"] == "aot" and [p["variants"] for p in data["points"]] == [1, 2, 4]  # 4 sm_90a entries
    assert all(p["seconds"] > 0 and p["open_load_s"] > 0 for p in data["points"])
    out = tmp_path / "startup.png"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "plot_startup.py"), "--jit", str(_jit_sweep(tmp_path / "jit.json")),
                        "--aot", str(aot), "-o", str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "CPU: test, 2 cores (2026-12-02)" in r.stdout and "at 4 variants AOT is" in r.stdout


def test_plot_refuses_a_wrong_sweep(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"mode": "aot", "points": []}))
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "plot_startup.py"), "--jit", str(_jit_sweep(tmp_path / "j.json")),
                        "--aot", str(bad), "-o", str(tmp_path / "p.png")], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1 and "not a benchmarks/startup.py aot sweep" in r.stderr and "Traceback" not in r.stderr
