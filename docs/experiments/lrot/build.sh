#!/usr/bin/env bash
# CPU box, from the repository root (main's code, no patch): Nvfp4Linear's ops in word order rot for the five dense
# DeepSeek-V4 shapes (scripts/runner_manifest.py --dense ..., one- and two-scale declarations: q_a+kv is two-scale),
# every M to 8192, as one store under .gpu-lrot/ (git-ignored; carry it with .gpu and .gpu-base). The staged .gpu
# store holds the same ops in word order nibble (Nvfp4Linear's default), the base of run.sh's comparison.
set -euo pipefail
cd "$(dirname "$0")/../../.."
rm -rf .gpu-lrot && mkdir -p .gpu-lrot
D="--dense 6144,7168 --dense 7168,3072 --dense 2048,7168 --dense 7168,2048 --dense 65536,1536"
.venv/bin/python scripts/runner_manifest.py $D --word-order rot --name lrot1 > .gpu-lrot/lrot1.toml
.venv/bin/python scripts/runner_manifest.py $D --two-scales --word-order rot --name lrot2 > .gpu-lrot/lrot2.toml
.venv/bin/nvfp4-build compile .gpu-lrot/lrot1.toml .gpu-lrot/lrot2.toml -o .gpu-lrot/store -j 2
rm -rf .gpu-lrot/store/tmp .gpu-lrot/store/.lock
du -sh .gpu-lrot
