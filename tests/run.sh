#!/usr/bin/env bash
# tests/run.sh — installs what is missing, builds into build/, runs the suite.
#   tests/run.sh              configure + build + ctest
#   tests/run.sh --sanitize   the same with ASan+UBSan, in build-sanitize/
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0
for a in "$@"; do
  case $a in
    --sanitize) sanitize=1 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "tests/run.sh: unknown option '$a'" >&2; exit 2 ;;
  esac
done

# Debian packages the build and the tests need.
pkgs=(build-essential cmake pkg-config llvm-14-dev llvm-14-tools libopenblas-dev check
      zlib1g-dev libcjson-dev graphviz clang-14 libclang-rt-14-dev dataset-fashion-mnist
      python3 valgrind)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc 2>/dev/null || echo 2)
if [ $sanitize -eq 1 ]; then
  dir=build-sanitize
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DCMAKE_C_COMPILER=clang-14 >/dev/null
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  dir=build
  cmake -S . -B "$dir" >/dev/null
fi
cmake --build "$dir" -j"$jobs"
cd "$dir"
ctest --output-on-failure -j"$jobs"
