#!/usr/bin/env bash
# bench/mpi.sh — data-parallel training over Open MPI (issue 19).
#
#   bench/mpi.sh [--reps N] [--steps N] [--cnn-steps N] [--build-dir DIR] [--no-build]
#                [--out DIR] [--mpirun-flags "..."] [--models "mnist_mlp fashion_cnn"]
#
# On this machine, 1 thread per rank (OPENBLAS_NUM_THREADS=1, --threads 1):
#  1. mnist_mlp and fashion_cnn at a global batch of 128: one process, then
#     `mpirun -np 2 bench_kiln_run --distributed`, alternating, --reps times;
#     samples/s from the wall time of --steps steps and from the median step,
#     and each rank's time in the allreduce shim (KILN_DIST_STATS);
#  2. the compute of a rank alone: one process at batch 32, 64, 128, 256
#     (median step), which the model on paper extrapolates from;
#  3. bench_allreduce: the allreduce of each model's gradients and of the
#     buckets the data-parallel pass makes, over 2 ranks;
#  4. what a seed-MLP step is made of: the same steps with SGD instead of
#     Adam (what Adam over all weights costs), the shim's own copies and
#     scaling (bench_allreduce --mode local), MPI_Allreduce alone (--mode
#     raw) and the reduce-scatter + allgather a sharded optimizer would make
#     instead (--mode scatter), per bucket;
#  5. bench/mpi_model.py: the table of the above and the scaling model on
#     paper for 8 machines on 10 GbE and 100 GbE (out/summary.md). Figures
#     are wall time and, for one process, CPU time (step_cpu_s_median).
# Skips (exit 0) when Kiln is built without MPI or mpirun is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=3 steps=300 cnn_steps=30 build_dir=build-bench build=1 out='' mflags=''
models='mnist_mlp fashion_cnn'
while [ $# -gt 0 ]; do
  case $1 in
    --reps) reps=$2; shift ;;
    --steps) steps=$2; shift ;;
    --cnn-steps) cnn_steps=$2; shift ;;
    --build-dir) build_dir=$2; shift ;;
    --no-build) build=0 ;;
    --out) out=$2; shift ;;
    --mpirun-flags) mflags=$2; shift ;;
    --models) models=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/mpi.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v mpirun > /dev/null || { echo "bench/mpi.sh: no mpirun: skipped"; exit 0; }
if [ "$build" = 1 ]; then
  [ -f "$build_dir/CMakeCache.txt" ] ||
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF > /dev/null
  cmake --build "$build_dir" -j2 --target bench_kiln_run bench_allreduce > /dev/null
fi
bin=$build_dir/bin
"$bin/bench_allreduce" --iters 1 | grep -q "without MPI" && { echo "bench/mpi.sh: Kiln was built without MPI: skipped"; exit 0; }
[ -n "$out" ] || out=$build_dir/bench-out/mpi-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
data=/usr/share/datasets/fashion-mnist
export OPENBLAS_NUM_THREADS=1 KILN_CACHE_DIR=$out/cache
 # the seed MLP with SGD: its step without Adam
sed 's/optimizer  = adam(lr=0.001)/optimizer  = sgd(lr=0.01)/' examples/mnist_mlp.kiln > "$out/mlp_sgd.kiln"
run() { # run LOG NP MODEL BATCH STEPS
  local lg=$1 np=$2 model=$3 batch=$4 n=$5
  local file=examples/$model.kiln; [ "$model" = mlp_sgd ] && file=$out/mlp_sgd.kiln
  local a=(--model "$file" --data "$data" --threads 1 --epochs 1 --batch "$batch"
           --max-steps "$n" --no-infer --seed 1)
  if [ "$np" = 1 ]; then
    "$bin/bench_kiln_run" "${a[@]}" > "$lg" 2>&1
  else
    # shellcheck disable=SC2086
    KILN_DIST_STATS=1 mpirun --allow-run-as-root -np "$np" $mflags -x OPENBLAS_NUM_THREADS \
      -x KILN_DIST_STATS -x KILN_CACHE_DIR "$bin/bench_kiln_run" "${a[@]}" --distributed > "$lg" 2>&1
  fi || { tail -5 "$lg" >&2; return 1; }
  echo "load $(cut -d' ' -f1 /proc/loadavg)" >> "$lg"
}
echo "== bench/mpi.sh: $reps rep(s), raw logs in $out (load $(cut -d' ' -f1-3 /proc/loadavg))"
for model in $models; do
  n=$steps; [ "$model" = fashion_cnn ] && n=$cnn_steps
  run "$out/warm_$model.log" 1 "$model" 128 2 # fills the compile cache
  for r in $(seq 1 "$reps"); do
    one=(run "$out/${model}_np1_r$r.log" 1 "$model" 128 "$n")
    two=(run "$out/${model}_np2_r$r.log" 2 "$model" 128 "$n")
    if [ $((r % 2)) = 1 ]; then "${one[@]}"; "${two[@]}"; else "${two[@]}"; "${one[@]}"; fi
    for b in 32 64 256; do run "$out/${model}_b${b}_r$r.log" 1 "$model" "$b" "$n"; done
    if [ "$model" = mnist_mlp ]; then
      for b in 64 128; do run "$out/mlp_sgd_b${b}_r$r.log" 1 mlp_sgd "$b" "$n"; done
    fi
    echo "   $model rep $r done (load $(cut -d' ' -f1 /proc/loadavg))"
  done
done
# the allreduce alone: whole models, and the pass's buckets (dumps of train-distributed)
for f in 109388 8908 100480 34828 16012 18496 320; do
  mpirun --allow-run-as-root -np 2 $mflags "$bin/bench_allreduce" --floats "$f" --iters 300 \
    > "$out/allreduce_$f.log" 2>&1 || tail -3 "$out/allreduce_$f.log" >&2
done
# what the seed MLP's buckets cost: MPI alone, a sharded optimizer's
# collectives instead, the shim's own work (one process, CPU time)
for f in 109388 8908 100480; do
  for mode in raw scatter; do
    mpirun --allow-run-as-root -np 2 $mflags "$bin/bench_allreduce" --mode $mode --floats "$f" \
      --iters 300 > "$out/allreduce_${mode}_$f.log" 2>&1 || tail -3 "$out/allreduce_${mode}_$f.log" >&2
  done
done
"$bin/bench_allreduce" --mode local --floats 8908 --split 5 --iters 3000 > "$out/local_8908.log"
"$bin/bench_allreduce" --mode local --floats 100480 --split 2 --iters 3000 > "$out/local_100480.log"
/usr/bin/python3 bench/mpi_model.py "$out" | tee "$out/summary.md"
