#!/usr/bin/env bash
# Device machine, from the repository root, carrying .gpu, .gpu-dec5 (build.sh) and .gpu-base (scripts/stage_base.sh):
# the MoE layer at 1 / 4 / 16 / 64 tokens with each store's L1 t <= 5 row, alternated twice (benchmarks/moe_layer.py
# --decode-only: MoERunner(prefill=False), its torch bf16 pipeline in the same process), then cfea70a's MoE decode on
# the same card (the bar: decode ratios not lower than today's).
set -uo pipefail
. scripts/gpu_env.sh || exit 1
rc=0
for round in 1 2; do
  for v in srv l1w8 l1w4; do
    echo "== $v, round $round"
    timeout 90 python3 benchmarks/moe_layer.py --store ".gpu-dec5/$v" --decode-only --tokens 1 4 16 64 || rc=1
  done
done
if [ -d .gpu-base ]; then bash scripts/base_run.sh || rc=1; fi
exit $rc
