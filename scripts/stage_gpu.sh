#!/usr/bin/env bash
# Fill .gpu/ (git-ignored, carried to the device machine) with what tests/gpu/run.sh needs:
# this project's wheel, the tvm-ffi wheel + DSL runtime library, pytest wheels, the built
# artifact store (packed: .gpu/artifacts.tar.xz; scripts/gpu_env.sh unpacks it there), and the
# CPU-side JIT start-up measurement. Run after `make artifacts`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl
../shared/gpu/stage-gpu-run.sh .gpu "$PY"
"$PY" -m pip wheel -q --no-deps -w .gpu/whl .
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/whl \
  pytest==8.4.2 pluggy==1.6.0 iniconfig==2.1.0 packaging==25.0 safetensors==0.8.0 click==8.1.8  # click: `verify --run` there
"$PY" -m nvfp4_aot.build.cli verify artifacts
cp -r artifacts .gpu/artifacts && rm -rf .gpu/artifacts/tmp .gpu/artifacts/.lock
# Optional families the default manifest does not hold but the GPU tests check (w4a16_ws).
"$PY" -m nvfp4_aot.build.cli compile tests/gpu/ws_check.toml -o .gpu/artifacts
# Small act_order = "quad" variants (w4a16 split k / n, permute, silu): test_w4a16_gpu.py runs
# every w4a16 op of the store, so these K-tail / several-K-step shapes get checked too.
"$PY" -m nvfp4_aot.build.cli compile tests/gpu/quad_check.toml -o .gpu/artifacts
# MoERunner and Nvfp4Linear with word_order "rot" at small shapes (tests/gpu/test_rot_runners_gpu.py; the
# manifest is written from the runners' declarations by tests/gpu/make_rot_check.py).
"$PY" -m nvfp4_aot.build.cli compile tests/gpu/rot_check.toml -o .gpu/artifacts
# Only what these four manifests reference travels (artifacts/ keeps entries of older keys: the carry limit).
"$PY" -m nvfp4_aot.build.cli gc manifests/default.toml tests/gpu/ws_check.toml tests/gpu/quad_check.toml \
  tests/gpu/rot_check.toml -o .gpu/artifacts
rm -rf .gpu/artifacts/tmp .gpu/artifacts/.lock
# The installed-store check: tests/gpu/ship_check.toml's variants (already in artifacts/, so
# nothing compiles) as a store of their own, packed as nvfp4-aot-store-gpu-check into .gpu/ship/.
rm -rf .gpu/ship-store && cp -r .gpu/artifacts .gpu/ship-store
"$PY" -m nvfp4_aot.build.cli compile tests/gpu/ship_check.toml -o .gpu/ship-store
"$PY" -m nvfp4_aot.build.cli gc tests/gpu/ship_check.toml -o .gpu/ship-store
"$PY" -m nvfp4_aot.build.cli pack .gpu/ship-store --name gpu-check --version 1.0.0 -o .gpu/ship
rm -rf .gpu/ship-store
# The store travels packed (scripts/gpu_env.sh unpacks it on the device machine): its entries share most of their bytes.
tar -C .gpu -cf - artifacts | xz -T0 -6 > .gpu/artifacts.tar.xz && rm -rf .gpu/artifacts
# The JIT start-up sweep measured on the CPU box (committed; re-measure: benchmarks/startup.py jit --json ...).
cp "${JIT_JSON:-docs/startup_jit_cpu.json}" .gpu/jit.json
du -sh .gpu
