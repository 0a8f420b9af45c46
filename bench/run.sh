#!/usr/bin/env bash
# bench/run.sh — Kiln side by side with PyTorch on the seed recipe (issue 9).
#
#   bench/run.sh [--quick] [--reps N] [--threads LIST] [--epochs N]
#                [--coretype detected|NAME] [--build-dir DIR] [--no-build]
#                [--out DIR] [--results FILE] [--no-profile] [--no-coretype-compare]
#                [--callgrind]
#
# One command: installs what is missing (Debian packages), builds Kiln in
# Release, then runs Kiln and PyTorch in the same run, on the same data
# (Fashion-MNIST) and recipe (784-128-64-10, Keras Adam, batch 128),
# alternating, and prints medians and ratios. bench/README.md says what each
# number means. A full run (no --quick) writes bench/RESULTS.md.
#
#   --quick            smoke test: 1 repetition, 2 epochs, short inference loops
#   --reps N           repetitions of the alternating Kiln/PyTorch pairs (default 5)
#   --threads LIST     thread counts, comma-separated (default 1,2)
#   --epochs N         epochs per timing run (default 10: the recipe, so accuracy counts)
#   --coretype C       OPENBLAS_CORETYPE for the main table: 'detected' (unset, the
#                      default) or an OpenBLAS core name (Haswell, Zen, SkylakeX, ...)
#   --build-dir DIR    build here (default build-bench/); an existing build is reused
#   --no-build         use the binaries already in the build dir
#   --out DIR          raw logs and JSON (default BUILD/bench-out/DATE)
#   --results FILE     write the Markdown report there ('-' for none; default
#                      bench/RESULTS.md for a full run, none for --quick)
#   --no-profile       skip the profile stage (step breakdown, perf)
#   --no-coretype-compare  skip the detected-vs-Haswell comparison
#   --callgrind        also count instructions per step with valgrind's callgrind
#                      (`kiln train --max-steps 200`; adds about 5 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

cmdline="bench/run.sh${*:+ $*}"
reps='' threads=1,2 epochs='' quick=0 coretype=detected build_dir=build-bench build=1
out='' results='' profile=1 ctcompare=1 callgrind=0 cg_steps=200
need_value() { [ "$1" -ge 2 ] || { echo "bench/run.sh: $2 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case $1 in
    --reps|--threads|--epochs|--coretype|--build-dir|--out|--results) need_value $# "$1" ;;
  esac
  case $1 in
    --quick) quick=1 ;;
    --reps) reps=$2; shift ;;
    --threads) threads=$2; shift ;;
    --epochs) epochs=$2; shift ;;
    --coretype) coretype=$2; shift ;;
    --build-dir) build_dir=$2; shift ;;
    --no-build) build=0 ;;
    --out) out=$2; shift ;;
    --results) results=$2; shift ;;
    --no-profile) profile=0 ;;
    --no-coretype-compare) ctcompare=0 ;;
    --callgrind) callgrind=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# --quick changes only what was not given explicitly.
if [ "$quick" = 1 ]; then : "${reps:=1}" "${epochs:=2}"; else : "${reps:=5}" "${epochs:=10}"; fi
infer_calls=10000 tput_reps=15 floor_samples=31 compile_reps=5 rss_epochs=10 ct_reps=3 ct_epochs=3
if [ "$quick" = 1 ]; then
  infer_calls=2000 tput_reps=3 floor_samples=7 compile_reps=2 rss_epochs=2 ct_reps=1 ct_epochs=2
fi
[[ $reps =~ ^[1-9][0-9]*$ && $epochs =~ ^[1-9][0-9]*$ ]] ||
  { echo "bench/run.sh: --reps and --epochs take a number >= 1" >&2; exit 2; }
[ "$ct_reps" -le "$reps" ] || ct_reps=$reps
IFS=, read -r -a tlist <<< "$threads"
for t in "${tlist[@]}"; do
  [[ $t =~ ^[1-9][0-9]*$ ]] || { echo "bench/run.sh: bad thread count '$t'" >&2; exit 2; }
done
if [ -z "$results" ]; then
  if [ "$quick" = 1 ]; then results=-; else results=bench/RESULTS.md; fi
fi

