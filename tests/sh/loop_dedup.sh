#!/usr/bin/env bash
# Identical loops share one function (issue 17): the seed model's six Adam
# updates (one fused region per parameter, alike up to buffers and lengths)
# become one LLVM function, called six times, and the forward bias-add+relu
# of the two hidden layers one more. Usage: loop_dedup.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
model="$src/examples/mnist_mlp.kiln"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$kiln" dump "$model" --function train_step > "$tmp/step.kir"
"$kiln" dump "$model" --function train_step --emit llvm > "$tmp/step.ll"
regions=$(grep -cE 'assign\(@optimizer\.[^ ]*\.m,' "$tmp/step.kir" || true)
[ "$regions" -eq 6 ] || { echo "FAIL: expected 6 Adam regions in the IR, got $regions"; exit 1; }

# Functions whose body computes vectors of square roots (Adam's update).
awk '/^define /{ f=$0; sub(/\(.*/, "", f); sub(/.*@/, "", f) } /^declare /{ f="" } f && /@llvm\.sqrt\.v[0-9]+f32/{ print f }' \
  "$tmp/step.ll" | sort -u > "$tmp/sqrt_fns"
n=$(wc -l < "$tmp/sqrt_fns")
[ "$n" -eq 1 ] || { echo "FAIL: $n functions compute Adam's update, expected 1:"; cat "$tmp/sqrt_fns"; exit 1; }
fn=$(cat "$tmp/sqrt_fns")
case $fn in kiln.loop.*) ;; *) echo "FAIL: Adam's update is in $fn, not a shared loop"; exit 1 ;; esac
calls=$(grep -cE "call .*@$fn\(" "$tmp/step.ll" || true)
[ "$calls" -eq 6 ] || { echo "FAIL: $fn is called $calls times, expected 6"; exit 1; }
echo "ok: 6 Adam regions, one function ($fn), 6 calls"

# Every shared loop is called at least twice, and the entry point is still there.
for f in $(grep -oE '^define [^@]*@kiln\.loop\.[0-9]+' "$tmp/step.ll" | sed 's/.*@//'); do
  c=$(grep -cE "call .*@$f\(" "$tmp/step.ll" || true)
  [ "$c" -ge 2 ] || { echo "FAIL: shared loop $f is called $c times"; exit 1; }
done
grep -q '^define i32 @kiln_train_step(' "$tmp/step.ll" || { echo "FAIL: no entry point"; exit 1; }

# The infer function alone has no two alike loops: no shared function.
"$kiln" dump "$model" --function infer --emit llvm > "$tmp/infer.ll"
if grep -q '^define .*@kiln\.loop\.' "$tmp/infer.ll"; then
  echo "FAIL: infer has a shared loop"; grep '^define' "$tmp/infer.ll"; exit 1
fi
echo "ok: every shared loop has two or more calls; infer has none"
