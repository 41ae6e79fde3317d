#!/usr/bin/env bash
# Device machine, from the repository root, carrying .gpu, .gpu-base and .gpu-l2 (build.sh): w4a16_dense_ab.py over
# the l2pf stores at M = 1 4 8 9 16, hot then cold (each store's op checked against float64 first), MoERunner's decode
# path with l2pf off / on (benchmarks/moe_layer.py --decode-only, 1 / 4 / 16 / 64 tokens), then cfea70a's own MoE decode
# and M <= 16 dense benchmarks (scripts/base_run.sh). One log, $OUT/l2pf.log; about 3 minutes.
# .gpu-ab instead of .gpu: a copy of .gpu with a stub store (any small store as .gpu-ab/artifacts), for a call made
# while scripts/stage_gpu.sh is rewriting .gpu.
set -uo pipefail
[ -d .gpu-ab ] && { rm -rf .gpu; cp -r .gpu-ab .gpu; }  # a small .gpu (lib, wheels, a stub store) when staging is under way
. docs/experiments/exp_env.sh .gpu-l2/whl l2pf.log || exit 1
S=$(ls -d .gpu-l2/*/ | grep -v -e /m/ -e /whl/ -e /moe/ | sort)
rc=0
timeout 200 python3 benchmarks/w4a16_dense_ab.py $S --m 1 4 8 9 16 --reps 3 >> $L 2>&1 || rc=1
timeout 200 python3 benchmarks/w4a16_dense_ab.py $S --m 1 4 8 9 16 --reps 3 --cold >> $L 2>&1 || rc=1
for s in .gpu-l2/moe/*/; do  # MoERunner's decode path, l2pf off / on (the layer benchmark, torch bf16 in each run)
  echo "== $s" >> $L
  timeout 90 python3 benchmarks/moe_layer.py --store $s --tokens 1 4 16 64 --decode-only >> $L 2>&1 || rc=1
done
timeout 150 bash scripts/base_run.sh >> $L 2>&1 || rc=1
echo "END rc=$rc" >> $L
exit $rc
