#!/usr/bin/env bash
# tests/onnx/conformance.sh [KILN] — ONNX's own backend test suite (Debian's
# libonnx-testdata) against Kiln's importer and reference interpreter.
# Runs every case under $ONNX_TESTDATA/{node,pytorch-converted,pytorch-operator}/*/
# (default /usr/share/libonnx-testdata/data) with onnx_check (built next to KILN,
# default build/bin/kiln), prints one line per case that is not a pass
# ("SKIP name: reason" for an op or feature Kiln lacks, "FAIL name: why"),
# then "SUITE: N passed, M failed, K skipped" per suite and the sum as the
# last line, "N passed, M failed, K skipped". Exit status 1 on any failure,
# and, on the whole suite, when fewer cases pass than the counts below
# (node 324, pytorch-converted 41, pytorch-operator 23: 388 with ONNX 1.12's
# data), so a case that starts skipping is noticed.
# ONNX_CASES=glob restricts the cases (e.g. 'test_relu*').
set -uo pipefail
kiln=${1:-build/bin/kiln}
check=$(dirname "$kiln")/onnx_check
data=${ONNX_TESTDATA:-/usr/share/libonnx-testdata/data}
if [ ! -x "$check" ]; then
  echo "conformance.sh: $check not built (ONNX support off?)" >&2
  exit 1
fi
if [ ! -d "$data/node" ]; then
  echo "conformance.sh: $data/node missing (apt-get install libonnx-testdata)" >&2
  exit 1
fi
pass=0 fail=0 skip=0
for suite in node pytorch-converted pytorch-operator; do
  p0=$pass f0=$fail s0=$skip
  for dir in "$data"/$suite/${ONNX_CASES:-*}/; do
    dir=${dir%/}
    name=${dir##*/}
    [ -f "$dir/model.onnx" ] || continue
    msg=$(timeout 60 "$check" "$dir" 2>&1)
    rc=$?
    case $rc in
      0) pass=$((pass + 1)) ;;
      77) skip=$((skip + 1)); echo "SKIP $suite/$name: ${msg//$'\n'/ }" ;;
      *) fail=$((fail + 1)); echo "FAIL $suite/$name: ${msg//$'\n'/ } (exit $rc)" ;;
    esac
  done
  echo "$suite: $((pass - p0)) passed, $((fail - f0)) failed, $((skip - s0)) skipped"
done
echo "$pass passed, $fail failed, $skip skipped"
floor=388
if [ -z "${ONNX_CASES:-}" ] && [ "$pass" -lt "$floor" ]; then
  echo "conformance.sh: $pass passed, fewer than the $floor that passed before"
  exit 1
fi
[ "$fail" -eq 0 ]
