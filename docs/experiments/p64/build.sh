#!/usr/bin/env bash
# CPU box, repository root, after `make artifacts`: `build.sh MODE` fills .gpu-MODE/ (git-ignored; carry it with .gpu)
# with the dense ws sweep store of one mode of benchmarks/w4a16_ws_dense_sweep.py (`manifest --MODE`: candidates next
# to the served tilings, its baselines' ops), built from a copy of artifacts/ (only what artifacts/ lacks compiles)
# and collected down to the sweep manifest (.gpu-MODE/sweep.toml). A minute or two.
#   session 34 (the directory is named after its first mode): p64 (issue 11's M = 33..64 parity cells), lp (lean /
#   8-stage twins of the small token tiles)
set -euo pipefail
cd "$(dirname "$0")/../../.."
MODE=$1 D=.gpu-$1
rm -rf "$D" && mkdir -p "$D"
(cd benchmarks && ../.venv/bin/python w4a16_ws_dense_sweep.py manifest "--$MODE") > "$D/sweep.toml"
cp -r artifacts "$D/store"
.venv/bin/nvfp4-build compile "$D/sweep.toml" -o "$D/store" -j 2 > "$D/build.log" 2>&1 \
  || { cat "$D/build.log"; exit 1; }
.venv/bin/nvfp4-build gc "$D/sweep.toml" -o "$D/store" > /dev/null
.venv/bin/nvfp4-build verify "$D/store"
rm -rf "$D/store/tmp" "$D/store/.lock" "$D/build.log"
du -sh "$D"
