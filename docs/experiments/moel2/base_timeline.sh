#!/usr/bin/env bash
# Device machine, repository root, carrying .gpu and .gpu-base (scripts/stage_base.sh): MoERunner per kernel at 4 / 16
# tokens, ours (benchmarks/moe_timeline.py) then cfea70a's (base_timeline.py here), on one card (session 34).
set -uo pipefail
. scripts/gpu_env.sh || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
timeout 90 python3 benchmarks/moe_timeline.py --store .gpu/artifacts --tokens 4 16 2>&1 | grep -v -i warn
. scripts/base_env.sh || exit 1
B=$PWD/docs/experiments/moel2/base_timeline.py
cd .gpu-base/bench && PYTHONPATH=/tmp/basesite timeout 90 python3 "$B" --store /tmp/basestore --tokens 4 16 2>&1 \
  | grep -v -i warn
