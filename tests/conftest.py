"""Shared fixtures. The tiny plugin family in tests/plugin_family is registered through the
nvfp4_aot.families entry-point group, as a third-party package would register one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PLUGIN_DIR = HERE / "plugin_family"
sys.path.insert(0, str(PLUGIN_DIR))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")]))

from nvfp4_aot.kernels import registry  # noqa: E402

registry.families.cache_clear()

SMALL_MANIFEST = """\
archs = ["sm_90a", "sm_100a"]

[[op]]
family = "test_scale"
problem = { n = [64, 128] }
buckets = [
  { m = [1, 16], tuning = { threads = 64 } },
  { m = [17, 4096] },
]
"""


def run_cli(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run nvfp4-build in a fresh process (the way users and CI run it)."""
    r = subprocess.run([sys.executable, "-m", "nvfp4_aot.build.cli", *args], capture_output=True, text=True, **kw)
    if check and r.returncode:
        raise AssertionError(f"nvfp4-build {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def build_and_verify(tmp_path: Path, manifest_text: str, built: int, jobs: int = 1) -> tuple[Path, Path]:
    """Compile `manifest_text` (as manifest "m") into tmp_path/artifacts through the CLI, assert that
    exactly `built` variants were built and none failed, `verify --json` the store; return (store
    root, manifest path)."""
    manifest = tmp_path / "m.toml"
    manifest.write_text(manifest_text)
    out = tmp_path / "artifacts"
    summary = json.loads(run_cli("compile", str(manifest), "-o", str(out), "--json", "-j", str(jobs)).stdout)["manifests"]["m"]
    assert len(summary["built"]) == built and not summary["failed"], summary
    r = run_cli("verify", str(out), "--json")
    assert json.loads(r.stdout)["ok"], r.stdout + r.stderr
    return out, manifest


def blocker(*more: str) -> str:
    """Python source that makes importing cutlass, nvfp4_aot.build and the packages `more` fail."""
    names = ("cutlass", "nvfp4_aot.build", *more)
    return f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name in {names!r} or name.startswith({tuple(n + "." for n in names)!r}):
            raise ImportError("runtime must not import " + name)
sys.meta_path.insert(0, Block())
"""


BLOCK_CUTLASS = blocker()


def run_without_cutlass(body: str, *more: str) -> subprocess.CompletedProcess:
    """Run `body` in a fresh interpreter in which importing cutlass, nvfp4_aot.build (and the
    packages `more`) fails."""
    return subprocess.run([sys.executable, "-c", blocker(*more) + body], capture_output=True, text=True)


def tamper_lib(store: Path, which: int = 0, at: int | None = None, mask: int = 1) -> str:
    """Flip the bits `mask` of byte `at` (negative: from the end; None: the middle) of the
    kernel.so of entry `which` (in key order) of `store`; return that entry's key."""
    from nvfp4_aot.runtime.store_format import ENTRIES_DIR, read_index

    key = sorted(read_index(store)["entries"])[which]
    lib = store / ENTRIES_DIR / key / "kernel.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2 if at is None else at] ^= mask
    lib.write_bytes(bytes(data))
    return key


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("manifests") / "small.toml"
    p.write_text(SMALL_MANIFEST)
    return p


@pytest.fixture(scope="session")
def built_store(tmp_path_factory, small_manifest) -> Path:
    """The small manifest compiled once for both archs; copy it before mutating."""
    out = tmp_path_factory.mktemp("store") / "artifacts"
    run_cli("compile", str(small_manifest), "-o", str(out), "-j", "2")
    return out


def check_grouped_reference(fam, p, inputs, want) -> dict:
    """A grouped W4A16 family's reference and check: `want` (its reference of make_inputs'
    `inputs`) equals a per-row float64 recomputation with each row's own expert weights (exactly
    dequantized) and alpha on the first and last real row of every expert; the check passes the
    reference rounded to bf16 and fails swapped experts' alphas and an unwritten (NaN) real row.
    Returns that passing output {"out": ...}."""
    import torch

    from nvfp4_aot.kernels.quack_w4a16.layout import dequantize

    off, cnt = inputs["offsets"].tolist(), inputs["counts"].tolist()
    for e in range(p.experts):
        for r in (off[e], off[e] + cnt[e] - 1) if cnt[e] else ():
            w = dequantize(inputs["w_q"][e], inputs["w_sf"][e]).double()
            row = (inputs["act"][r].double() @ w.T) * inputs["alpha"][e].double()
            assert torch.allclose(want["out"][r], row, rtol=1e-12, atol=0), (e, r)
    got = {"out": want["out"].to(torch.bfloat16)}
    assert fam.check(p, got, want) == []
    swapped = {**inputs, "alpha": inputs["alpha"].flip(0)}
    assert fam.check(p, {"out": fam.reference(p, swapped)["out"].to(torch.bfloat16)}, want)
    unwritten = got["out"].clone()
    unwritten[off[0]] = float("nan")
    assert fam.check(p, {"out": unwritten}, want)
    return got


def _copy(src: Path, tmp_path: Path) -> Path:
    """A test's own copy of a session-wide directory (under the same name), to mutate."""
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def store_copy(built_store, tmp_path) -> Path:
    return _copy(built_store, tmp_path)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run tests/gpu/run.sh on the device machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory) -> Path:
    """The synthetic NVFP4 checkpoint of tests/synthetic_ckpt.py; copy it before mutating."""
    from synthetic_ckpt import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("ckpt") / "small")


@pytest.fixture
def ckpt_copy(small_ckpt, tmp_path) -> Path:
    return _copy(small_ckpt, tmp_path)


@pytest.fixture(scope="session")
def dsv4_public(tmp_path_factory) -> dict[str, Path]:
    """The public DeepSeek-V4 NVFP4 header fixtures (scripts/make_dsv4_fixture.py --model pro /
    flash), written once per session (~2 s): {"pro": dir, "flash": dir}, named as published."""
    from synthetic_ckpt import fixture

    base = tmp_path_factory.mktemp("dsv4_public")
    out = {}
    for model in ("pro", "flash"):
        out[model] = base / fixture.MODELS[model][2]
        fixture.main([str(out[model]), "--model", model])
    return out


@pytest.fixture(scope="session")
def small_public(tmp_path_factory) -> Path:
    """tests/synthetic_ckpt.py's small checkpoint in the public DeepSeek-V4 layout (real data)."""
    from synthetic_ckpt import write_public_synthetic

    return write_public_synthetic(tmp_path_factory.mktemp("ckpt") / "small_public")


@pytest.fixture
def public_copy(small_public, tmp_path) -> Path:
    return _copy(small_public, tmp_path)
