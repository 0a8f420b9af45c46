#!/usr/bin/env bash
# bench/compile.sh — compile time and the compile cache (issue 17): for the
# seed MLP and the convnet, the compile of train_step without the cache
# (with the phase split: module, O3, native code, and Kiln's GEMM kernel
# modules compiled meanwhile on a helper thread and after on the compiling
# one, with each side's CPU time; the seed also with --gemm openblas,
# which has no kernels to compile), cold (empty cache: compile + store) and
# warm (hit); then the load of Fashion-MNIST's training images, inflated by
# zlib or from the data cache's copy.
#
#   bench/compile.sh [BUILD_DIR] [REPS]      (default build-bench, 5)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-bench} reps=${2:-5}
bin=$dir/bin
[ -x "$bin/bench_data_load" ] && [ -x "$bin/bench_jit_compile" ] ||
  cmake --build "$dir" -j2 --target bench_jit_compile bench_data_load > /dev/null
export OPENBLAS_NUM_THREADS=1
unset KILN_CACHE # bench/run.sh turns it off for its timed runs; here it is measured
for model in examples/mnist_mlp.kiln examples/fashion_cnn.kiln; do
  echo "== $model"
  "$bin/bench_jit_compile" "$model" --reps "$reps" --steps 50
  if [ "$model" = examples/mnist_mlp.kiln ]; then
    echo "-- the same with --gemm openblas (no kernels to compile)"
    KILN_GEMM=openblas "$bin/bench_jit_compile" "$model" --reps "$reps" --steps 50
  fi
  "$bin/bench_jit_compile" "$model" --cache --reps "$reps"
done
echo "== data"
"$bin/bench_data_load" --reps "$reps"
