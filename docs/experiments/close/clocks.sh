#!/usr/bin/env bash
# Device machine, repository root, carrying .gpu (scripts/stage_gpu.sh): clocks.py (down and gate+up at M = 8192, ours
# ws against torch bf16, alternated) with nvidia-smi sampling SM clock / power / throttle reasons every 50 ms.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
. scripts/gpu_env.sh || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader
S=$OUT/smi.csv
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv,noheader,nounits \
  -lms 50 > "$S" &
P=$!
sleep 1
timeout 300 python3 docs/experiments/close/clocks.py "$S" --store .gpu/artifacts "$@"; rc=$?
kill $P
exit $rc
