#!/usr/bin/env bash
# Device machine, from the repository root, carrying .gpu (scripts/stage_gpu.sh) and .gpu-pf (build.sh):
# w4a16_gemm at M <= 16, the served tunings with pf 0 / 1 / 2 in word order nibble and pf 0 / 1 in rot, hot then cold L2.
set -uo pipefail
. scripts/gpu_env.sh || exit 1
rm -rf /tmp/site/nvfp4_aot /tmp/site/nvfp4_aot-*.dist-info  # the patched build replaces the staged one (pf is its knob)
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu-pf/whl/*.whl || exit 1
S=$(ls -d .gpu-pf/*_pf*)  # build.sh's stores, nibble_pf0 (the served kernel, every ratio's base) first
rc=0
timeout 240 python3 benchmarks/w4a16_dense_ab.py $S --m 1 4 8 9 16 --reps 3 || rc=1
timeout 240 python3 benchmarks/w4a16_dense_ab.py $S --m 1 4 8 9 16 --reps 3 --cold || rc=1
exit $rc
