#!/usr/bin/env bash
# bench/mlp_threads.sh — training step at 1 and 2 threads, two builds
# alternating (issue 18: "2 threads >= 1.7x the 1-thread speed").
#
#   bench/mlp_threads.sh OLD_BIN_DIR NEW_BIN_DIR [REPS] [MODEL] [STEPS]
#
# Per run: the median step (wall µs) and its process CPU (µs, all threads),
# from bench_kiln_run's RESULT line; KILN_GEMM_WIDTH passes through (8: the
# AVX2 kernels). Each build has a kernel cache of its own.
set -euo pipefail
old=$1 new=$2 reps=${3:-3} model=${4:-examples/mnist_mlp.kiln} steps=${5:-300}
data=${KILN_BENCH_DATA:-/usr/share/datasets/fashion-mnist}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-4s %-3s %-3s %10s %10s\n' rep t bin step_us cpu_us
for r in $(seq "$reps"); do
  for t in 1 2; do
    for side in old new; do
      dir=$old; [ $side = new ] && dir=$new
      line=$(KILN_CACHE_DIR=$tmp/$side OPENBLAS_NUM_THREADS=$t "$dir/bench_kiln_run" --model "$model" \
        --data "$data" --threads $t --steps "$steps" --epochs 1 --infer-calls 100 --tput-reps 1 |
        grep '^RESULT ')
      python3 - "$line" "$r" "$t" "$side" <<'PY'
import json, sys
j = json.loads(sys.argv[1][len('RESULT '):])
print('%-4s %-3s %-3s %10.1f %10.1f' % (sys.argv[2], sys.argv[3], sys.argv[4],
      j['step_s_median'] * 1e6, j['step_cpu_s_median'] * 1e6))
PY
    done
  done
done
