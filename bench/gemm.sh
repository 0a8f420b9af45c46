#!/usr/bin/env bash
# bench/gemm.sh — Kiln's GEMM kernels against OpenBLAS (issue 18).
#
#   bench/gemm.sh [--bin DIR] [--data DIR] [--epochs N] [--reps N] [--threads N]
#
# 1. bench_gemm: GFLOP/s of each of the 8 GEMMs of the seed step (batch 128)
#    through Kiln's JIT with --gemm openblas, --gemm kiln (the width Kiln
#    picks here) and kiln forced to 8 lanes (AVX2, the reference machine),
#    beside the measured FMA peak of one core; also the forward GEMMs with
#    transposed B (a PyTorch export's); then all of them at batch 1.
#    bench_matmul_mask: the two masked input-gradient GEMMs, the relu' mask
#    as a pass of its own vs at the store (matmul_mask, fuse-matmul-mask).
# 2. Seed epochs (784-128-64-10, Adam, batch 128): median epoch seconds of
#    `kiln train` with each backend (and kiln at 8 lanes), and PyTorch, in
#    alternating repetitions on the same data, at --threads N (default 1).
#
# --bin: the directory of kiln and bench_gemm (default build-bench/bin, built
# by bench/run.sh); --epochs (default 3) and --reps (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build-bench/bin data=/usr/share/datasets/fashion-mnist epochs=3 reps=3 threads=1
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift ;;
    --data) data=$2; shift ;;
    --epochs) epochs=$2; shift ;;
    --reps) reps=$2; shift ;;
    --threads) threads=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/gemm.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== GEMMs of the seed step, 1 thread (load $(cut -d' ' -f1 /proc/loadavg))"
OPENBLAS_NUM_THREADS=1 "$bin/bench_gemm" --samples 21
echo "== the same GEMMs at batch 1 (M = 1 where M is the batch: transposed B's dot-product path)"
OPENBLAS_NUM_THREADS=1 "$bin/bench_gemm" --samples 21 --batch 1
echo "== fuse-matmul-mask: the step's two masked dX GEMMs, a separate relu' pass vs matmul_mask"
"$bin/bench_matmul_mask" --samples 21

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# Median epoch seconds of one `kiln train` run (JSON report).
kiln_epoch() { # kiln_epoch NAME [env...] -- [kiln options...]
  local name=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  env OPENBLAS_NUM_THREADS="$threads" "${envs[@]}" "$bin/kiln" train examples/mnist_mlp.kiln \
    --data "$data" --epochs "$epochs" --threads "$threads" --no-eval --seed 1 \
    --report "$tmp/$name.json" "$@" > "$tmp/$name.log" 2>&1
  "$PY" -c 'import json, statistics, sys
r = json.load(open(sys.argv[1]))
print(statistics.median(e["seconds"] for e in r["epochs"]), r["epochs"][-1]["accuracy"])' "$tmp/$name.json"
}
echo "== seed epochs, $threads thread(s), $epochs epochs x $reps repetitions"
: > "$tmp/rows"
for r in $(seq "$reps"); do
  ob=$(kiln_epoch ob -- --gemm openblas)
  kn=$(kiln_epoch kn -- --gemm kiln)
  k8=$(kiln_epoch k8 KILN_GEMM_WIDTH=8 -- --gemm kiln)
  OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" \
    "$PY" bench/torch_bench.py --data "$data" --threads "$threads" --epochs "$epochs" --seed "$r" \
    --no-infer > "$tmp/torch.log" 2>&1
  pt=$(sed -n 's/^train: median epoch \([0-9.]*\).*/\1/p' "$tmp/torch.log")
  echo "   rep $r: openblas ${ob% *} s, kiln ${kn% *} s, kiln 8-wide ${k8% *} s, pytorch $pt s (load $(cut -d' ' -f1 /proc/loadavg))"
  echo "${ob% *} ${kn% *} ${k8% *} $pt" >> "$tmp/rows"
done
m() { awk -v c="$1" '{print $c}' "$tmp/rows" | median; }
mo=$(m 1) mk=$(m 2) m8=$(m 3) mp=$(m 4)
awk -v o="$mo" -v k="$mk" -v e="$m8" -v p="$mp" 'BEGIN {
  printf "median epoch: openblas %.3f s (%.2fx pytorch), kiln %.3f s (%.2fx), kiln 8-wide %.3f s (%.2fx), pytorch %.3f s\n",
         o, p / o, k, p / k, e, p / e, p }'
echo "final accuracy (last run): openblas ${ob#* }, kiln ${kn#* }, kiln 8-wide ${k8#* }"
