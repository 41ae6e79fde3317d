#!/usr/bin/env bash
# CPU box, from the repository root (main's code, no patch): the stores of MoERunner's decode path at the MoE layer
# benchmark's shape (scripts/runner_manifest.py --moe 7168,3072,48,6 --no-prefill, word order rot, act order quad), one
# per variant of the grouped t <= 5 row (GroupedFamily.quad_slot_tiles' first row, m = [1, 240] at 48 experts) on L1
# (6144 x 7168, N < K), under .gpu-dec5/ (git-ignored; carry it with .gpu and .gpu-base): srv = served (1 warp per
# 16-row CTA), l1w8 / l1w4 = 8 / 4 warps splitting K. L2 keeps the served row in all three.
set -euo pipefail
cd "$(dirname "$0")/../../.."
rm -rf .gpu-dec5 && mkdir -p .gpu-dec5/manifests
.venv/bin/python scripts/runner_manifest.py --moe 7168,3072,48,6 --no-prefill --max-tokens 64 --name srv \
  > .gpu-dec5/manifests/srv.toml
for w in 8 4; do
  # the first bucket of the op whose problem starts "n = 6144" (L1): warps 1 -> w
  awk -v w="$w" '/^problem = \{ n = 6144,/ {l1 = 1} l1 && /m = \[1, 240\]/ {sub(/warps = 1,/, "warps = " w ","); l1 = 0} {print}' \
    .gpu-dec5/manifests/srv.toml | sed "s/name srv/name l1w$w/; s/\"srv (/\"l1w$w (/" > ".gpu-dec5/manifests/l1w$w.toml"
  grep -q "warps = $w, rb = 1, nt = 1" ".gpu-dec5/manifests/l1w$w.toml" || { echo "build.sh: L1's t <= 5 row not found" >&2; exit 1; }
done
for v in srv l1w8 l1w4; do
  .venv/bin/nvfp4-build compile ".gpu-dec5/manifests/$v.toml" -o ".gpu-dec5/$v" -j 2
  rm -rf ".gpu-dec5/$v/tmp" ".gpu-dec5/$v/.lock"
done
du -sh .gpu-dec5
