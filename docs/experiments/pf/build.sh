#!/usr/bin/env bash
# CPU box, from the repository root, on a tree with the patch applied (`git apply docs/experiments/pf/pf.patch`):
# the patched nvfp4-aot wheel and one store per manifest of this folder, under .gpu-pf/ (git-ignored: carry it with .gpu).
set -euo pipefail
cd "$(dirname "$0")/../../.."
grep -q "pf: int = 0" kernels/w4a16/__init__.py || { echo "build.sh: apply docs/experiments/pf/pf.patch first" >&2; exit 2; }
rm -rf .gpu-pf && mkdir -p .gpu-pf/whl
.venv/bin/python -m pip wheel -q --no-deps -w .gpu-pf/whl .
for m in docs/experiments/pf/*.toml; do
  .venv/bin/nvfp4-build compile "$m" -o ".gpu-pf/$(basename "$m" .toml)" -j 2
  rm -rf ".gpu-pf/$(basename "$m" .toml)/tmp" ".gpu-pf/$(basename "$m" .toml)/.lock"
done
du -sh .gpu-pf
