#!/usr/bin/env bash
# Device machine, repository root, carrying .gpu and .gpu-moe (docs/experiments/moel2/build.sh): MoERunner's decode
# row (t <= 5 slots per expert, split 'k', nt 1) that build.sh varied, L2 (7168 x 3072, quad, rot; served: warps 1,
# rb 1) or with ROW=l1 L1 (6144 x 7168; served: warps 8, rb 1), in each store build.sh made.
# Each store's grouped ops against the float64 reference (test_grouped_matches_reference), then the layer at
# 1 / 4 / 16 / 64 tokens (moe_layer.py --decode-only, torch bf16 in each run) twice in alternation, then each
# store's per-kernel timeline at 4 / 16 tokens (moe_timeline.py: L1's and L2's own times).
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
. scripts/gpu_env.sh || exit 1
L=$OUT/moel2.log
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$L"
rc=0
S=$(cd .gpu-moe && ls -d */ | tr -d / | grep -vx m)
for w in $S; do
  echo "== check $w" >> "$L"
  NVFP4_AOT_GPU_STORE=.gpu-moe/$w timeout 120 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/gpu/test_w4a16_gpu.py -k "grouped_matches_reference" 2>&1 | tail -2 >> "$L" || rc=1
done
for rep in 1 2; do
  for w in $S; do
    echo "== layer $w rep $rep" >> "$L"
    timeout 60 python3 benchmarks/moe_layer.py --store .gpu-moe/$w --tokens 1 4 16 64 --decode-only 2>&1 | tail -4 >> "$L" || rc=1
  done
done
for w in $S; do
  echo "== timeline $w" >> "$L"
  timeout 60 python3 benchmarks/moe_timeline.py --store .gpu-moe/$w --tokens 4 16 2>&1 | grep -v -i warn \
    | grep "^tokens\|W4A16" >> "$L" || rc=1
done
cat "$L"
exit $rc