# ---------------------------------------------------------------- packages
# Debian's PyTorch runs with Debian's python; the pyenv python3 on PATH (if
# any) has no torch.
PY=/usr/bin/python3
pkgs=(build-essential cmake pkg-config llvm-14-dev libopenblas-dev zlib1g-dev
      dataset-fashion-mnist python3 python3-torch python3-numpy time)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/run.sh: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
data=/usr/share/datasets/fashion-mnist
[ -f "$data/train-images-idx3-ubyte.gz" ] || { echo "bench/run.sh: no Fashion-MNIST in $data" >&2; exit 1; }

# ------------------------------------------------------------------- build
bin=$build_dir/bin
targets=(kiln_cli bench_kiln_run bench_gemm_floor bench_kiln_profile bench_gather bench_jit_compile bench_gemm bench_matmul_mask)
if [ "$build" = 1 ]; then
  if [ ! -f "$build_dir/CMakeCache.txt" ]; then
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF > /dev/null
  else
    cmake -S . -B "$build_dir" > /dev/null # picks up new bench/*.c
  fi
  bt=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
  [ "$bt" = Release ] || echo "bench/run.sh: warning: $build_dir is a '$bt' build, not Release" >&2
  echo "== building ${targets[*]} in $build_dir"
  cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]}" > "$build_dir/bench-build.log" 2>&1 ||
    { tail -30 "$build_dir/bench-build.log" >&2; echo "bench/run.sh: build failed" >&2; exit 1; }
fi
for t in kiln bench_kiln_run bench_gemm_floor bench_kiln_profile bench_gather bench_jit_compile bench_gemm; do
  [ -x "$bin/$t" ] || { echo "bench/run.sh: $bin/$t is missing (build first)" >&2; exit 1; }
done

[ -n "$out" ] || out=$build_dir/bench-out/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out/logs"
log=$out/logs
echo "== raw results in $out"

# ------------------------------------------------------------- environment
# The JIT's compile cache stays in the output directory, and is off for the
# timed runs, so compile_ms is the compile itself in every repetition; the
# cache's own cold/warm figures come from bench_jit_compile --cache.
export KILN_CACHE_DIR=$out/cache KILN_CACHE=0
# OpenBLAS's core type is chosen per run (not inherited): the main table uses
# --coretype; the comparison stage tries the detected core and Haswell.
with_core() { # with_core CORE cmd...
  local core=$1; shift
  if [ "$core" = detected ]; then env -u OPENBLAS_CORETYPE "$@"; else env OPENBLAS_CORETYPE="$core" "$@"; fi
}
# Both sides get the thread count in OPENBLAS_NUM_THREADS too, so OpenBLAS
# never starts a pool larger than asked (an idle worker spins for a while).
run_kiln() { # run_kiln CORE THREADS LOG args...
  local core=$1 t=$2 lg=$3; shift 3
  with_core "$core" OPENBLAS_NUM_THREADS="$t" "$bin/bench_kiln_run" --model examples/mnist_mlp.kiln \
    --data "$data" --threads "$t" "$@" > "$lg" 2>&1 || { tail -20 "$lg" >&2; return 1; }
}
# PyTorch: OMP_WAIT_POLICY=PASSIVE or torch's spinning OpenMP workers fight
# OpenBLAS's (3-40x slower at 2 threads on 2 cores; anchors/torch_mlp.py).
run_torch() { # run_torch CORE THREADS LOG args...
  local core=$1 t=$2 lg=$3; shift 3
  with_core "$core" OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t" \
    "$PY" bench/torch_bench.py --data "$data" --threads "$t" "$@" > "$lg" 2>&1 ||
    { tail -20 "$lg" >&2; return 1; }
}
run_floor() { # run_floor CORE THREADS LOG
  with_core "$1" OPENBLAS_NUM_THREADS="$2" "$bin/bench_gemm_floor" --threads "$2" \
    --samples "$floor_samples" --json > "$3" 2>&1 || { cat "$3" >&2; return 1; }
}

stage_load() { echo "stage $1: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/loadavg.txt"; }

