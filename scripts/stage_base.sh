#!/usr/bin/env bash
# Issue 11's "today" on the device, for the bars that compare with it ("M <= 16 not slower than today", "decode ratios
# not lower than today's"): the commit the issue was filed at (BASE, default cfea70a) built as it was, so that its
# kernels run in the same device call as ours (scripts/base_run.sh) on whichever card comes.
# CPU box, from the repository root, after `make .venv/.installed`; fills .gpu-base/ (git-ignored; carry it):
#   whl/       BASE's nvfp4-aot wheel (the device installs it alone into /tmp/basesite);
#   store.tar.xz  BASE's code compiling scripts/base/cfea70a.toml (its default manifest's decode ops, sm_90a);
#   bench/     BASE's benchmarks with scripts/base/bench.patch (down among the dense shapes, M = 1 .. 16, cold L2 too).
# BASE's code runs from a worktree in /tmp with this checkout's .venv packages minus its editable nvfp4-aot (whose
# entry points would otherwise register this checkout's families next to BASE's).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-cfea70a}
ROOT=$PWD W=/tmp/nvfp4-base
rm -rf "$W" "$W.env" .gpu-base && git worktree prune
git worktree add -q --detach "$W" "$BASE"
git -C "$W" apply "$ROOT/scripts/base/bench.patch"
mkdir -p "$W.env/pkgs" "$W.env/deps" .gpu-base/whl
SP=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for f in "$SP"/*; do case $(basename "$f") in *nvfp4_aot*|__editable__*) ;; *) ln -s "$f" "$W.env/deps/";; esac; done
"$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv --without-pip "$W.env/venv"
printf '%s\nimport site; site.addsitedir("%s")\n' "$W.env/pkgs" "$W.env/deps" \
  > "$("$W.env/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/base.pth"
(cd "$W" && "$ROOT/.venv/bin/python" -m pip wheel -q --no-deps -w "$ROOT/.gpu-base/whl" .)
"$W.env/venv/bin/python" -c "import zipfile, glob; zipfile.ZipFile(glob.glob('$ROOT/.gpu-base/whl/*.whl')[0]).extractall('$W.env/pkgs')"
# run from the worktree: this checkout's nvfp4_aot.egg-info must not be on sys.path
(cd "$W" && "$W.env/venv/bin/python" -m nvfp4_aot.build.cli compile "$ROOT/scripts/base/cfea70a.toml" -o "$W.env/store" -j 2 \
  && "$W.env/venv/bin/python" -m nvfp4_aot.build.cli verify "$W.env/store")
rm -rf "$W.env/store/tmp" "$W.env/store/.lock"
tar -C "$W.env" -cJf .gpu-base/store.tar.xz --transform 's,^store,basestore,' store
cp -r "$W/benchmarks" .gpu-base/bench
git worktree remove --force "$W"
du -sh .gpu-base
