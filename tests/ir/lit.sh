#!/usr/bin/env bash
# A tiny lit: runs every "RUN:" line of a golden test with %s = the test file,
# %kiln = the kiln binary, FileCheck = LLVM's FileCheck. Usage: lit.sh FILE KILN FILECHECK
set -u
src=$1 kiln=$2 fc=$3
n=0
while IFS= read -r line; do
  cmd=${line#*RUN: }
  cmd=${cmd//%s/$src}
  cmd=${cmd//%kiln/$kiln}
  cmd=${cmd//FileCheck/$fc}
  n=$((n+1))
  echo "RUN[$n]: $cmd"
  if ! bash -o pipefail -c "$cmd"; then
    echo "FAILED: RUN line $n of $src"
    exit 1
  fi
done < <(grep -E '^(#|//) *RUN: ' "$src")
[ $n -gt 0 ] || { echo "no RUN: lines in $src"; exit 1; }
