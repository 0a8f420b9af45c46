#!/usr/bin/env bash
# bench/cnn.sh — the convnet (examples/fashion_cnn.kiln, Keras' "simple MNIST
# convnet" on Fashion-MNIST) against PyTorch (bench/cnn_torch.py, the same
# recipe; Debian's torch runs convolutions through oneDNN), in the same run,
# alternating Kiln and PyTorch in every repetition (issue 14's bench).
#
#   bench/cnn.sh [--reps N] [--steps N] [--threads LIST] [--accuracy]
#                [--build-dir DIR] [--no-build] [--out DIR]
#
#   --reps N         alternating Kiln/PyTorch pairs per thread count (default 3)
#   --steps N        training steps timed per run (default 200); an epoch is
#                    the median step x 469 (an epoch of PyTorch takes about a
#                    minute per thread here, so whole epochs are not timed)
#   --threads LIST   thread counts (default 1,2)
#   --accuracy       also the whole recipe once on each side (12 epochs, 1
#                    thread): test accuracy of both, and the peak RSS of
#                    `kiln train` (/usr/bin/time); adds about 10 + 15 minutes
#   --build-dir DIR  Kiln's Release build (default build-bench/, as run.sh)
#   --no-build       use the binaries already there
#   --out DIR        raw logs and JSON (default BUILD/bench-out/cnn-DATE)
#
# Inference is timed at the first thread count only. Per run: Kiln through bench_kiln_run --model examples/fashion_cnn.kiln
# --steps N (compile ms of the train step and of all functions, median step,
# batch-1 latency and batch-10,000 throughput of kiln_model_predict, peak
# RSS), PyTorch through cnn_torch.py --steps N (median step, the same
# latency and throughput in eager mode, peak RSS). bench/cnn_report.py prints
# the medians and ratios as Markdown (also written to OUT/cnn.md).
set -euo pipefail
cd "$(dirname "$0")/.."

reps=3 steps=200 threads=1,2 accuracy=0 build_dir=build-bench build=1 out=''
while [ $# -gt 0 ]; do
  case $1 in
    --reps|--steps|--threads|--build-dir|--out)
      [ $# -ge 2 ] || { echo "bench/cnn.sh: $1 needs a value" >&2; exit 2; } ;;
  esac
  case $1 in
    --reps) reps=$2; shift ;;
    --steps) steps=$2; shift ;;
    --threads) threads=$2; shift ;;
    --accuracy) accuracy=1 ;;
    --build-dir) build_dir=$2; shift ;;
    --no-build) build=0 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/cnn.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $reps =~ ^[1-9][0-9]*$ && $steps =~ ^[1-9][0-9]*$ ]] ||
  { echo "bench/cnn.sh: --reps and --steps take a number >= 1" >&2; exit 2; }
IFS=, read -r -a tlist <<< "$threads"
for t in "${tlist[@]}"; do
  [[ $t =~ ^[1-9][0-9]*$ ]] || { echo "bench/cnn.sh: bad thread count '$t'" >&2; exit 2; }
done

PY=/usr/bin/python3
data=/usr/share/datasets/fashion-mnist
model=examples/fashion_cnn.kiln
bin=$build_dir/bin
if [ "$build" = 1 ]; then
  [ -f "$build_dir/CMakeCache.txt" ] ||
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF > /dev/null
  cmake --build "$build_dir" -j"$(nproc)" --target kiln_cli bench_kiln_run > /dev/null
fi
for t in kiln bench_kiln_run; do
  [ -x "$bin/$t" ] || { echo "bench/cnn.sh: $bin/$t is missing (build first)" >&2; exit 1; }
done
[ -n "$out" ] || out=$build_dir/bench-out/cnn-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
echo "== bench/cnn.sh: raw results in $out"
# No compile cache: compile ms is the compile itself in every run.
export KILN_CACHE=0
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the start" > "$out/machine.txt"
lscpu | sed -n 's/^Model name: *//p' >> "$out/machine.txt"

result() { sed -n 's/^RESULT //p' "$1"; }
for r in $(seq 1 "$reps"); do
  for t in "${tlist[@]}"; do
    echo "== rep $r/$reps, $t thread(s): kiln, then torch"
    # Inference (latency, throughput) at the first thread count only: PyTorch
    # needs minutes for it here.
    inf=(--infer-calls 1000 --tput-reps 2)
    [ "$t" = "${tlist[0]}" ] || inf=(--no-infer)
    OPENBLAS_NUM_THREADS=$t "$bin/bench_kiln_run" --model "$model" --data "$data" --threads "$t" \
      --epochs 1 --steps "$steps" "${inf[@]}" > "$out/kiln_t${t}_r$r.log" 2>&1 ||
      { tail -20 "$out/kiln_t${t}_r$r.log" >&2; exit 1; }
    result "$out/kiln_t${t}_r$r.log" > "$out/kiln_t${t}_r$r.json"
    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=$t "$PY" bench/cnn_torch.py --threads "$t" \
      --steps "$steps" --data "$data" "${inf[@]}" > "$out/torch_t${t}_r$r.log" 2>&1 ||
      { tail -20 "$out/torch_t${t}_r$r.log" >&2; exit 1; }
    result "$out/torch_t${t}_r$r.log" > "$out/torch_t${t}_r$r.json"
  done
done

if [ "$accuracy" = 1 ]; then
  echo "== the whole recipe once: kiln train (12 epochs, 1 thread), then PyTorch"
  OPENBLAS_NUM_THREADS=1 /usr/bin/time -f 'peak_rss_kb %M' "$bin/kiln" train "$model" --data "$data" \
    --threads 1 --report "$out/kiln_acc.json" > "$out/kiln_acc.log" 2> "$out/kiln_acc.time"
  OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 "$PY" bench/cnn_torch.py --threads 1 --epochs 12 \
    --data "$data" > "$out/torch_acc.log" 2>&1
  result "$out/torch_acc.log" > "$out/torch_acc.json"
fi
echo "machine: load $(cut -d' ' -f1-3 /proc/loadavg) at the end" >> "$out/machine.txt"
"$PY" bench/cnn_report.py "$out" | tee "$out/cnn.md"
