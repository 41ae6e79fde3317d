#!/usr/bin/env bash
# Build one small store per w4a16_grouped_gemm tuning under ${1:-.gpu/sweep_w4a16} for
# benchmarks/w4a16_sweep.py (run on the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTD=${1:-.gpu/sweep_w4a16}; rm -rf "$OUTD"; mkdir -p "$OUTD"
# GROUPED_TUNINGS: comma-separated warps:rb:nt:split[:stages[:ctas[:word_order]]] (ctas: the split 'n' ring's CTAs per
# SM, 0 = default; word_order: nibble (default) | rot, runtime/word_order.py); ACT_ORDER: natural (default) | quad | quad8,
# or several (ACT_ORDER="quad quad8": one store per tuning and order, named ..._<order>);
# SWEEP_EXPERTS: the expert count(s) the stores hold, TOML (48; "[48, 32]": benchmarks/w4a16_sweep.py
# picks one by its own SWEEP_EXPERTS); SWEEP_L1 / SWEEP_L2: "N K" of the two grouped shapes (DeepSeek-V4 Pro's
# "6144 7168" / "7168 3072"; Flash: "4096 4096" / "4096 2048", benchmarks/w4a16_sweep.py SWEEP_SHAPES to match)
read -r L1N L1K <<< "${SWEEP_L1:-6144 7168}"; read -r L2N L2K <<< "${SWEEP_L2:-7168 3072}"
for ord in ${ACT_ORDER:-natural}; do
for tun in $(echo "${GROUPED_TUNINGS:-4:1:1:k,4:4:2:k,2:2:4:k,8:1:8:n,4:2:8:n,8:2:4:n,4:1:8:n,8:1:4:n,4:2:4:n,8:2:8:n}" | tr ',' ' '); do
  set -- $(echo "$tun" | tr ':' ' '); st=${5:-1}; ct=${6:-0}; wo=${7:-nibble}; name="w${1}_rb${2}_nt${3}_${4}_s${st}"
  [ "$ct" != 0 ] && name="${name}_c${ct}"
  [ "$wo" != nibble ] && name="${name}_${wo}"
  [ "$(echo ${ACT_ORDER:-natural} | wc -w)" -gt 1 ] && name="${name}_${ord}"
  cat > /tmp/sweep_$name.toml <<T
archs = ["sm_90a"]
[[op]]
family = "w4a16_grouped_gemm"
problem = { n = $L1N, k = $L1K, experts = ${SWEEP_EXPERTS:-48}, act_order = "$ord", word_order = "$wo" }
buckets = [ { m = [1, 65536], tuning = { warps = $1, rb = $2, nt = $3, split = "$4", stages = $st, ctas = $ct } } ]
[[op]]
family = "w4a16_grouped_gemm"
problem = { n = $L2N, k = $L2K, experts = ${SWEEP_EXPERTS:-48}, act_order = "$ord", word_order = "$wo" }
buckets = [ { m = [1, 65536], tuning = { warps = $1, rb = $2, nt = $3, split = "$4", stages = $st, ctas = $ct } } ]
T
  .venv/bin/nvfp4-build compile /tmp/sweep_$name.toml -o "$OUTD/$name" -j 2 >/dev/null
  rm -rf "$OUTD/$name/tmp" "$OUTD/$name/.lock"
done
done
# QUACK=1: every tile x split-K candidate of quack_w4a16_gemm (and the per-row-alpha twin for
# q_a + kv) in one store, for `benchmarks/quack_w4a16_sweep.py run $OUTD/quack`
if [ "${QUACK:-0}" = 1 ]; then
  .venv/bin/python benchmarks/quack_w4a16_sweep.py manifest > /tmp/sweep.toml
  .venv/bin/nvfp4-build compile /tmp/sweep.toml -o "$OUTD/quack" -j 2 >/dev/null
  rm -rf "$OUTD/quack/tmp" "$OUTD/quack/.lock"
fi
[ "${SKIP_DENSE:-0}" = 1 ] && { du -sh "$OUTD"; exit 0; }
for tun in "4 1 1" "8 1 1" "2 1 1" "8 1 2" "4 1 2" "8 2 2" "8 1 4" "4 1 4" "4 2 4"; do
  set -- $tun; name="dense_w${1}_rb${2}_nt${3}"
  cat > /tmp/sweep_$name.toml <<T
archs = ["sm_90a"]
[[op]]
family = "w4a16_gemm"
problem = { n = [6144, 2048, 7168], k = 7168 }
buckets = [ { m = [1, 65536], tuning = { warps = $1, rb = $2, nt = $3 } } ]
[[op]]
family = "w4a16_gemm"
problem = { n = [7168, 65536], k = [2048, 1536] }
buckets = [ { m = [1, 65536], tuning = { warps = $1, rb = $2, nt = $3 } } ]
T
  .venv/bin/nvfp4-build compile /tmp/sweep_$name.toml -o "$OUTD/$name" -j 2 >/dev/null
  rm -rf "$OUTD/$name/tmp" "$OUTD/$name/.lock"
done
du -sh "$OUTD"
