#!/usr/bin/env bash
# Device machine, repository root, carrying .gpu (scripts/stage_gpu.sh) and .gpu-base (scripts/stage_base.sh): issue
# 11's parity bars, repeated so that a cell near 1.0x is read as a median, not one draw (session 35: one run put down
# M = 8192 hot at 0.97x and q_a+kv M = 8192 cold at 0.98x where session 34's run read >= 1.02x). REPS (default 3)
# rounds, each: MoERunner decode rows ours then cfea70a's (its own benchmark, scripts/base_env.sh's install), then the
# dense bar cells (M = 64 / 256 / 1024 / 4096 / 8192, five shapes; 512 and 2048 beside them, off the bar) hot and
# cold; summarize.py prints the medians.
# Logs in $OUT/repeat.tgz.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
. scripts/gpu_env.sh || exit 1
. scripts/base_env.sh || exit 1
T=$(mktemp -d); R=$PWD; rc=0
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$T/device.log"
for r in $(seq "${REPS:-3}"); do
  timeout 60 python3 benchmarks/moe_layer.py --store .gpu/artifacts --tokens 1 4 16 64 --decode-only \
    > "$T/ours_decode.$r.log" 2>&1 || rc=1
  (cd .gpu-base/bench && PYTHONPATH=/tmp/basesite timeout 60 python3 moe_layer.py --store /tmp/basestore \
    --tokens 1 4 16 64 > "$T/base_decode.$r.log" 2>&1) || rc=1
  for c in hot cold; do
    timeout 120 python3 benchmarks/w4a16_ours.py --store .gpu/artifacts --skip-grouped \
      --m 64 256 512 1024 2048 4096 8192 \
      $([ $c = cold ] && echo --cold) > "$T/dense_$c.$r.log" 2>&1 || rc=1
  done
done
python3 docs/experiments/close/summarize.py "$T" || rc=1
tar -C "$T" -czf "$OUT/repeat.tgz" .
exit $rc
