#!/usr/bin/env bash
# kiln export: the seed MLP, the convnet and the batch-norm convnet, trained
# a few steps, exported; ONNX's checker accepts each file, ONNX Runtime
# (tests/onnx/ort_env.sh installs it) gives `kiln predict`'s outputs to
# 1e-5, and import(export(m)) predicts what m does, also with m's own
# checkpoint loaded (the initializers keep Kiln's names). Every op the
# exporter maps (tests/onnx/export_ops.kir, through the C API) matches the
# interpreter and the JIT in ONNX Runtime. An op with no ONNX mapping is an
# error at its place and writes no file.
# Usage: onnx_export.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 build=$2 src=$3
if ! "$kiln" --version | grep -q "onnx import: yes"; then
  echo "onnx_export.sh: this kiln has no ONNX support"; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3

if node_path=$("$src/tests/onnx/ort_env.sh" 2> "$tmp/ort.log"); then
  ort() { NODE_PATH=$node_path node "$src/tests/onnx/ort_run.js" "$@"; }
else
  cat "$tmp/ort.log"
  echo "onnx_export.sh: SKIPPING the ONNX Runtime checks: onnxruntime-node could not be installed"
  ort() { return 0; }
fi

# close A B WHAT: A and B (.npy) agree to 1e-5 of B's scale (missing A: skipped).
close() {
  [ -f "$1" ] || return 0
  $py - "$@" <<'PY'
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
a = a.reshape(b.shape)
scale = max(float(np.abs(b).max()), 1e-30)
err = float(np.abs(a - b).max())
print(f"{sys.argv[3]}: max |difference| = {err:.3g} (scale {scale:.3g})")
assert err <= 1e-5 * scale, f"{sys.argv[3]}: outputs differ"
PY
}

# check MODEL.onnx: ONNX's own checker accepts it; prints the op types.
check() {
  $py - "$1" <<'PY'
import sys
import onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
assert m.opset_import[0].version >= 13 and m.producer_name == "kiln"
print(sys.argv[1].split("/")[-1] + ":", " ".join(n.op_type for n in m.graph.node))
PY
}

# Inputs: 20 test images, as [20, 784] for the MLP and NHWC for the convnets.
$py - "$tmp" <<'PY'
import sys
import numpy as np
x = np.random.RandomState(7).rand(20, 28, 28, 1).astype(np.float32)
np.save(f"{sys.argv[1]}/x_img.npy", x)
np.save(f"{sys.argv[1]}/x_mlp.npy", x.reshape(20, 784))
PY

for spec in mnist_mlp:x_mlp:40 fashion_cnn:x_img:8 fashion_bn_cnn:x_img:8; do
  IFS=: read -r m x steps <<< "$spec"
  "$kiln" train "$src/examples/$m.kiln" --epochs 1 --max-steps "$steps" --no-eval \
    --threads 1 --save "$tmp/$m.st" > /dev/null
  "$kiln" export "$src/examples/$m.kiln" --load "$tmp/$m.st" -o "$tmp/$m.onnx"
  check "$tmp/$m.onnx"
  "$kiln" predict "$src/examples/$m.kiln" --load "$tmp/$m.st" --input "$tmp/$x.npy" \
    --output "$tmp/$m.kiln.npy" --threads 1
  ort "$tmp/$m.onnx" --input "$tmp/$x.npy" --output "$tmp/$m.ort.npy"
  close "$tmp/$m.ort.npy" "$tmp/$m.kiln.npy" "$m: ONNX Runtime vs kiln predict"
  # import(export(m)): the file as a model, with its own weights and with m's checkpoint.
  "$kiln" predict "$tmp/$m.onnx" --input "$tmp/$x.npy" --output "$tmp/$m.re.npy" --threads 1
  close "$tmp/$m.re.npy" "$tmp/$m.kiln.npy" "$m: kiln predict of the export"
  "$kiln" predict "$tmp/$m.onnx" --load "$tmp/$m.st" --input "$tmp/$x.npy" \
    --output "$tmp/$m.re2.npy" --threads 1
  close "$tmp/$m.re2.npy" "$tmp/$m.kiln.npy" "$m: the export with the .kiln checkpoint"
done

# Every exportable op, through the C API: interpreter and JIT against ORT.
"$build/bin/export_check" "$src/tests/onnx/export_ops.kir" "$tmp"
check "$tmp/model.onnx"
$py - "$tmp" <<'PY'
import sys
import numpy as np
import onnx
m = onnx.load(f"{sys.argv[1]}/model.onnx")
shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
x = np.load(f"{sys.argv[1]}/x_flat.npy")
np.save(f"{sys.argv[1]}/x_ops.npy", x.reshape([x.shape[0]] + shape[1:]))
PY
ort "$tmp/model.onnx" --input "$tmp/x_ops.npy" --output "$tmp/ops.ort.npy"
close "$tmp/ops.ort.npy" "$tmp/y_interp.npy" "export_ops: ONNX Runtime vs the interpreter"
close "$tmp/ops.ort.npy" "$tmp/y_jit.npy" "export_ops: ONNX Runtime vs the JIT"

# No mapping: each op named at its place, no file left behind.
cat > "$tmp/bad.kir" <<'EOF'
module @bad
param @w : f32[4,2] = glorot_uniform
func @infer(%x : f32[?,4], %y : f32[?,2]) -> f32[] {
  %0 = matmul(%x, @w) : f32[?,2]  # bad.kiln:4:6
  %1 = mean_squared_error(%0, %y) : f32[]  # bad.kiln:5:6
  %2 = allreduce_mean(%1) : f32[]  # bad.kiln:6:6
  return %2
}
EOF
if "$kiln" export "$tmp/bad.kir" -o "$tmp/bad.onnx" 2> "$tmp/err"; then
  echo "onnx_export.sh: bad.kir was exported"; exit 1
fi
for want in "bad.kiln:5:6: error: ONNX export: op 'mean_squared_error' in @infer has no ONNX mapping" \
            "bad.kiln:6:6: error: ONNX export: op 'allreduce_mean' in @infer has no ONNX mapping"; do
  grep -qF -- "$want" "$tmp/err" || { echo "onnx_export.sh: expected '$want' in:"; cat "$tmp/err"; exit 1; }
done
if ls "$tmp"/bad.onnx* > /dev/null 2>&1; then echo "onnx_export.sh: a file was left"; exit 1; fi
echo "onnx_export.sh: ok"
