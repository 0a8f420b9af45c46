#!/usr/bin/env bash
# bench/compile_ab.sh — cold compile and step time of two builds, alternating
# (issue 17: "cold compile <= 150 ms on the reference machine", "the
# generated code no slower").
#
#   bench/compile_ab.sh OLD_BIN_DIR NEW_BIN_DIR [ROUNDS] [COMPILE_REPS]
#
# Per round and model (the seed MLP, the convnet), each build in turn:
# 1. bench_jit_compile (the cache bypassed): train_step's median and least
#    wall ms of COMPILE_REPS compiles, the median CPU ms of the process and of
#    the compiling / helper threads, and the GEMM kernels' CPU ms;
# 2. bench_kiln_run with KILN_CACHE=0 at 1 thread: the median step (wall µs)
#    and its CPU µs, and compile_ms (train_step and loss, cold).
# Under load compare the CPU columns and the ratios within a round.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=${3:-3} reps=${4:-5}
data=${KILN_BENCH_DATA:-/usr/share/datasets/fashion-mnist}
export OPENBLAS_NUM_THREADS=1
printf '%-5s %-3s %-4s %8s %8s %8s %8s %8s %8s | %9s %9s %9s\n' model rnd bin wall_med wall_min \
  cpu_med main_cpu help_cpu kern_cpu step_us step_cpu run_cms
for r in $(seq "$rounds"); do
  for model in examples/mnist_mlp.kiln:60 examples/fashion_cnn.kiln:20; do
    steps=${model#*:} model=${model%:*}
    for side in old new; do
      dir=$old; [ $side = new ] && dir=$new
      jc=$("$dir/bench_jit_compile" "$model" --reps "$reps" --steps 5)
      run=$(KILN_CACHE=0 "$dir/bench_kiln_run" --model "$model" --data "$data" --threads 1 \
        --steps "$steps" --epochs 1 --infer-calls 100 --tput-reps 1 | grep '^RESULT ')
      python3 - "$jc" "$run" "$(basename "$model" .kiln | cut -c1-5)" "$r" "$side" <<'PY'
import json, re, sys
jc, run = sys.argv[1], json.loads(sys.argv[2][len('RESULT '):])
f = lambda pat: float(re.search(pat, jc).group(1))
print('%-5s %-3s %-4s %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f | %9.1f %9.1f %9.1f' % (
    sys.argv[3], sys.argv[4], sys.argv[5],
    f(r'no cache \(\d+ runs\): median ([\d.]+)'), f(r'no cache \(\d+ runs\): median [\d.]+ ms, min ([\d.]+)'),
    f(r'CPU time of the compile: median ([\d.]+)'), f(r'compiling thread median ([\d.]+)'),
    f(r'helper threads median ([\d.]+)'), f(r'GEMM kernels .*?([\d.]+) ms CPU'),
    run['step_s_median'] * 1e6, run['step_cpu_s_median'] * 1e6, run['compile_ms']))
PY
    done
  done
done
