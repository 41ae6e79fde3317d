#!/usr/bin/env bash
# Device machine, from the repository root, carrying .gpu (scripts/stage_gpu.sh), .gpu-bf (build.sh) and .gpu-base
# (scripts/stage_base.sh): w4a16_gemm at M <= 16 with bf 0 / 1 / 2 in both word orders, hot then cold L2, every store
# checked against float64 first; then cfea70a's dense kernels in the same call (the bar: not slower than it).
set -uo pipefail
. scripts/gpu_env.sh || exit 1
rc=0
if [ -d .gpu-base ]; then bash scripts/base_run.sh || rc=1; fi  # before the patched wheel replaces the staged one
rm -rf /tmp/site/nvfp4_aot /tmp/site/nvfp4_aot-*.dist-info  # the patched build (bf is its knob)
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu-bf/whl/*.whl || exit 1
S=$(ls -d .gpu-bf/*_bf*)  # nibble_bf0 (the served kernel, every ratio's base) first
timeout 240 python3 benchmarks/w4a16_dense_ab.py $S --m 1 4 8 9 16 --reps 3 || rc=1
timeout 240 python3 benchmarks/w4a16_dense_ab.py $S --m 1 4 8 9 16 --reps 3 --cold || rc=1
exit $rc
