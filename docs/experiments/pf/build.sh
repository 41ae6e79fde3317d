#!/usr/bin/env bash
# CPU box, from the repository root, on a tree with the patch applied (`git apply docs/experiments/pf/pf.patch`):
# the patched nvfp4-aot wheel and one store per (word order, pf) from pf.toml.in, under .gpu-pf/ (git-ignored: carry
# it with .gpu). nibble_pf0 is the served kernel (the baseline run.sh compares every other store with).
set -euo pipefail
cd "$(dirname "$0")/../../.."
grep -q "pf: int = 0" kernels/w4a16/__init__.py || { echo "build.sh: apply docs/experiments/pf/pf.patch first" >&2; exit 2; }
rm -rf .gpu-pf && mkdir -p .gpu-pf/whl .gpu-pf/manifests
.venv/bin/python -m pip wheel -q --no-deps -w .gpu-pf/whl .
for v in nibble:0 nibble:1 nibble:2 rot:0 rot:1; do
  wo=${v%:*}; pf=${v#*:}; name=${wo}_pf${pf}
  sed -e "s/WO/$wo/g" -e "s/PF/$pf/g" docs/experiments/pf/pf.toml.in > ".gpu-pf/manifests/$name.toml"
  .venv/bin/nvfp4-build compile ".gpu-pf/manifests/$name.toml" -o ".gpu-pf/$name" -j 2
  rm -rf ".gpu-pf/$name/tmp" ".gpu-pf/$name/.lock"
done
du -sh .gpu-pf