# ------------------------------------------------------------------ machine
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command: $cmdline"
  echo "kiln_commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "host: $(uname -srm)"
  lscpu | sed -n 's/^\(Model name\|CPU family\|Model\|CPU(s)\|Thread(s) per core\|L2 cache\|L3 cache\|Hypervisor vendor\|Flags\):[[:space:]]*/lscpu_\1: /p'
  echo "mem_total: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "cc: $(cc --version | head -1)"
  echo "llvm: $(llvm-config-14 --version 2>/dev/null || echo 14)"
  echo "python: $($PY --version 2>&1)"
  echo "torch: $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null)"
  echo "numpy: $($PY -c 'import numpy; print(numpy.__version__)' 2>/dev/null)"
  echo "openblas_pkg: $(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo '?')"
  echo "env_OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-<unset>}"
  echo "env_OPENBLAS_L2_SIZE: ${OPENBLAS_L2_SIZE:-<unset>}"
  echo "load_before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "reps: $reps"
  echo "threads: $threads"
  echo "epochs: $epochs"
  echo "coretype: $coretype"
  echo "quick: $quick"
} > "$out/machine.txt"
with_core detected "$bin/bench_gemm_floor" --threads 1 --samples 1 --json > "$out/openblas_detected.json"

# ---------------------------------------------------------- 1. main: timing
# Repetition r, thread count T: the GEMM floor, then Kiln and PyTorch, in an
# order that alternates, so drift on a shared machine hits both sides alike.
echo "== main: $reps repetition(s) x threads {$threads}, $epochs epoch(s) per run, OpenBLAS core: $coretype"
for r in $(seq 1 "$reps"); do
  for t in "${tlist[@]}"; do
    run_floor "$coretype" "$t" "$log/main_floor_t${t}_r${r}.json"
    k=(run_kiln "$coretype" "$t" "$log/main_kiln_t${t}_r${r}.log" --epochs "$epochs" --seed "$r"
       --infer-calls "$infer_calls" --tput-reps "$tput_reps")
    p=(run_torch "$coretype" "$t" "$log/main_torch_t${t}_r${r}.log" --epochs "$epochs" --seed "$r"
       --infer-calls "$infer_calls" --tput-reps "$tput_reps")
    if [ $(( (r + t) % 2 )) -eq 0 ]; then "${k[@]}"; "${p[@]}"; else "${p[@]}"; "${k[@]}"; fi
    echo "rep $r threads $t: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/loadavg.txt"
    printf '   rep %d, %d thread(s): kiln %s s/epoch, torch %s s/epoch, GEMM floor %s s/epoch (load %s)\n' "$r" "$t" \
      "$(sed -n 's/^train: median epoch \([0-9.]*\).*/\1/p' "$log/main_kiln_t${t}_r${r}.log")" \
      "$(sed -n 's/^train: median epoch \([0-9.]*\).*/\1/p' "$log/main_torch_t${t}_r${r}.log")" \
      "$(sed -n 's/.*"epoch_s_floor": \([0-9.]*\).*/\1/p' "$log/main_floor_t${t}_r${r}.json")" \
      "$(cut -d' ' -f1 /proc/loadavg)"
  done
  # JIT compile time of the train step alone, split by phase (bench/jit_compile.c)
  with_core "$coretype" OPENBLAS_NUM_THREADS=1 "$bin/bench_jit_compile" examples/mnist_mlp.kiln \
    --reps "$compile_reps" --steps 100 > "$log/main_compile_r${r}.log" 2>&1 ||
    echo "   (bench_jit_compile failed: see $log/main_compile_r${r}.log)"
  # ... and through the compile cache: cold (empty) and warm (a hit)
  with_core "$coretype" OPENBLAS_NUM_THREADS=1 KILN_CACHE=1 "$bin/bench_jit_compile" \
    examples/mnist_mlp.kiln --cache --reps "$compile_reps" > "$log/main_compile_cache_r${r}.log" 2>&1 ||
    echo "   (bench_jit_compile --cache failed: see $log/main_compile_cache_r${r}.log)"
done

