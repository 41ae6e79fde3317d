# Sourced on the device machine, from the repository root, after `. scripts/gpu_env.sh`, carrying .gpu-base
# (scripts/stage_base.sh): `. scripts/base_env.sh || exit 1`. Installs issue 11's "today" (cfea70a) apart from this
# tree: its wheel with the staged dependency wheels into /tmp/basesite (run its code with PYTHONPATH=/tmp/basesite),
# its store unpacked to /tmp/basestore. Used by scripts/base_run.sh and docs/experiments/moel2/base_timeline.sh.
rm -rf /tmp/basesite /tmp/basestore
python3 -m pip install -q --no-index --no-deps --target /tmp/basesite $(ls .gpu/whl/*.whl | grep -v nvfp4_aot) \
  .gpu-base/whl/*.whl || return 1
tar -C /tmp -xJf .gpu-base/store.tar.xz || return 1
