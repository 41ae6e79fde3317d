#!/usr/bin/env bash
# CPU box, from the repository root, on a tree with the patch applied (`git apply docs/experiments/bf/bf.patch`):
# the patched nvfp4-aot wheel and one store per (word order, bf) from bf.toml.in, under .gpu-bf/ (git-ignored: carry
# it with .gpu and .gpu-base). nibble_bf0 is the served kernel (the baseline run.sh compares every other store with).
set -euo pipefail
cd "$(dirname "$0")/../../.."
grep -q "bf: int = 0" kernels/w4a16/__init__.py || { echo "build.sh: apply docs/experiments/bf/bf.patch first" >&2; exit 2; }
rm -rf .gpu-bf && mkdir -p .gpu-bf/whl .gpu-bf/manifests
.venv/bin/python -m pip wheel -q --no-deps -w .gpu-bf/whl .
for v in nibble:0 nibble:1 nibble:2 rot:0 rot:1 rot:2; do
  wo=${v%:*}; bf=${v#*:}; name=${wo}_bf${bf}
  sed -e "s/WO/$wo/g" -e "s/BF/$bf/g" docs/experiments/bf/bf.toml.in > ".gpu-bf/manifests/$name.toml"
  .venv/bin/nvfp4-build compile ".gpu-bf/manifests/$name.toml" -o ".gpu-bf/$name" -j 2
  rm -rf ".gpu-bf/$name/tmp" ".gpu-bf/$name/.lock"
done
du -sh .gpu-bf