# ------------------------------------------- 2. peak RSS and the kiln CLI
stage_load rss
echo "== peak RSS: kiln train (the CLI, $rss_epochs epochs) and PyTorch ($rss_epochs epochs), 1 thread"
with_core "$coretype" OPENBLAS_NUM_THREADS=1 /usr/bin/time -v -o "$log/rss_kiln.time" \
  "$bin/kiln" train examples/mnist_mlp.kiln --data "$data" --threads 1 --epochs "$rss_epochs" \
  --report "$log/rss_kiln_report.json" > "$log/rss_kiln.log" 2>&1 || { tail "$log/rss_kiln.log" >&2; exit 1; }
# the same binary doing nothing but parse the model: what loading its libraries costs
/usr/bin/time -v -o "$log/rss_kiln_summary.time" "$bin/kiln" summary examples/mnist_mlp.kiln \
  > "$log/rss_kiln_summary.log" 2>&1 || true
with_core "$coretype" OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
  /usr/bin/time -v -o "$log/rss_torch.time" "$PY" bench/torch_bench.py --data "$data" --threads 1 \
  --epochs "$rss_epochs" --no-infer > "$log/rss_torch.log" 2>&1 || { tail "$log/rss_torch.log" >&2; exit 1; }

# ------------------------------------------------------- 3. AOT batch-1
stage_load aot
echo "== AOT: kiln compile"
aot=$out/aot
mkdir -p "$aot"
if "$bin/kiln" compile examples/mnist_mlp.kiln -o "$aot/libmnist_mlp.so" --header "$aot/mnist_mlp.h" \
     > "$log/aot_compile.log" 2>&1; then
  if cc -std=c11 -O2 -Wall -Wextra -I"$aot" -DKILN_AOT_HEADER="\"mnist_mlp.h\"" \
       bench/aot/aot_bench.c -o "$aot/aot_bench" -L"$aot" -lmnist_mlp -Wl,-rpath,"$aot" -lz -lm \
       > "$log/aot_client_build.log" 2>&1; then
    with_core "$coretype" OPENBLAS_NUM_THREADS=1 "$aot/aot_bench" "$data/t10k-images-idx3-ubyte.gz" \
      "$infer_calls" > "$log/aot_bench.log" 2>&1 || echo "   AOT client failed: see $log/aot_bench.log"
  else
    echo "   the AOT client does not build against the generated header: see $log/aot_client_build.log"
  fi
else
  echo "   skipped: $(head -1 "$log/aot_compile.log")"
fi

# ------------------------------------ 4. OpenBLAS core: detected vs Haswell
if [ "$ctcompare" = 1 ]; then
  stage_load coretype
  echo "== OpenBLAS core type: detected vs Haswell, 1 thread, $ct_reps repetition(s), $ct_epochs epochs"
  for r in $(seq 1 "$ct_reps"); do
    for core in detected Haswell; do
      run_floor "$core" 1 "$log/ct_${core}_floor_r${r}.json"
      k=(run_kiln "$core" 1 "$log/ct_${core}_kiln_r${r}.log" --epochs "$ct_epochs" --seed "$r" --no-infer)
      p=(run_torch "$core" 1 "$log/ct_${core}_torch_r${r}.log" --epochs "$ct_epochs" --seed "$r" --no-infer)
      if [ $((r % 2)) -eq 1 ]; then "${k[@]}"; "${p[@]}"; else "${p[@]}"; "${k[@]}"; fi
    done
  done
fi

