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
      python3 valgrind)
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

jobs=$(nproc 2>/dev/null || echo 2)
start=$(date +%s)
if [ $sanitize -eq 1 ]; then
  dir=${dir:-build-sanitize}
  # Optimized (the suite trains small models) but with frame pointers and
  # debug info for readable reports; any report ends the test that made it.
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON \
        -DCMAKE_C_COMPILER=clang-14 >/dev/null
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1
  export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export KILN_SANITIZE=1 # tests that build programs against libkiln.a add -fsanitize
else
  dir=${dir:-build}
  cmake -S . -B "$dir" >/dev/null
fi
cmake --build "$dir" -j"$jobs"
cd "$dir"
ctest --output-on-failure -j"$jobs"
echo "tests/run.sh: $( [ $sanitize -eq 1 ] && echo "sanitizer suite" || echo suite) passed in $(( $(date +%s) - start )) s ($dir)"
