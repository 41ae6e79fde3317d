# Sourced by the device scripts here, from the repository root: `. docs/experiments/exp_env.sh WHEEL_DIR LOG || exit 1`.
# scripts/gpu_env.sh (the staged .gpu), then WHEEL_DIR's nvfp4-aot wheel (the experiment's code) over the staged one
# (pip --target does not replace a package already there, so the old one goes first), and L=$OUT/LOG begun with the
# device's name, driver and max SM clock.
. scripts/gpu_env.sh || return 1
rm -rf /tmp/site/nvfp4_aot*
python3 -m pip install -q --no-index --no-deps --target /tmp/site "$1"/*.whl || return 1
L=$OUT/$2
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$L"
