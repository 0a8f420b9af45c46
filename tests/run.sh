#!/usr/bin/env bash
# tests/run.sh — installs what is missing, builds, runs the whole suite.
#   tests/run.sh                  configure + build + ctest, in build/
#   tests/run.sh --sanitize       the same built by clang-14 with ASan + UBSan (LeakSanitizer
#                                 on, tests/lsan.supp for LLVM's own allocations), in build-sanitize/
#   tests/run.sh --build-dir DIR  build and test in DIR instead (also KILN_BUILD_DIR=DIR)
# The suite includes the replay of every fuzz corpus (tests/fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

sanitize=0
dir=${KILN_BUILD_DIR:-}
while [ $# -gt 0 ]; do
  case $1 in
    --sanitize) sanitize=1 ;;
    --build-dir) dir=${2:?--build-dir needs a directory}; shift ;;
    --build-dir=*) dir=${1#*=} ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tests/run.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done

# Debian packages the build and the tests need.
pkgs=(build-essential cmake pkg-config llvm-14-dev llvm-14-tools libopenblas-dev check
      zlib1g-dev graphviz clang-14 libclang-rt-14-dev dataset-fashion-mnist
      python3 valgrind libopenmpi-dev openmpi-bin libprotobuf-c-dev protobuf-c-compiler
      libonnx-dev libonnx-testdata python3-onnx)
missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ONNX Runtime (npm's onnxruntime-node) for the tests that compare with it:
# installed into a cache outside the tree when missing; without it those
# checks say they are skipped.
tests/onnx/ort_env.sh > /dev/null ||
  echo "tests/run.sh: ONNX Runtime could not be installed: checks against it will be skipped"

jobs=$(nproc 2>/dev/null || echo 2)
# The suite has at least this many ctest tests (`ctest -N`: 81 on 2026-12-07).
# mpi_*.sh need MPI and the onnx tests ONNX, which this script installs. A
# build dir configured without tests, or a glob that lost its files, runs
# fewer: fail.
floor=82
start=$(date +%s)
if [ $sanitize -eq 1 ]; then
  dir=${dir:-build-sanitize}
  # Optimized (the suite trains small models) but with frame pointers and
  # debug info for readable reports; any report ends the test that made it.
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON \
        -DKILN_BUILD_TESTS=ON -DCMAKE_C_COMPILER=clang-14 >/dev/null
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1
  export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # (tests that build programs against libkiln.a, tests/sh/install.sh, read
  # KILN_SANITIZE from the build dir's CMakeCache.txt and add -fsanitize.)
else
  dir=${dir:-build}
  # Tests on, whatever the build dir's cache says (build-bench/ has them off).
  cmake -S . -B "$dir" -DKILN_BUILD_TESTS=ON >/dev/null
fi
cmake --build "$dir" -j"$jobs"
cd "$dir"
# ctest gives every test KILN_CACHE_DIR=<build>/test-cache (tests/CMakeLists.txt);
# anything else run from here keeps the compile cache there too, not in ~/.cache.
export KILN_CACHE_DIR=$PWD/test-cache
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-tests=error: "No tests were found" is a failure, not a green run.
ctest --output-on-failure --no-tests=error -j"$jobs" | tee "$log"
ran=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* +Passed +' "$log" || true)
echo "tests/run.sh: $ran tests passed (floor $floor)"
if [ "$ran" -lt "$floor" ]; then
  echo "tests/run.sh: only $ran tests ran, the suite has at least $floor: failing" >&2
  exit 1
fi
echo "tests/run.sh: $( [ $sanitize -eq 1 ] && echo "sanitizer suite" || echo suite) passed in $(( $(date +%s) - start )) s ($dir)"