# ------------------------------------------------------------- 5. profile
if [ "$profile" = 1 ]; then
  stage_load profile
  echo "== profile: the train step split at its GEMMs (bench/kiln_profile.c)"
  for t in "${tlist[@]}"; do
    with_core "$coretype" OPENBLAS_NUM_THREADS="$t" "$bin/bench_kiln_profile" --model examples/mnist_mlp.kiln \
      --data "$data" --threads "$t" --epochs 3 --json > "$log/profile_t${t}.json" 2> "$log/profile_t${t}.err" ||
      echo "   bench_kiln_profile failed: see $log/profile_t${t}.err"
  done
  # what denormal numbers cost (flush-to-zero on), and the batch gather alone
  with_core "$coretype" OPENBLAS_NUM_THREADS=1 "$bin/bench_kiln_profile" --model examples/mnist_mlp.kiln \
    --data "$data" --threads 1 --epochs 3 --ftz --json > "$log/profile_t1_ftz.json" 2> "$log/profile_t1_ftz.err" ||
    echo "   bench_kiln_profile --ftz failed: see $log/profile_t1_ftz.err"
  "$bin/bench_gather" --data "$data" --epochs 3 > "$log/gather.json" 2>&1 ||
    echo "   bench_gather failed: see $log/gather.json"
  if command -v perf > /dev/null && perf stat -e cpu-clock true > /dev/null 2>&1; then
    echo "== profile: perf record (cpu-clock) of kiln_model_fit only, 1 thread"
    ctl=$out/perf.ctl ack=$out/perf.ack
    rm -f "$ctl" "$ack"; mkfifo "$ctl" "$ack"
    with_core "$coretype" OPENBLAS_NUM_THREADS=1 perf record -q -e cpu-clock -F 5000 -D -1 \
      --control "fifo:$ctl,$ack" -o "$out/perf.data" "$bin/bench_kiln_profile" --model examples/mnist_mlp.kiln \
      --data "$data" --threads 1 --epochs 3 --perf-ctl "$ctl,$ack" > "$log/perf_run.log" 2>&1 ||
      echo "   perf record failed: see $log/perf_run.log"
    rm -f "$ctl" "$ack"
    if [ -s "$out/perf.data" ]; then
      perf report -i "$out/perf.data" --no-children --sort dso --stdio -g none > "$log/perf_dso.txt" 2>/dev/null || true
      perf report -i "$out/perf.data" --no-children --sort dso,sym --stdio -g none > "$log/perf_sym.txt" 2>/dev/null || true
    fi
  else
    echo "   perf is not usable here (perf stat -e cpu-clock true fails): skipped"
  fi
fi

# ----------------------------------------------- 6. instruction counts
# Load-independent: callgrind counts instructions, not time. Valgrind has no
# AVX-512, so OpenBLAS runs its Haswell kernels here whatever the core.
if [ "$callgrind" = 1 ]; then
  if command -v valgrind > /dev/null; then
    stage_load callgrind
    echo "== callgrind: kiln train --max-steps $cg_steps (slow: valgrind)"
    with_core "$coretype" OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind \
      --callgrind-out-file="$out/callgrind.out" "$bin/kiln" train examples/mnist_mlp.kiln --data "$data" \
      --threads 1 --max-steps "$cg_steps" --no-eval > "$log/callgrind_run.log" 2>&1 &&
      callgrind_annotate --threshold=100 --inclusive=yes "$out/callgrind.out" > "$log/callgrind_incl.txt" 2>/dev/null &&
      callgrind_annotate --threshold=100 "$out/callgrind.out" > "$log/callgrind_self.txt" 2>/dev/null &&
      echo "steps: $cg_steps" > "$log/callgrind_steps.txt" ||
      echo "   callgrind failed: see $log/callgrind_run.log"
  else
    echo "== callgrind: valgrind is not installed: skipped"
  fi
fi

stage_load mpi; bench/mpi.sh --build-dir "$build_dir" --reps "$ct_reps" --out "$out/mpi" || echo "   bench/mpi.sh failed: see $out/mpi"
[ "$quick" = 1 ] || { echo "== binary classifier (bench/binary.sh)"; bench/binary.sh "$bin/kiln" 3 5 | tee "$log/binary.txt" || echo "   bench/binary.sh: not within noise (see above)"; }
bench/gemm.sh --bin "$bin" --data "$data" --epochs "$ct_epochs" --reps "$ct_reps" | tee "$out/gemm.txt" # Kiln's GEMM vs OpenBLAS (issue 18)
bench/cnn.sh --build-dir "$build_dir" --no-build --out "$out/cnn" --reps "$ct_reps" $([ "$quick" = 1 ] && echo --steps 20) || echo "== bench/cnn.sh failed: see $out/cnn"
bench/compile.sh "$build_dir" "$compile_reps" > "$log/compile.log" 2>&1 || echo "   (bench/compile.sh failed: see $log/compile.log)"
# --------------------------------------------------------------- report
echo
"$PY" bench/report.py "$out" ${results:+--results "$results"}
bench/onnx.sh --build-dir "$build_dir" --out "$out/onnx" $( [ "$quick" = 1 ] && echo --quick ) || echo "bench/run.sh: bench/onnx.sh failed"
