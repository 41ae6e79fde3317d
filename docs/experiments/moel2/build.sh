#!/usr/bin/env bash
# CPU box, repository root, after `make artifacts`: .gpu-moe/wN (git-ignored; carry it with .gpu), MoERunner's decode
# ops (scripts/runner_manifest.py, the layer benchmark's shape) with L2's t <= 5 row at warps N = 1 (served) / 2 / 4 / 8,
# each built from a copy of artifacts/ (only the new L2 variant compiles) and collected down to its manifest. ~1 min.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
grep -qx '/.gpu-moe/' .git/info/exclude || echo /.gpu-moe/ >> .git/info/exclude
rm -rf .gpu-moe && mkdir -p .gpu-moe/m
$PY scripts/runner_manifest.py --moe 7168,3072,48,6 --no-prefill --max-tokens 64 --name moe > .gpu-moe/moe.toml
$PY - <<'PYEOF'
import sys, tomllib
sys.path.insert(0, "docs/experiments/l2pf")
from manifests import render
src = tomllib.load(open(".gpu-moe/moe.toml", "rb"))
for w in (1, 2, 4, 8):
    ops = []
    for op in src["op"]:
        b0 = op["buckets"][0]
        if op["family"] == "w4a16_grouped_gemm" and op["problem"]["n"] == 7168:  # L2 (down)
            assert b0["tuning"] == {"warps": 1, "rb": 1, "nt": 1}, b0  # the served row this varies
            op = {**op, "buckets": [{**b0, "tuning": {**b0["tuning"], "warps": w}}, *op["buckets"][1:]]}
        ops.append(op)
    open(f".gpu-moe/m/w{w}.toml", "w").write(render(src["archs"], ops))
PYEOF
for w in 1 2 4 8; do
  o=.gpu-moe/w$w
  cp -r artifacts "$o"
  # the copy's default manifest defines L1 differently until gc drops it: compile warns, so its log is kept aside
  .venv/bin/nvfp4-build compile .gpu-moe/m/w$w.toml -o "$o" -j 2 > "$o.log" 2>&1 || { cat "$o.log"; exit 1; }
  .venv/bin/nvfp4-build gc .gpu-moe/m/w$w.toml -o "$o" > /dev/null 2>&1
  .venv/bin/nvfp4-build verify "$o"
  rm -rf "$o/tmp" "$o/.lock"
done
du -sh .gpu-moe
