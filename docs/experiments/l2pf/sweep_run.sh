#!/usr/bin/env bash
# Device machine (session 32 call 2), carrying .gpu, .gpu-base, .gpu-l2 (build.sh), .gpu-sw2 (sweep_build.sh) and
# .gpu-rq (docs/experiments/rotq/build.sh): w4a16_gemm's M <= 16 tilings (warps x rb) in word orders rotq and nibble,
# hot then cold, each store's ops checked against float64 first; cfea70a's own M <= 16 benchmark (scripts/base_run.sh);
# with RUN2=1, then Nvfp4Linear in rotq over the whole dense table, hot and cold (rotq's landing rule (3): M >= 64
# >= 1.0x torch bf16). One log, $OUT/sweep.log; about 2.5 minutes (RUN2: 5).
set -uo pipefail
. docs/experiments/exp_env.sh .gpu-rq/whl sweep.log || exit 1
S=".gpu-l2/rq0 $(ls -d .gpu-sw2/w*) .gpu-l2/nb0 $(ls -d .gpu-sw2/nw*)"
rc=0
timeout 150 python3 benchmarks/w4a16_dense_ab.py $S --m 1 8 9 16 --reps 3 >> $L 2>&1 || rc=1
timeout 150 python3 benchmarks/w4a16_dense_ab.py $S --m 1 8 9 16 --reps 3 --cold >> $L 2>&1 || rc=1
timeout 100 bash scripts/base_run.sh >> $L 2>&1 || rc=1
if [ "${RUN2:-0}" = 1 ]; then
  for c in "" --cold; do
    timeout 120 python3 benchmarks/w4a16_ours.py --store .gpu-rq/store --skip-grouped --word-order rotq $c >> $L 2>&1 || rc=1
  done
fi
echo "END rc=$rc" >> $L
exit $rc
