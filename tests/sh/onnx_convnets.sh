#!/usr/bin/env bash
# PyTorch-exported convnets through Kiln's ONNX importer (NCHW -> NHWC):
# LeNet-5 (padding 2, AveragePool, the Shape -> ... -> Reshape flatten),
# the Keras "simple MNIST convnet" (Flatten, Dropout) and a net with
# BatchNormalization, a stride-2 Conv with explicit pads and
# GlobalAveragePool, and one with torch.cat of two conv branches and F.pad
# (a run-time Concat and a real Pad, both kept in NHWC), and one with F.pad
# reflect and replicate (Pad modes reflect and edge, also kept in NHWC)
# predict what PyTorch 1.13 predicts, to 1e-5 of the
# output's scale, through `kiln predict --input x.npy --output y.npy` (JIT
# and interpreter) and the AOT .so of `kiln compile` (called through ctypes).
# Usage: onnx_convnets.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
if ! "$kiln" --version | grep -q "onnx import: yes"; then
  echo "onnx_convnets.sh: this kiln has no ONNX support"; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$src/tests/onnx/torch_convnets.py" "$tmp" 2> "$tmp/torch.log" || { cat "$tmp/torch.log"; exit 1; }
for m in lenet convnet bnnet catnet padnet; do
  for backend in jit interp; do
    "$kiln" predict "$tmp/$m.onnx" --input "$tmp/x.npy" --output "$tmp/$m.$backend.npy" \
      --backend $backend --threads 1
  done
  "$kiln" compile "$tmp/$m.onnx" -o "$tmp/lib$m.so" --header "$tmp/$m.h"
  /usr/bin/python3 - "$tmp" $m <<'PY'
import ctypes, sys
import numpy as np
d, m = sys.argv[1], sys.argv[2]
x = np.ascontiguousarray(np.load(f"{d}/x.npy"), dtype=np.float32)
want = np.load(f"{d}/{m}.npy")
lib = ctypes.CDLL(f"{d}/lib{m}.so")
h = ctypes.c_void_p()
assert getattr(lib, f"{m}_create")(ctypes.c_int64(len(x)), ctypes.byref(h)) == 0
aot = np.zeros(want.shape, np.float32)
fp = ctypes.POINTER(ctypes.c_float)
assert getattr(lib, f"{m}_infer")(h, ctypes.c_int64(len(x)), x.ctypes.data_as(fp), aot.ctypes.data_as(fp)) == 0
getattr(lib, f"{m}_destroy")(h)
scale = float(np.abs(want).max())
for name, got in [("jit", np.load(f"{d}/{m}.jit.npy")), ("interp", np.load(f"{d}/{m}.interp.npy")), ("aot", aot)]:
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err = float(np.abs(got - want).max())
    print(f"{m} {name}: max |kiln - torch| = {err:.3g} (scale {scale:.3g})")
    assert err <= 1e-5 * scale, f"{m} {name}: outputs differ from PyTorch's"
PY
done
# The layout costs no transpose inside the network: one at the input only
# (the flatten's order is in the Gemm's weight rows).
n=$("$kiln" dump "$tmp/convnet.onnx" --function infer | grep -c ' = transpose(' || true)
[ "$n" -eq 1 ] || { echo "onnx_convnets.sh: convnet has $n transposes, expected 1"; exit 1; }
n=$("$kiln" dump "$tmp/catnet.onnx" --function infer | grep -c ' = transpose(' || true)
[ "$n" -eq 1 ] || { echo "onnx_convnets.sh: catnet has $n transposes, expected 1"; exit 1; }
n=$("$kiln" dump "$tmp/padnet.onnx" --function infer | grep -c ' = transpose(' || true)
[ "$n" -eq 1 ] || { echo "onnx_convnets.sh: padnet has $n transposes, expected 1"; exit 1; }
"$kiln" dump "$tmp/padnet.onnx" --function infer | grep -q 'mode=reflect' &&
  "$kiln" dump "$tmp/padnet.onnx" --function infer | grep -q 'mode=edge' ||
  { echo "onnx_convnets.sh: padnet's pads are not reflect and edge"; exit 1; }
echo "onnx_convnets.sh: ok"
