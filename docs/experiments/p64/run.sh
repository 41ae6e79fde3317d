#!/usr/bin/env bash
# Device machine, repository root, carrying .gpu and .gpu-MODE (build.sh MODE): `run.sh MODE M...` runs that sweep
# hot (each cell timed HOT_REPEAT times, default 2) then cold L2 (COLD_REPEAT, default 3), every candidate checked
# against the float64 reference at the sweep's CHECK_MS among M (fresh NaN-poisoned output), torch bf16 and the
# baselines in the same run.
#   session 34: run.sh p64 33 48 64; run.sh lp 12 16 24 32 96 128
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
MODE=$1; shift
. scripts/gpu_env.sh || exit 1
L=$(realpath "$OUT")/$MODE.log
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$L"
cd benchmarks
export SWEEP_MANIFEST=sweep BASE_MANIFEST=sweep
SWEEP_REPEAT=${HOT_REPEAT:-2} timeout 200 python3 w4a16_ws_dense_sweep.py run "../.gpu-$MODE/store" "$@" \
  >> "$L" 2>&1; rc=$?
SWEEP_COLD=1 SWEEP_REPEAT=${COLD_REPEAT:-3} timeout 200 python3 w4a16_ws_dense_sweep.py run "../.gpu-$MODE/store" "$@" \
  >> "$L" 2>&1 || rc=1
cat "$L"
exit $rc
