"""benchmarks/w4a16_ws_dense_sweep.py's `manifest` modes (CPU): every mode writes a manifest the builder
accepts — every candidate tiling passes the w4a16_ws family's validity predicate for its shape — so a
staged device run never meets a refused candidate after the session's GPU time is spent (`--lean` holds the
diagnostic probe tilings, built only with NVFP4_AOT_WS_PROBE=1, as its docstring says)."""

import subprocess
import sys
from pathlib import Path

import pytest

from nvfp4_aot.build.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]


def _sweep():
    """The sweep module; benchmarks/ is on sys.path only for this import."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import w4a16_ws_dense_sweep
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return w4a16_ws_dense_sweep


sweep = _sweep()
# Every mode the sweep's command line takes, from the sweep itself (its flag modes and SERVED_SWEEPS), so a new mode
# is tested without being listed here too.
MODES = ("", *(f"--{m}" for m in (*sweep.FLAG_MODES, *sweep.SERVED_SWEEPS)))


@pytest.mark.parametrize("mode", MODES)
def test_sweep_manifest_is_buildable(mode, tmp_path, monkeypatch):
    monkeypatch.setenv("NVFP4_AOT_WS_PROBE", "1")
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "w4a16_ws_dense_sweep.py"), "manifest",
                        *([mode] if mode else [])], capture_output=True, text=True, check=True)
    path = tmp_path / "sweep.toml"
    path.write_text(r.stdout)
    variants = load_manifest(path).variants()  # validates every bucket's tuning (one-line error otherwise)
    # (the WITH_DECODE modes carry w4a16_gemm's default ops: the decode kernel's baseline row at small M)
    decode = mode.removeprefix("--") in sweep.WITH_DECODE
    assert variants and all(v.family in ("w4a16_ws_gemm", "quack_w4a16_gemm", "quack_w4a16_rowalpha_gemm")
                            or (decode and v.family == "w4a16_gemm") for v in variants), mode
