#!/usr/bin/env bash
# CPU box, from the repository root (word order rotq is main's since session 32; before, a patch): the experiment's
# wheel and stores under .gpu-rq/ (git-ignored; carry it with .gpu, .gpu-base and, for run2.sh, .gpu-lrot):
#   store  Nvfp4Linear(word_order="rotq")'s ops for the five dense DeepSeek-V4 shapes (scripts/runner_manifest.py, one-
#          and two-scale declarations), every M to 8192: w4a16_gemm up to 16 (DenseFamily.kq_* tables), w4a16_ws above;
#   alt    the same w4a16_gemm ops with wpf flipped at M <= 16 (on where the tables leave it off, off where on);
#   whl    this tree's wheel (run1.sh / run2.sh install it over the staged one).
# About 1 minute, 7 MB. The staged .gpu (scripts/stage_gpu.sh) is the nibble base.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
rm -rf .gpu-rq && mkdir -p .gpu-rq
D="--dense 6144,7168 --dense 7168,3072 --dense 2048,7168 --dense 7168,2048 --dense 65536,1536"
$PY scripts/runner_manifest.py $D --word-order rotq --name rq1 > .gpu-rq/rq1.toml
$PY scripts/runner_manifest.py $D --two-scales --word-order rotq --name rq2 > .gpu-rq/rq2.toml
$PY - <<'PYEOF'
import tomllib
m = tomllib.load(open(".gpu-rq/rq1.toml", "rb"))
out = ['archs = ["sm_90a"]', ""]
for op in m["op"]:
    if op["family"] != "w4a16_gemm":
        continue
    pr = op["problem"]
    out += ['[[op]]', 'family = "w4a16_gemm"',
            'problem = { n = %d, k = %d, word_order = "rotq", act_order = "natural" }' % (pr["n"], pr["k"]), "buckets = ["]
    for b in op["buckets"]:
        t = dict(b["tuning"])
        if b["m"][1] <= 16:
            t["wpf"] = 0 if t.get("wpf") else 1
        out.append("  { m = [%d, %d], tuning = { %s } }," % (*b["m"], ", ".join(f"{k} = {v}" for k, v in t.items())))
    out.append("]\n")
open(".gpu-rq/alt.toml", "w").write("\n".join(out))
PYEOF
.venv/bin/nvfp4-build compile .gpu-rq/rq1.toml .gpu-rq/rq2.toml -o .gpu-rq/store -j 2
.venv/bin/nvfp4-build compile .gpu-rq/alt.toml -o .gpu-rq/alt -j 2
rm -rf .gpu-rq/store/tmp .gpu-rq/store/.lock .gpu-rq/alt/tmp .gpu-rq/alt/.lock
$PY -m pip wheel -q --no-deps -w .gpu-rq/whl .
du -sh .gpu-rq
