#!/usr/bin/env bash
# Device machine, repository root, carrying .gpu (scripts/stage_gpu.sh) and .gpu-base (scripts/stage_base.sh): the GPU
# suite, then issue 11's tables in one run on this card (tests/gpu/run.sh's benchmark list without start-up, host
# overhead and quantize: moe_layer, w4a16_ws at 128 / 512 tokens per expert, w4a16_grouped_prefill, w4a16_ours hot),
# w4a16_ours dense cold, and cfea70a's decode rows (scripts/base_run.sh). Logs in $OUT/tables.tgz (the device tool
# brings back few files). Session 34: about 5 minutes on an H100.
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
. scripts/gpu_env.sh || exit 1
T=$(mktemp -d)
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$T/device.log"
SKIP_DIAG=1 BENCH_BUDGET_S=0 OUT=$T timeout 280 bash tests/gpu/run.sh tests/gpu > "$T/suite.log" 2>&1
echo "suite rc=$?"; tail -1 "$T/gpu-tests.log"
S=.gpu/artifacts
timeout 60 python3 benchmarks/moe_layer.py --store $S > "$T/moe_layer.log" 2>&1; echo "moe_layer rc=$?"
timeout 60 python3 benchmarks/w4a16_ws.py --ours $S --quack $S --tokens 128 512 > "$T/w4a16_ws.log" 2>&1; echo "ws rc=$?"
timeout 60 python3 benchmarks/w4a16_grouped_prefill.py --quack $S --ours $S > "$T/prefill.log" 2>&1; echo "prefill rc=$?"
timeout 90 python3 benchmarks/w4a16_ours.py --store $S > "$T/ours.log" 2>&1; echo "ours rc=$?"
timeout 90 python3 benchmarks/w4a16_ours.py --store $S --skip-grouped --cold > "$T/ours_cold.log" 2>&1
echo "ours cold rc=$?"
[ -d .gpu-base ] && { timeout 120 bash scripts/base_run.sh > "$T/base.log" 2>&1; echo "base rc=$?"; }
tar -C "$T" -czf "$OUT/tables.tgz" .
