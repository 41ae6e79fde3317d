#!/usr/bin/env bash
# Every GPU check in one call, on the device machine (Hopper), from the repo root, after
# scripts/stage_gpu.sh filled .gpu/ on the CPU box. Logs go to $OUT (or ./gpu-out).
# Usage: tests/gpu/run.sh [pytest selection, default tests/gpu]; SKIP_DIAG=1 skips the per-kernel smoke,
# BENCH_BUDGET_S=0 the benchmarks (a quick re-check of the tests after a rebuild), SKIP_TESTS=1 the tests and the
# installed-store check (`SKIP_DIAG=1 SKIP_TESTS=1 tests/gpu/run.sh`: only the benchmarks, i.e. every table of
# docs/PERFORMANCE.md's issue-11 sections in one run on one card, when the kernels have not changed since a suite)
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
. scripts/gpu_env.sh || exit 1  # wheels, DSL runtime library, the staged store unpacked; NVFP4_AOT_GPU_STORE
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
rc=0
echo "== diagnostic smoke (step by step)"
[ "${SKIP_DIAG:-0}" = 1 ] || timeout 300 python3 scripts/gpu_diag.py .gpu/artifacts ${DIAG_PICKS:-k=7168} 2>&1 | tee "$OUT/diag.log"; rc=$((rc | PIPESTATUS[0]))
[ "${DIAG_ONLY:-0}" = 1 ] && exit $rc
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  python3 -m pytest --timeout 240 -m gpu ${@:-tests/gpu} -v -rA -p no:cacheprovider 2>&1 | tee "$OUT/gpu-tests.log"; rc=$((rc | PIPESTATUS[0]))
  echo "== installed store package: pip install nvfp4-aot-store-gpu-check, open('gpu-check') + prime, verify gpu-check --run"
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/ship/nvfp4_aot_store_gpu_check-*.whl 2>&1 | tee "$OUT/installed-store.log"
  timeout 120 sh -c 'python3 -m nvfp4_aot.runtime verify gpu-check --load \
    && python3 -c "import torch, nvfp4_aot.runtime as rt; s = rt.open(\"gpu-check\"); n = s.prime(); print(f\"open(gpu-check): {s.root}: {len(s.kernels)} kernels, {n} primed on {torch.cuda.get_device_name()}\")" \
    && python3 -m nvfp4_aot.build.cli verify gpu-check --run' 2>&1 | tee -a "$OUT/installed-store.log"; rc=$((rc | PIPESTATUS[0]))
fi
# SASS is inspected on the CPU box (scripts/dump_sass.py with nvdisasm >= 13.4 from pip):
# the GPU machine's CUDA 13.0 cuobjdump/nvdisasm cannot read the DSL's CUDA 13.4 cubins.
# Benchmarks, most-cited first; BENCH_BUDGET_S (seconds since start) skips the rest once spent,
# so a device call with a hard limit still returns every test result and the first benchmarks.
for b in "startup.py aot --store .gpu/artifacts --jit-json .gpu/jit.json --json $OUT/startup_aot.json" \
         "moe_layer.py --store .gpu/artifacts" \
         "w4a16_ws.py --ours .gpu/artifacts --quack .gpu/artifacts --tokens 128 512" \
         "w4a16_grouped_prefill.py --quack .gpu/artifacts --ours .gpu/artifacts" \
         "w4a16_ours.py --store .gpu/artifacts" \
         "w4a16_ours.py --store .gpu/artifacts --skip-grouped --cold" \
         "host_overhead.py --store .gpu/artifacts" \
         "quantize_bandwidth.py --store .gpu/artifacts --json $OUT/quantize_bw.json"; do
  if [ "$SECONDS" -gt "${BENCH_BUDGET_S:-100000}" ]; then echo "== skipped (BENCH_BUDGET_S): benchmarks/$b" | tee -a "$OUT/bench.log"; continue; fi
  echo "== benchmarks/$b (+${SECONDS}s)"; timeout 240 python3 benchmarks/$b 2>&1 | tee -a "$OUT/bench.log"; rc=$((rc | PIPESTATUS[0]))
done
exit $rc
