"""One op, one definition per store (runtime/store_format.op_conflicts).

A store may hold several manifests, but when two define one op with different buckets,
open_store() refuses to guess and asks for manifest=... . Session 6's merge put MoERunner's quad8
glue into manifests/default.toml while tests/gpu/quad_check.toml still defined the same ops with
other buckets: the GPU staging store then refused to open and every GPU test errored (caught only
on the device). These tests keep that on the CPU box: the manifests that `make artifacts` and
scripts/stage_gpu.sh compile into one store agree, and the builder warns when it writes a store
that open_store() would refuse.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import SMALL_MANIFEST, run_cli
from nvfp4_aot.build.keys import variant_key
from nvfp4_aot.build.manifest import default_manifest_path, load_manifest
from nvfp4_aot.build.store_writer import manifest_table
from nvfp4_aot.runtime.errors import MissingVariantError
from nvfp4_aot.runtime.store import open_store
from nvfp4_aot.runtime.store_format import op_conflicts

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / "scripts" / "stage_gpu.sh"


def _tables(paths):
    tables = {}
    for p in paths:
        m = load_manifest(p)
        keys = {v.ident: variant_key(v) for v in m.variants()}
        tables[m.name] = manifest_table(m, keys)
    return tables


def _staged_manifests() -> list[Path]:
    """default.toml (`make artifacts`, copied into .gpu/artifacts) + every manifest stage_gpu.sh
    compiles into that same store (its `compile X -o .gpu/artifacts` lines)."""
    text = STAGE.read_text()
    found = re.findall(r"cli compile (\S+\.toml) -o \.gpu/artifacts", text)
    assert found, f"{STAGE}: no `compile ... -o .gpu/artifacts` line found (did the script change?)"
    return [default_manifest_path(), *(ROOT / f for f in found)]


@pytest.mark.parametrize("arch", ["sm_90a", "sm_100a"])
def test_gpu_staging_store_defines_each_op_once(arch):
    paths = _staged_manifests()
    assert len(paths) >= 4  # default + ws_check + quad_check + rot_check today
    assert op_conflicts(_tables(paths), arch) == []


def test_rot_check_manifest_is_what_its_script_writes():
    """tests/gpu/rot_check.toml is generated from the runners' declarations (word_order "rot"):
    a runner change must regenerate it, or the GPU test would open ops the store lacks."""
    import runpy

    from nvfp4_aot.build.manifest import dumps_manifest

    mod = runpy.run_path(str(ROOT / "tests" / "gpu" / "make_rot_check.py"), run_name="make_rot_check")
    assert (ROOT / "tests" / "gpu" / "rot_check.toml").read_text() == dumps_manifest(mod["manifest"]()), (
        "re-run: python tests/gpu/make_rot_check.py > tests/gpu/rot_check.toml")


def test_op_conflicts_names_op_and_both_manifests(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(SMALL_MANIFEST)
    b.write_text(SMALL_MANIFEST.replace("m = [1, 16]", "m = [1, 32]").replace("m = [17, 4096]", "m = [33, 4096]"))
    names = sorted(_tables([a])["a"].ops)
    assert len(names) == 2  # n = 64 and 128
    assert sorted(op_conflicts(_tables([a, b]), "sm_90a")) == [(n, "a", "b") for n in names]
    # identical definitions in two manifests are fine, and an arch the op is not built for is skipped
    assert op_conflicts(_tables([a, tmp_path / "a.toml"]), "sm_90a") == []
    assert op_conflicts(_tables([a, b]), "sm_120a") == []


def test_compile_warns_and_open_refuses_without_manifest(store_copy, tmp_path):
    # Same variants as the small manifest (nothing compiles), other bucket ranges.
    other = tmp_path / "other.toml"
    other.write_text(SMALL_MANIFEST.replace("m = [1, 16]", "m = [1, 32]").replace("m = [17, 4096]", "m = [33, 4096]"))
    r = run_cli("compile", str(other), "-o", str(store_copy))
    assert r.returncode == 0
    n64 = next(n for n in open_store(store_copy, arch="sm_90a", load=False, manifest="small").ops if n.endswith(".n=64"))
    warn = [line for line in r.stderr.splitlines() if line.startswith(f"warning: op {n64} (sm_90a)")]
    assert len(warn) == 1 and "'other'" in warn[0] and "'small'" in warn[0] and "manifest=" in warn[0], r.stderr
    summary = json.loads(run_cli("compile", str(other), "-o", str(store_copy), "--json").stdout)
    ops = sorted(open_store(store_copy, arch="sm_90a", load=False, manifest="small").ops)
    assert len(ops) == 2
    assert {(c["op"], c["arch"]) for c in summary["conflicts"]} == {(n, a) for n in ops for a in ("sm_90a", "sm_100a")}
    with pytest.raises(MissingVariantError, match=r"defined differently by manifests 'other' and 'small'.*manifest="):
        open_store(store_copy, arch="sm_90a", load=False)
    s = open_store(store_copy, arch="sm_90a", load=False, manifest="other")
    assert s.ops[n64].spec["manifest"] == "other"
    small = open_store(store_copy, arch="sm_90a", load=False, manifest="small")
    # M = 20 falls in other's first bucket (threads 64) and in small's second (the default threads)
    assert s.ops[n64].kernel_for(20).record["params"]["threads"] == 64
    assert small.ops[n64].kernel_for(20).record["params"]["threads"] != 64


def test_runner_manifest_script_plans_what_the_runners_open(tmp_path):
    """scripts/runner_manifest.py (A/B stores without a checkpoint): the ops MoERunner and Nvfp4Linear
    declare with --word-order rot, each once, bucketed up to the M each op sees at --max-tokens."""
    import subprocess
    import sys

    from nvfp4_aot.build.manifest import load_manifest
    from nvfp4_aot.runtime.linear import Nvfp4Linear
    from nvfp4_aot.runtime.moe import MoERunner
    from nvfp4_aot.runtime.store_format import op_id

    out = tmp_path / "ab.toml"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "runner_manifest.py"), "--moe", "768,512,8,2",
                        "--dense", "768,512", "--max-tokens", "1024", "--word-order", "rot", "--name", "ab"],
                       capture_output=True, text=True, check=True)
    out.write_text(r.stdout)
    m = load_manifest(out)
    decls = MoERunner.ops(768, 512, 8, 2, "sm_90a", max_tokens=1024, word_order="rot") + Nvfp4Linear.ops(
        768, 512, "sm_90a", word_order="rot")
    assert {o.name for o in m.ops} == {op_id(d.family, dict(d.problem)) for d in decls}
    for o in m.ops:
        cap = max(d.m_of(1024) for d in decls if op_id(d.family, dict(d.problem)) == o.name)
        assert o.buckets[0].lo == 1 and o.buckets[-1].hi == cap, o.name
        assert o.family not in ("quack_w4a16_grouped_gemm", "quack_w4a16_gemm")  # quack reads nibble only
