# Sourced on the device machine, from the repository root (tests/gpu/run.sh does; so should hand-written device
# scripts): `. scripts/gpu_env.sh || exit 1`. What scripts/stage_gpu.sh put in .gpu/ becomes usable:
#   - the wheels of .gpu/whl (nvfp4-aot, tvm-ffi, pytest, safetensors, click) into /tmp/site, fresh each call (a warm
#     machine may hold another build of nvfp4_aot there, and pip --target does not replace it);
#   - the DSL runtime library, .gpu/lib/libcute_dsl_runtime.so.xz -> /tmp/lib;
#   - the staged store, .gpu/artifacts.tar.xz -> .gpu/artifacts (packed because the entries share most of their
#     bytes: ~47 MB of store travels as ~2.5 MB, far under the 64 MiB carry limit);
# and exports what the runtime, the GPU tests and the benchmarks read (NVFP4_AOT_GPU_STORE: the unpacked store).
rm -rf /tmp/site
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl || return 1
mkdir -p /tmp/lib && xz -dc .gpu/lib/libcute_dsl_runtime.so.xz > /tmp/lib/libcute_dsl_runtime.so || return 1
if [ -f .gpu/artifacts.tar.xz ]; then
  rm -rf .gpu/artifacts && tar -C .gpu -xJf .gpu/artifacts.tar.xz || return 1
fi
[ -f .gpu/artifacts/index.json ] || { echo "gpu_env.sh: no staged store in .gpu/ (run scripts/stage_gpu.sh on the CPU box)" >&2; return 1; }
export PYTHONPATH=/tmp/site NVFP4_AOT_DSL_RUNTIME=/tmp/lib/libcute_dsl_runtime.so
export NVFP4_AOT_GPU_STORE=.gpu/artifacts PYTHONUNBUFFERED=1
