#!/usr/bin/env bash
# CPU box, from the repository root, with docs/experiments/l2pf/rotq_l2pf.patch applied (`git apply`; it holds rotq.patch
# too, so apply only this one): the l2pf A/B stores and this tree's wheel under .gpu-l2/ (git-ignored; carry it
# with .gpu and .gpu-base). One store per (word order, W4A16Params.l2pf), w4a16_gemm's M <= 16 buckets of the five
# dense shapes with DenseFamily.tile_table's tunings (manifests.py). About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../../.."
grep -q "l2pf" kernels/w4a16/__init__.py || { echo "apply docs/experiments/l2pf/rotq_l2pf.patch first" >&2; exit 1; }
PY=.venv/bin/python
rm -rf .gpu-l2 && mkdir -p .gpu-l2
SPECS=${SPECS:-"nb0=nibble:0 nb2=nibble:2 rq0=rotq:0 rq1=rotq:1 rq2=rotq:2 rq4=rotq:4"}
$PY docs/experiments/l2pf/manifests.py .gpu-l2/m $SPECS
for f in $(ls .gpu-l2/m/*.toml | grep -v /moe); do
  n=$(basename "$f" .toml)
  .venv/bin/nvfp4-build compile "$f" -o ".gpu-l2/$n" -j 2
  rm -rf ".gpu-l2/$n/tmp" ".gpu-l2/$n/.lock"
done
# MoERunner's decode path (the layer benchmark's shape) with l2pf on its split "k" grouped buckets (1 .. 240 rows)
$PY scripts/runner_manifest.py --moe 7168,3072,48,6 --no-prefill --max-tokens 64 --name moe0 > .gpu-l2/m/moe0.toml
for v in ${MOE_L2PF:-2 4}; do
  sed -E "s/(m = \[1, 240\], tuning = \{ warps = [0-9]+, rb = 1, nt = 1) \}/\1, l2pf = $v }/; s/name = \"moe0\"/name = \"moe$v\"/" \
    .gpu-l2/m/moe0.toml > .gpu-l2/m/moe$v.toml
  grep -q "l2pf = $v" .gpu-l2/m/moe$v.toml
done
for f in .gpu-l2/m/moe*.toml; do
  n=$(basename "$f" .toml)
  .venv/bin/nvfp4-build compile "$f" -o ".gpu-l2/moe/$n" -j 2
  rm -rf ".gpu-l2/moe/$n/tmp" ".gpu-l2/moe/$n/.lock"
done
$PY -m pip wheel -q --no-deps -w .gpu-l2/whl .
du -sh .gpu-l2
