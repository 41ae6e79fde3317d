#!/usr/bin/env sh
# The build steps of the CI recipe (.github/workflows/build-store.yml, docs/CI.md), in one place
# so that tests/build/test_ci_recipe.py runs exactly what the workflow runs. Needs nvfp4-aot[build].
# MANIFESTS: space-separated manifest files (default: the packaged default manifest).
#
#   ci_store.sh key                          print the cache-key of MANIFESTS
#   ci_store.sh shard ARCH I/N DIR           compile shard I/N of ARCH's variants into DIR (a restored
#                                            cache of DIR makes it incremental), drop entries MANIFESTS
#                                            no longer reference, verify
#   ci_store.sh merge OUT NAME DIST DIR...   merge the shard stores DIR... into OUT, verify, pack the
#                                            wheel and the tarball of OUT as NAME into DIST
set -eu
cmd=${1:?usage: ci_store.sh key | shard ARCH I/N DIR | merge OUT NAME DIST DIR...}
shift
# shellcheck disable=SC2086  # MANIFESTS is a list
case "$cmd" in
  key)
    nvfp4-build cache-key ${MANIFESTS:-} ;;
  shard)
    arch=$1 shard=$2 dir=$3
    nvfp4-build compile ${MANIFESTS:-} -o "$dir" --arch "$arch" --shard "$shard" -j "${JOBS:-$(nproc)}" --json > "$dir.compile.json"
    nvfp4-build gc ${MANIFESTS:-} -o "$dir" --json > "$dir.gc.json"
    nvfp4-build verify "$dir" ;;
  merge)
    out=$1 name=$2 dist=$3
    shift 3
    nvfp4-build merge "$@" -o "$out" --json > "$out.merge.json"
    nvfp4-build verify "$out"
    nvfp4-build pack "$out" --name "$name" ${VERSION:+--version "$VERSION"} -o "$dist" --json
    nvfp4-build pack "$out" --name "$name" ${VERSION:+--version "$VERSION"} --format tar -o "$dist" --json ;;
  *)
    echo "ci_store.sh: unknown command $cmd" >&2; exit 2 ;;
esac
