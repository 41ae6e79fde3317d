#!/usr/bin/env bash
# Device machine, from the repository root, carrying .gpu and .gpu-base (scripts/stage_base.sh), after
# `. scripts/gpu_env.sh`: issue 11's "today" (cfea70a) on this card, as its own benchmarks print it (their torch
# bf16 baselines in the same process): MoERunner at 1 / 4 / 16 / 64 tokens, then its dense w4a16_gemm at M = 1 .. 16
# hot and cold. Run ours in the same call (benchmarks/moe_layer.py, w4a16_ours.py --m 1 4 8 9 16 [--cold]).
set -uo pipefail
. scripts/base_env.sh || exit 1
cd .gpu-base/bench || exit 1
rc=0
PYTHONPATH=/tmp/basesite timeout 120 python3 moe_layer.py --store /tmp/basestore --tokens 1 4 16 64 || rc=1
PYTHONPATH=/tmp/basesite timeout 120 python3 w4a16_ours.py --store /tmp/basestore --experts || rc=1
exit $rc
