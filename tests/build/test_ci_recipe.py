"""The CI recipe's build steps (scripts/ci_store.sh, called by .github/workflows/build-store.yml):
a 2-arch x 2-shard matrix, a re-run on a restored cache, merge -> verify -> pack."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from nvfp4_aot.runtime.store_format import read_index

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ci_store.sh"
WORKFLOW = REPO / ".github" / "workflows" / "build-store.yml"


def _ci(*args, manifests, cwd):
    env = {**os.environ, "MANIFESTS": str(manifests), "JOBS": "2", "VERSION": "1.0.0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    r = subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
    return r


def test_workflow_calls_the_tested_steps():
    wf = WORKFLOW.read_text()
    assert "scripts/ci_store.sh key" in wf and "scripts/ci_store.sh merge store" in wf
    assert "scripts/ci_store.sh shard ${{ matrix.arch }} ${{ matrix.shard }}/${{ env.SHARDS }} shard" in wf
    shards = int(re.search(r"^\s+SHARDS: (\d+)", wf, re.M).group(1))
    assert re.search(r"shard: \[(.*)\]", wf).group(1) == ", ".join(map(str, range(1, shards + 1)))
    assert "key: store-${{ matrix.arch }}-${{ matrix.shard }}of${{ env.SHARDS }}-${{ needs.key.outputs.cache-key }}" in wf


def test_matrix_merge_pack_equals_one_build(tmp_path, small_manifest, built_store):
    key = _ci("key", manifests=small_manifest, cwd=tmp_path).stdout.strip()
    assert key.startswith("nvfp4-aot-")
    dirs = []
    for arch in ("sm_90a", "sm_100a"):
        for i in (1, 2):
            d = tmp_path / f"shard-{arch}-{i}"
            _ci("shard", arch, f"{i}/2", str(d), manifests=small_manifest, cwd=tmp_path)
            assert {r["arch"] for r in read_index(d)["entries"].values()} <= {arch}
            dirs.append(d)
    # a job whose cache was restored compiles nothing
    _ci("shard", "sm_90a", "1/2", str(dirs[0]), manifests=small_manifest, cwd=tmp_path)
    assert json.loads((tmp_path / "shard-sm_90a-1.compile.json").read_text())["manifests"]["small"]["built"] == []
    r = _ci("merge", "store", "small", "dist", *map(str, dirs), manifests=small_manifest, cwd=tmp_path)
    assert set(read_index(tmp_path / "store")["entries"]) == set(read_index(built_store)["entries"])
    packs = [json.loads(x) for x in re.findall(r"^\{.*?^\}", r.stdout, re.M | re.S)]
    assert [p["format"] for p in packs] == ["wheel", "tar"] and {p["cache_key"] for p in packs} == {key}
    assert all((tmp_path / p["path"]).is_file() for p in packs)
