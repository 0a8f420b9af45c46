#!/usr/bin/env bash
# The convnets train to the same bits at any thread count: im2col chunks,
# pooling and their gradients run as a fixed number of image-range tasks of
# the worker pool (codegen/lower_conv.c), the filter gradient's per-task
# partial sums added in task order. For examples/fashion_cnn.kiln (conv,
# max pooling, dropout) and examples/fashion_bn_cnn.kiln (batch
# normalization, global average pooling), and the seed MLP
# (examples/mnist_mlp.kiln: its GEMMs with fewer column panels than tasks
# split over row blocks too, codegen/gemm.c):
#   1. `kiln train --max-steps 3` at --threads 1, 2 and 3 (an odd count:
#      tasks do not divide evenly) saves byte-identical checkpoints (weights,
#      Adam's moments, the step), which differ from the one after 1 step;
#   2. `kiln eval` of that checkpoint on the 10,000 test images prints the
#      same loss and accuracy at 1 and 2 threads;
#   3. `kiln predict` of them writes the same bytes at 1, 2 and 3 threads.
# Usage: cnn_threads.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
data=${KILN_DATA_DIR:-/usr/share/datasets/fashion-mnist}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "FAIL: $*"; exit 1; }

for name in fashion_cnn fashion_bn_cnn mnist_mlp; do
  model="$src/examples/$name.kiln"
  "$kiln" train "$model" --seed 3 --max-steps 1 --no-eval --save "$name.step1.st" > /dev/null
  for t in 1 2 3; do
    "$kiln" train "$model" --seed 3 --max-steps 3 --no-eval --threads $t --save "$name.t$t.st" > "$name.t$t.log"
  done
  cmp -s "$name.t1.st" "$name.step1.st" && fail "$name: steps 2 and 3 left the checkpoint unchanged"
  for t in 2 3; do
    cmp "$name.t1.st" "$name.t$t.st" || fail "$name: --threads $t checkpoint differs from --threads 1"
  done
  for t in 1 2; do
    "$kiln" eval "$model" --load "$name.t1.st" --threads $t | grep '^test:' > "$name.eval$t.log"
  done
  grep -q 'loss' "$name.eval1.log" || fail "$name: no loss in: $(cat "$name.eval1.log")"
  cmp "$name.eval1.log" "$name.eval2.log" || fail "$name: eval differs: $(cat "$name.eval1.log" "$name.eval2.log")"
  # predict runs @infer over the 10,000 images in chunks (plan-memory's
  # chunk=N): in order at 1 thread, as parallel tasks at 2 and 3.
  for t in 1 2 3; do
    "$kiln" predict "$model" --load "$name.t1.st" --threads $t \
      --input "$data/t10k-images-idx3-ubyte.gz" --output "$name.p$t.npy"
  done
  for t in 2 3; do
    cmp "$name.p1.npy" "$name.p$t.npy" || fail "$name: predict at --threads $t differs from 1"
  done
  echo "$name: 3 steps at 1, 2, 3 threads: identical checkpoints and predictions; eval: $(tr '\n' ' ' < "$name.eval1.log")"
done
