#!/usr/bin/env bash
# Device machine, from the repository root, carrying .gpu, .gpu-lrot (build.sh) and .gpu-base: Nvfp4Linear in word
# order rot against its default (nibble, the staged store) at every dense M, hot and cold, each with its torch bf16
# baseline in the same process; then cfea70a's M <= 16 kernels (scripts/base_run.sh). About 6 minutes: split the four
# w4a16_ours runs over two calls if the budget is short.
set -uo pipefail
. scripts/gpu_env.sh || exit 1
rc=0
for cold in "" --cold; do
  timeout 200 python3 benchmarks/w4a16_ours.py --store "$NVFP4_AOT_GPU_STORE" --skip-grouped $cold || rc=1
  timeout 200 python3 benchmarks/w4a16_ours.py --store .gpu-lrot/store --skip-grouped --word-order rot $cold || rc=1
done
if [ -d .gpu-base ]; then bash scripts/base_run.sh || rc=1; fi
exit $rc
