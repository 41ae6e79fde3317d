"""docker/Dockerfile's two stages, their commands run in fresh venvs (no container engine needed):

  build: pip install nvfp4-aot[build] -> docker/build-store.sh (plan per EP rank -> compile ->
         verify -> pack) on the synthetic checkpoint;
  serve: pip install nvfp4-aot (no extras) + the store wheel, NVFP4_AOT_NO_BUILD=1, the runtime
         verify by name, open(NAME); no `cutlass` importable; a tampered installed file refused.

Packages come from the pip cache / index the Makefile uses (torch pinned as there). About two
minutes on the 2-core CI box, most of it pip.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NAME = "ship-test"
PLAN_ARGS = ["--arch", "sm_90a", "--max-num-batched-tokens", "64", "--capture-sizes", "1,2,4,8"]
TORCH = "torch==2.13.0"  # the Makefile's pin


def _run(cmd, env=None, check=True, timeout=600, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout, **kw)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(map(str, cmd))} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def _venv(path: Path, *requirements: str) -> Path:
    """A fresh venv (no system site-packages, nothing of the test venv) with `requirements`."""
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(path)])
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, TORCH])
    _run([*pip, *requirements])
    return path / "bin"


def _clean_env(bindir: Path) -> dict:
    # Nothing of the test process (its PYTHONPATH carries the test plugin family) leaks in.
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": "", "VIRTUAL_ENV": str(bindir.parent)}


@pytest.fixture(scope="module")
def project_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", str(out), str(REPO)])
    return next(out.glob("nvfp4_aot-*.whl"))


@pytest.fixture(scope="module")
def build_stage(tmp_path_factory, project_wheel, small_ckpt) -> dict:
    root = tmp_path_factory.mktemp("build_stage")
    bindir = _venv(root / "venv", f"{project_wheel}[build]")
    out = root / "out"
    env = {**_clean_env(bindir), "EP_SIZE": "2", "JOBS": "2", "VERSION": "1.0.0"}
    r = _run(["sh", str(REPO / "docker" / "build-store.sh"), str(small_ckpt), NAME, str(out), *PLAN_ARGS], env=env, timeout=900)
    packed = json.loads((out / "pack.json").read_text())
    return {"out": out, "packed": packed, "bindir": bindir, "log": r.stderr}


def test_build_stage_plans_each_rank_compiles_verifies_packs(build_stage):
    out, packed = build_stage["out"], build_stage["packed"]
    assert sorted(p.name for p in (out / "work" / "manifests").iterdir()) == ["rank0.toml", "rank1.toml"]
    assert Path(packed["path"]).name == "nvfp4_aot_store_ship_test-1.0.0-py3-none-linux_x86_64.whl"
    assert "entries checked, 0 runs, 0 errors" in build_stage["log"]
    # the recorded cache-key is `nvfp4-build cache-key` of the planned manifests
    manifests = sorted(map(str, (out / "work" / "manifests").glob("*.toml")))
    env = _clean_env(build_stage["bindir"])
    assert _run(["nvfp4-build", "cache-key", *manifests], env=env).stdout.strip() == packed["cache_key"]


def test_serve_stage_runtime_only_install(build_stage, project_wheel, tmp_path):
    bindir = _venv(tmp_path / "venv", str(project_wheel), build_stage["packed"]["path"])
    env = {**_clean_env(bindir), "NVFP4_AOT_NO_BUILD": "1"}
    py = str(bindir / "python")
    listed = _run([py, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"], env=env).stdout
    installed = {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listed)}
    assert installed["nvfp4-aot-store-ship-test"] == "1.0.0" and installed["nvidia-cutlass-dsl-libs-cu13"] == "4.8.0"
    for absent in ("nvidia-cutlass-dsl", "quack-kernels", "click", "rich", "vllm"):
        assert absent not in installed, absent
    r = _run([py, "-c", "import cutlass"], env=env, check=False)
    assert r.returncode and "No module named 'cutlass'" in r.stderr
    # the image-build check, then with every module loaded (DSL runtime found without the env var)
    env.pop("NVFP4_AOT_DSL_RUNTIME", None)
    _run([py, "-m", "nvfp4_aot.runtime", "verify", NAME], env=env)
    res = json.loads(_run([py, "-m", "nvfp4_aot.runtime", "verify", NAME, "--load", "--json"], env=env).stdout)
    assert res["ok"] and res["loaded"] == res["entries"] > 0 and res["package"]["version"] == "1.0.0"
    code = f"""
import nvfp4_aot.runtime as rt
s = rt.open({NAME!r}, arch="sm_90a", load=False)
print(len(s.kernels), len(s.ops), s.root)
"""
    n_kernels, n_ops, root = _run([py, "-c", code], env=env).stdout.split()
    assert int(n_kernels) == res["entries"] and int(n_ops) > 0 and "site-packages/nvfp4_aot_store_ship_test/store" in root
    # the build CLI is absent there: a one-line error, not a traceback
    r = _run([str(bindir / "nvfp4-build"), "verify", NAME], env=env, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "nvfp4-aot[build]" in r.stderr
    # a tampered file inside the installed store is refused by open and by the runtime verify
    lib = next(Path(root, "entries").glob("*/kernel.so"))
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0x10
    lib.write_bytes(bytes(data))
    r = _run([py, "-m", "nvfp4_aot.runtime", "verify", NAME], env=env, check=False)
    assert r.returncode == 1 and "TamperedArtifactError" in r.stderr and lib.parent.name in r.stderr
    r = _run([py, "-c", code], env=env, check=False)
    assert r.returncode and "sha256 does not match" in r.stderr
