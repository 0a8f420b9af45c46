#!/usr/bin/env bash
# Exact resume at any step: for k in 1, 7, 15, 16, 17 (16 steps per epoch),
# "train k steps, save, load, train the rest" gives the checkpoint of one
# uninterrupted 2-epoch run, bit for bit; --max-steps counts this run's steps.
set -euo pipefail
kiln=$1 build=$2 src=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
export OPENBLAS_NUM_THREADS=1
python3 "$src/tests/sh/npy_tool.py" head2idx /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz x.idx 1000
python3 "$src/tests/sh/npy_tool.py" head2idx /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz y.idx 1000
mkdir d && python3 "$src/tests/sh/npy_tool.py" idx2npy x.idx d/x_train.npy && python3 "$src/tests/sh/npy_tool.py" idx2npy y.idx d/y_train.npy
cat >m.kiln <<'KILN'
input x : f32[?, 784]
label y : i32[?]
h = dense(x, 16, activation=relu)
p = dense(h, 10, activation=softmax)
output p
loss sparse_categorical_crossentropy(p, y)
train {
  optimizer = adam(lr=0.001)
  batch_size = 64
  epochs = 2
}
KILN
common=(--seed 5 --no-eval --data d)   # 1000 samples: 16 steps per epoch
"$kiln" train m.kiln "${common[@]}" --save whole.safetensors >/dev/null
fails=0
for k in 1 7 15 16 17; do
  "$kiln" train m.kiln "${common[@]}" --max-steps $k --save a$k.safetensors >/dev/null
  "$kiln" train m.kiln "${common[@]}" --load a$k.safetensors --max-steps $((32 - k)) --save b$k.safetensors >/dev/null
  if cmp -s whole.safetensors b$k.safetensors; then echo "ok: resume after $k steps is bit-identical"
  else echo "FAIL: resume after $k steps differs"; fails=$((fails + 1)); fi
done
[ $fails -eq 0 ]
