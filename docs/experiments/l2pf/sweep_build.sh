#!/usr/bin/env bash
# CPU box, from the repository root (session 32): one store per w4a16_gemm M <= 16 tiling under .gpu-sw2/ (git-ignored):
# rotq at warps 4 / 8 x rb 1 / 2 / 4 (w*), nibble at warps 4 / 8 x rb 1 / 2 (nw*), the other knobs as
# DenseFamily.tile_table gives them. About 1 minute. sweep_run.sh measures them.
set -euo pipefail
cd "$(dirname "$0")/../../.."
rm -rf .gpu-sw2 && mkdir -p .gpu-sw2/m
S=""
for w in 4 8; do for r in 1 2 4; do S="$S w${w}r$r=rotq:0:warps=$w,rb=$r"; done; done
for w in 4 8; do for r in 1 2; do S="$S nw${w}r$r=nibble:0:warps=$w,rb=$r"; done; done
.venv/bin/python docs/experiments/l2pf/manifests.py dense .gpu-sw2/m $S
for f in .gpu-sw2/m/*.toml; do
  n=$(basename "$f" .toml)
  .venv/bin/nvfp4-build compile "$f" -o .gpu-sw2/$n -j 2
  rm -rf .gpu-sw2/$n/tmp .gpu-sw2/$n/.lock
done
