#!/usr/bin/env sh
# The build stage of docker/Dockerfile, also run by tests/test_ship.py in a fresh venv:
# plan every EP rank's manifest from the checkpoint's headers -> compile -> verify -> pack.
# Needs `pip install 'nvfp4-aot[build]'` (CPU only). Writes the store wheel to OUT.
#
#   EP_SIZE=8 docker/build-store.sh CHECKPOINT NAME OUT [plan options: --arch, --capture-sizes, ...]
#
# Env: EP_SIZE (1), JOBS (nproc), VERSION (package version; default from the store digest),
#      WORK (scratch dir for manifests and the store; default OUT/work).
set -eu
[ $# -ge 3 ] || { echo "usage: $0 CHECKPOINT NAME OUT [plan options...]" >&2; exit 2; }
ckpt=$1 name=$2 out=$3
shift 3
ep=${EP_SIZE:-1}
work=${WORK:-$out/work}
mkdir -p "$out" "$work/manifests"
r=0
while [ "$r" -lt "$ep" ]; do
  nvfp4-build plan "$ckpt" --ep-size "$ep" --ep-rank "$r" "$@" -o "$work/manifests/rank$r.toml"
  r=$((r + 1))
done
nvfp4-build compile "$work"/manifests/rank*.toml -o "$work/store" -j "${JOBS:-$(nproc)}"
nvfp4-build verify "$work/store"
nvfp4-build pack "$work/store" --name "$name" ${VERSION:+--version "$VERSION"} -o "$out" --json > "$out/pack.json"
cat "$out/pack.json"
