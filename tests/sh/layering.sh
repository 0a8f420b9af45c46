#!/usr/bin/env bash
# The layering of the library (README "Layout", the CMake comment): a
# folder includes only the folders below it, and LLVM's headers only in
# codegen/. Fails naming every include that points the wrong way, e.g.
#   ir/print.c:12: includes "passes/pass.h" (ir may include: ir kiln)
# First it checks that it can fail: a copy of ir/ with a planted backward
# include must be refused.
# Usage: layering.sh KILN BUILD_DIR SOURCE_DIR
set -uo pipefail
src=${3:-$(cd "$(dirname "$0")/../.." && pwd)}

# Folders each folder may include ("kiln" is the public header).
allowed() {
  case $1 in
    ir) echo "ir kiln" ;;
    frontend) echo "ir frontend kiln" ;;
    passes) echo "ir passes kiln" ;;
    codegen) echo "ir codegen kiln" ;;
    runtime) echo "ir codegen runtime kiln" ;;
    driver) echo "ir passes codegen runtime driver kiln" ;;
    tools | examples) echo "tools kiln" ;;
    include) echo "kiln" ;;
  esac
}
LAYERS="ir frontend passes codegen runtime driver tools examples include"

# check ROOT: prints each wrong include of ROOT's layers; the count is the status.
check() {
  local root=$1 bad=0 layer ok f line inc top
  for layer in $LAYERS; do
    [ -d "$root/$layer" ] || continue
    ok=" $(allowed "$layer") "
    while IFS= read -r f; do
      while IFS=: read -r line inc; do
        top=${inc%%/*}
        [ "$top" = "$inc" ] && continue # same folder ("fuzz.h")
        [[ $ok == *" $top "* ]] && continue
        echo "${f#"$root"/}:$line: includes \"$inc\" ($layer may include:$ok)"
        bad=$((bad + 1))
      done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
               sed -E 's/^([0-9]+):[^"]*"([^"]*)".*/\1:\2/')
      if [ "$layer" != codegen ] && grep -qE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<llvm-c/' "$f"; then
        echo "${f#"$root"/}: includes LLVM's headers (only codegen/ may)"
        bad=$((bad + 1))
      fi
    done < <(find "$root/$layer" -type f \( -name '*.c' -o -name '*.h' -o -name '*.def' \) | sort)
  done
  return $((bad > 255 ? 255 : bad))
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/ir"
printf '#include "ir/ir.h"\n#include "passes/pass.h"\n' > "$tmp/ir/planted.c"
if check "$tmp" > "$tmp/out"; then
  echo "FAIL: a planted ir/ -> passes/ include was not refused"
  exit 1
fi
grep -q 'ir/planted.c:2: includes "passes/pass.h"' "$tmp/out" ||
  { echo "FAIL: the planted include was refused with the wrong message:"; cat "$tmp/out"; exit 1; }

if ! check "$src"; then
  echo "FAIL: includes against the layering above"
  exit 1
fi
echo "ok: every include of $LAYERS points down the layering"
