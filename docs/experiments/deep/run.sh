#!/usr/bin/env bash
# Device machine, repository root, carrying .gpu (scripts/stage_gpu.sh) and .gpu-base (scripts/stage_base.sh):
# the GPU suite (session 33: what landed deep), then issue 11's decode rows on this card in one call:
# MoERunner at 1 / 4 / 16 / 64 tokens (ours, then cfea70a via scripts/base_run.sh, each with its torch bf16 baseline
# in the same process), then our dense w4a16_gemm at M = 1 .. 16 hot and cold (base_run.sh printed cfea70a's).
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
. scripts/gpu_env.sh || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader  # (tests/gpu/run.sh writes $OUT/device.txt)
SKIP_DIAG=1 BENCH_BUDGET_S=0 OUT=$OUT timeout 280 bash tests/gpu/run.sh tests/gpu > "$OUT/suite.log" 2>&1
echo "suite rc=$?"; tail -2 "$OUT/gpu-tests.log"
timeout 100 python3 benchmarks/moe_layer.py --store .gpu/artifacts --tokens 1 4 16 64 > "$OUT/moe.log" 2>&1; echo "moe rc=$?"
[ -d .gpu-base ] && { bash scripts/base_run.sh > "$OUT/base.log" 2>&1; echo "base rc=$?"; }
for c in "" --cold; do
  timeout 80 python3 benchmarks/w4a16_ours.py --store .gpu/artifacts --skip-grouped --m 1 4 8 9 16 $c \
    > "$OUT/dense${c:+_cold}.log" 2>&1; echo "dense$c rc=$?"
done
