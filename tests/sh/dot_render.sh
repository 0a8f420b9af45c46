#!/usr/bin/env bash
# The Graphviz form of the IR renders to SVG through `dot`, and every fused
# region shows as a cluster of its body nodes (fused dense nodes as boxes
# labelled with their activation). Usage: dot_render.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
command -v dot >/dev/null || { echo "FAIL: graphviz 'dot' is not installed"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# render FILE.dot: SVG out, and the number of region clusters in it
# (function clusters are cluster_func_N, regions cluster_F_N).
render() {
  dot -Tsvg "$1" -o "${1%.dot}.svg" || { echo "FAIL: dot rejected $1"; exit 1; }
  grep -q '<svg' "${1%.dot}.svg" || { echo "FAIL: no SVG from $1"; exit 1; }
  grep -Ec '<title>cluster_[0-9]+_[0-9]+</title>' "${1%.dot}.svg" || true
}

# 1. A .kir module after fuse-elementwise: one cluster per region.
ir="$src/tests/ir/fuse_elementwise.kir"
"$kiln" opt "$ir" --passes fuse-elementwise --format=dot > "$tmp/ew.dot"
regions=$("$kiln" opt "$ir" --passes fuse-elementwise | grep -Ec '^  (%[0-9]+ = )?fused\(')
clusters=$(render "$tmp/ew.dot")
[ "$regions" -gt 0 ] || { echo "FAIL: fuse-elementwise made no region"; exit 1; }
[ "$clusters" -eq "$regions" ] || {
  echo "FAIL: $regions fused regions but $clusters clusters in the SVG"; exit 1; }
grep -q '>fused : f32\[?,3\]</text>' "$tmp/ew.svg" || { echo "FAIL: no region label"; exit 1; }
echo "ok: $regions regions drawn as $clusters clusters"

# Before the pass there is nothing to group.
"$kiln" opt "$ir" --passes verify --format=dot > "$tmp/plain.dot"
[ "$(render "$tmp/plain.dot")" -eq 0 ] || { echo "FAIL: clusters without regions"; exit 1; }

# 2. A model file through its default pipeline: dense nodes and fused
#    updates in the training step.
model="$src/examples/mnist_mlp.kiln"
"$kiln" dump "$model" --format=dot --function train_step > "$tmp/model.dot"
clusters=$(render "$tmp/model.dot")
[ "$clusters" -ge 6 ] || { echo "FAIL: train_step shows $clusters regions, want >= 6"; exit 1; }
grep -q '>dense relu</text>' "$tmp/model.svg" || { echo "FAIL: no 'dense relu' node"; exit 1; }
echo "ok: $model train_step renders with $clusters regions"
