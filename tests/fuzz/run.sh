#!/usr/bin/env bash
# tests/fuzz/run.sh — fuzz one target with libFuzzer for N minutes.
#
#   tests/fuzz/run.sh TARGET MINUTES [JOBS]     TARGET: kiln | kir | safetensors | idx | onnx | npy | csv
#   tests/fuzz/run.sh --merge TARGET            minimize what was found into the corpus
#
# Builds build-fuzz/ (clang-14, -DKILN_FUZZ=ON: ASan + UBSan + libFuzzer
# coverage), then runs build-fuzz/bin/fuzz_TARGET on a working corpus
# (build-fuzz/corpus/TARGET, seeded from tests/fuzz/corpus/TARGET) with the
# target's dictionary. A crash leaves its input in build-fuzz/artifacts/TARGET/
# and ends the run with status 1; reproduce it with
#   build-fuzz/bin/fuzz_TARGET build-fuzz/artifacts/TARGET/crash-...
# and, once fixed, minimize it (-minimize_crash=1) and add it to
# tests/fuzz/corpus/TARGET/ as crash-<what>, so every test run replays it.
# The last line printed is the summary README.md's table records:
#   fuzz TARGET: M minutes, E executions, corpus C inputs, status S
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${KILN_FUZZ_BUILD:-$root/build-fuzz}
targets="kiln kir safetensors idx onnx npy csv"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
merge=0
[ "${1:-}" = "--merge" ] && { merge=1; shift; }
target=${1:-}
case " $targets " in *" $target "*) ;; *) usage ;; esac

if ! command -v clang-14 >/dev/null || ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "tests/fuzz/run.sh: needs clang-14 and libclang-rt-14-dev (tests/run.sh installs both)" >&2
  exit 2
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
        -DKILN_FUZZ=ON >/dev/null
fi
cmake --build "$build" --target "fuzz_$target" -j"$(nproc)" >/dev/null
bin=$build/bin/fuzz_$target
seeds=$root/tests/fuzz/corpus/$target
work=$build/corpus/$target
art=$build/artifacts/$target
mkdir -p "$work" "$art"
dict=()
[ -f "$root/tests/fuzz/$target.dict" ] && dict=(-dict="$root/tests/fuzz/$target.dict")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OPENBLAS_NUM_THREADS=1

if [ $merge -eq 1 ]; then
  # New inputs that add coverage over the seeds, minimized, into the corpus as "found-*".
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  cp "$seeds"/* "$tmp"/
  "$bin" -merge=1 "${dict[@]}" "$tmp" "$work" 2>&1 | tail -2
  for f in "$tmp"/*; do
    b=$(basename "$f")
    [ -e "$seeds/$b" ] || cp "$f" "$seeds/found-$b"
  done
  echo "corpus $target: $(ls "$seeds" | wc -l) inputs"
  exit 0
fi

minutes=${2:?minutes}
jobs=${3:-1}
par=()
[ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
log=$build/fuzz_$target.log
set +e
"$bin" "${dict[@]}" -max_total_time=$((minutes * 60)) -print_final_stats=1 -timeout=10 \
       -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$art/" \
       "${par[@]}" "$work" "$seeds" >"$log" 2>&1
rc=$?
set -e
[ "$jobs" -gt 1 ] && cat "$build"/fuzz-*.log >>"$log" 2>/dev/null && rm -f "$build"/fuzz-*.log
execs=$(grep -h 'stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
status=ok
[ $rc -eq 0 ] || status="failed (rc $rc): $(ls -t "$art" | head -1)"
grep -E '^(==[0-9]+==ERROR|SUMMARY|.*check failed)' "$log" | head -5 || true
echo "fuzz $target: $minutes minutes, $execs executions, corpus $(ls "$work" | wc -l) inputs, status $status"
[ $rc -eq 0 ]
