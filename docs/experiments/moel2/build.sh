#!/usr/bin/env bash
# CPU box, repository root, after `make artifacts`: .gpu-moe/NAME (git-ignored; carry it with .gpu), MoERunner's decode
# ops (scripts/runner_manifest.py, the layer benchmark's shape) with L2's t <= 5 row (split 'k', nt 1; served: warps 1,
# rb 1) at the given warps and rb, one store per SPECS entry NAME=WARPS:RB, each built from a copy of artifacts/ (only
# the new L2 variant compiles) and collected down to its manifest. About 1 minute.
#   session 33, call 18: SPECS="w1=1:1 w2=2:1 w4=4:1 w8=8:1" (the default)
# ROW=l1 varies L1's (6144 x 7168, served: warps 8, rb 1) row instead (session 34, staged).
#   session 34, call 2: SPECS="w1=1:1 w8=8:1 w1r2=1:2 w2r2=2:2 w4r2=4:2 w1r4=1:4" (fewer, longer CTAs): every rb 2 / 4
#   row 13-37% slower on L2 at 4 tokens, 8 warps a tie (docs/PERFORMANCE.md "session 34")
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
SPECS=${SPECS:-"w1=1:1 w2=2:1 w4=4:1 w8=8:1"}
grep -qx '/.gpu-moe/' .git/info/exclude || echo /.gpu-moe/ >> .git/info/exclude
rm -rf .gpu-moe && mkdir -p .gpu-moe/m
$PY scripts/runner_manifest.py --moe 7168,3072,48,6 --no-prefill --max-tokens 64 --name moe > .gpu-moe/moe.toml
$PY docs/experiments/l2pf/manifests.py "moe-${ROW:-l2}" .gpu-moe/moe.toml .gpu-moe/m $SPECS
for f in .gpu-moe/m/*.toml; do
  o=.gpu-moe/$(basename "$f" .toml)
  cp -r artifacts "$o"
  # the copy's default manifest defines L1 differently until gc drops it: compile warns, so its log is kept aside
  .venv/bin/nvfp4-build compile "$f" -o "$o" -j 2 > "$o.log" 2>&1 || { cat "$o.log"; exit 1; }
  .venv/bin/nvfp4-build gc "$f" -o "$o" > /dev/null 2>&1
  .venv/bin/nvfp4-build verify "$o"
  rm -rf "$o/tmp" "$o/.lock"
done
du -sh .gpu-moe
