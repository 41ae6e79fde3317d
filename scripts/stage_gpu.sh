#!/usr/bin/env bash
# Fill .gpu/ (git-ignored, carried to the device machine) with what tests/gpu/run.sh needs:
# this project's wheel, the tvm-ffi wheel + DSL runtime library, pytest wheels, the built
# artifact store, and the CPU-side JIT start-up measurement. Run after `make artifacts`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl
../shared/gpu/stage-gpu-run.sh .gpu "$PY"
"$PY" -m pip wheel -q --no-deps -w .gpu/whl .
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/whl \
  pytest==8.4.2 pluggy==1.6.0 iniconfig==2.1.0 packaging==25.0 safetensors==0.8.0
"$PY" -m nvfp4_aot.build.cli verify artifacts
cp -r artifacts .gpu/artifacts && rm -rf .gpu/artifacts/tmp .gpu/artifacts/.lock
[ -f .gpu-jit.json ] || "$PY" benchmarks/startup.py jit --arch sm_90a --json .gpu-jit.json
cp .gpu-jit.json .gpu/jit.json
du -sh .gpu
