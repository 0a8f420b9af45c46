#!/usr/bin/env bash
# Training an imported model: the Keras convnet exported by PyTorch is
# fine-tuned on a slice of Fashion-MNIST by `kiln train model.onnx --loss
# sparse_categorical_crossentropy --optimizer 'adam(lr=...)'` (its Dropout
# active in train_step), and its test accuracy (`kiln eval model.onnx
# --loss ...`) rises from chance; the checkpoint holds the ONNX names (in
# Kiln's layout: conv kernels [kh, kw, in, out], the Linear [in, out]) and
# `kiln predict --load` uses it. Bad --loss / --optimizer are usage errors.
# Usage: onnx_train.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
fm=/usr/share/datasets/fashion-mnist
if ! "$kiln" --version | grep -q "onnx import: yes"; then
  echo "onnx_train.sh: this kiln has no ONNX support"; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$src/tests/onnx/torch_convnets.py" "$tmp" 2> "$tmp/torch.log" || { cat "$tmp/torch.log"; exit 1; }
/usr/bin/python3 - "$fm" "$tmp/fm.npz" <<'PY'
import gzip, sys
import numpy as np
d, out = sys.argv[1], sys.argv[2]
def idx(name, off):
    with gzip.open(f"{d}/{name}.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=off)
xs = idx("train-images-idx3-ubyte", 16).reshape(-1, 28, 28)
ys = idx("train-labels-idx1-ubyte", 8)
xt = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
yt = idx("t10k-labels-idx1-ubyte", 8)
f = lambda a: (a[:, None] / 255.0).astype(np.float32)
np.savez(out, x_train=f(xs[:6000]), y_train=ys[:6000].astype(np.int32),
         x_test=f(xt[:1000]), y_test=yt[:1000].astype(np.int32))
PY
acc() { sed -n 's/^test: .*accuracy \([0-9.]*\).*/\1/p' "$1"; }
loss="--loss sparse_categorical_crossentropy"
"$kiln" eval "$tmp/convnet.onnx" $loss --data "$tmp/fm.npz" > "$tmp/before.log"
"$kiln" train "$tmp/convnet.onnx" $loss --optimizer 'adam(lr=1e-3)' --data "$tmp/fm.npz" \
  --max-steps 150 --batch-size 32 --threads 1 --save "$tmp/ft.safetensors" > "$tmp/train.log"
tail -2 "$tmp/train.log"
a0=$(acc "$tmp/before.log") a1=$(acc "$tmp/train.log")
echo "onnx_train.sh: test accuracy $a0 before, $a1 after 150 steps"
awk -v a="$a0" -v b="$a1" 'BEGIN { exit !(a < 0.25 && b >= 0.6) }' || { echo "FAIL: accuracy did not rise"; exit 1; }
/usr/bin/python3 - "$tmp/ft.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
need = {"conv1.weight": [3, 3, 1, 32], "conv2.weight": [3, 3, 32, 64], "dense.weight": [1600, 10], "dense.bias": [10]}
for k, s in need.items():
    assert h[k]["shape"] == s, (k, h.get(k))
PY
"$kiln" predict "$tmp/convnet.onnx" --load "$tmp/ft.safetensors" --input "$tmp/x.npy" --output "$tmp/p.npy"
status=0
"$kiln" train "$tmp/convnet.onnx" --loss hinge 2> "$tmp/err" || status=$?
[ $status -ne 0 ] && grep -q "unknown loss 'hinge'" "$tmp/err" || { echo "FAIL: --loss hinge"; cat "$tmp/err"; exit 1; }
status=0
"$kiln" train "$tmp/convnet.onnx" $loss --optimizer 'adam(rate=1)' 2> "$tmp/err" || status=$?
[ $status -ne 0 ] && grep -q "bad argument near 'rate=1)'" "$tmp/err" || { echo "FAIL: --optimizer"; cat "$tmp/err"; exit 1; }
echo "onnx_train.sh: ok"
