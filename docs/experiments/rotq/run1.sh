#!/usr/bin/env bash
# Device machine, from the repository root, carrying .gpu (main's staging: the nibble base), .gpu-base (cfea70a) and
# .gpu-rq (build.sh). One log, $OUT/rotq1.log (about 6 minutes):
#   1. every rotq op of both stores against float64 (tests/gpu/test_w4a16*_gpu.py dense tests: fresh random data,
#      NaN-poisoned outputs, DENSE_MS = 1 .. 8192 within each op's range);
#   2. w4a16_dense_ab.py at M = 1 4 8 9 16, hot then cold: the served nibble kernels (.gpu) | rotq | rotq, wpf flipped;
#   3. cfea70a's own M <= 16 dense benchmark and MoE decode (scripts/base_run.sh), the "today".
set -uo pipefail
. docs/experiments/exp_env.sh .gpu-rq/whl rotq1.log || exit 1
rc=0
NVFP4_AOT_GPU_STORE=.gpu-rq/store timeout 150 python3 -m pytest -q -p no:cacheprovider \
  tests/gpu/test_w4a16_gpu.py::test_dense_matches_reference tests/gpu/test_w4a16_ws_gpu.py::test_dense_matches_reference >> $L 2>&1 || rc=1
# alt holds w4a16_gemm ops only
NVFP4_AOT_GPU_STORE=.gpu-rq/alt timeout 100 python3 -m pytest -q -p no:cacheprovider \
  tests/gpu/test_w4a16_gpu.py::test_dense_matches_reference >> $L 2>&1 || rc=1
echo "pytest rc=$rc" >> $L
timeout 120 python3 benchmarks/w4a16_dense_ab.py .gpu/artifacts .gpu-rq/store .gpu-rq/alt --m 1 4 8 9 16 --reps 3 >> $L 2>&1 || rc=1
timeout 120 python3 benchmarks/w4a16_dense_ab.py .gpu/artifacts .gpu-rq/store .gpu-rq/alt --m 1 4 8 9 16 --reps 3 --cold >> $L 2>&1 || rc=1
timeout 150 bash scripts/base_run.sh >> $L 2>&1 || rc=1
echo "END rc=$rc" >> $L
exit $rc
