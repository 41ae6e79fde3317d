#!/usr/bin/env bash
# CPU box, from the repository root (rotq and l2pf are main's since session 32; before, a patch): the l2pf A/B
# stores and this tree's wheel under .gpu-l2/ (git-ignored; carry it with .gpu and .gpu-base). One store per (word order, W4A16Params.l2pf), w4a16_gemm's M <= 16 buckets of the five
# dense shapes with DenseFamily.tile_table's tunings (manifests.py). About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
rm -rf .gpu-l2 && mkdir -p .gpu-l2
SPECS=${SPECS:-"nb0=nibble:0 nb2=nibble:2 rq0=rotq:0 rq1=rotq:1 rq2=rotq:2 rq4=rotq:4"}
$PY docs/experiments/l2pf/manifests.py dense .gpu-l2/m $SPECS
# MoERunner's decode path (the layer benchmark's shape) with l2pf on its split "k" grouped buckets (1 .. 240 rows)
$PY scripts/runner_manifest.py --moe 7168,3072,48,6 --no-prefill --max-tokens 64 --name moe > .gpu-l2/moe.toml
$PY docs/experiments/l2pf/manifests.py moe .gpu-l2/moe.toml .gpu-l2/m moe0=0 moe2=2 moe4=4
for f in .gpu-l2/m/*.toml; do  # dense stores in .gpu-l2/NAME, MoE ones in .gpu-l2/moe/NAME (run.sh tells them apart)
  n=$(basename "$f" .toml)
  o=.gpu-l2/$n; [[ $n == moe* ]] && o=.gpu-l2/moe/$n
  .venv/bin/nvfp4-build compile "$f" -o "$o" -j 2
  rm -rf "$o/tmp" "$o/.lock"
done
$PY -m pip wheel -q --no-deps -w .gpu-l2/whl .
du -sh .gpu-l2
