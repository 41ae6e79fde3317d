#!/usr/bin/env bash
# Device machine, from the repository root, carrying .gpu, .gpu-lrot (docs/experiments/lrot/build.sh, on main) and
# .gpu-rq (build.sh): Nvfp4Linear's whole dense table (w4a16_ours.py --skip-grouped: M = 1 .. 8192, five shapes, one-
# and two-scale, torch bf16 in the same process) in word orders nibble (its default: quack above M = 16 where served),
# rot and rotq, hot (no argument) or cold (--cold): about 4 minutes each. One log, $OUT/rotq2.log.
set -uo pipefail
. docs/experiments/exp_env.sh .gpu-rq/whl rotq2.log || exit 1
rc=0
timeout 170 python3 benchmarks/w4a16_ours.py --store "$NVFP4_AOT_GPU_STORE" --skip-grouped "$@" >> $L 2>&1 || rc=1
timeout 170 python3 benchmarks/w4a16_ours.py --store .gpu-lrot/store --skip-grouped --word-order rot "$@" >> $L 2>&1 || rc=1
timeout 170 python3 benchmarks/w4a16_ours.py --store .gpu-rq/store --skip-grouped --word-order rotq "$@" >> $L 2>&1 || rc=1
echo "END rc=$rc" >> $L
exit $rc
