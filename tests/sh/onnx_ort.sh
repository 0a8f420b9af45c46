#!/usr/bin/env bash
# The peer on the same file: an MLP exported by PyTorch 1.13
# (tests/onnx/torch_mlp.py) run by `kiln predict` (JIT and interpreter) and
# by ONNX Runtime (tests/onnx/ort_run.js, 1 thread) agrees to 1e-5 of the
# output's scale, and ONNX Runtime agrees with PyTorch. Skipped, saying so,
# only when onnxruntime-node cannot be installed.
# Usage: onnx_ort.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
if ! "$kiln" --version | grep -q "onnx import: yes"; then
  echo "onnx_ort.sh: this kiln has no ONNX support"; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! node_path=$("$src/tests/onnx/ort_env.sh"); then
  echo "onnx_ort.sh: SKIPPED: onnxruntime-node could not be installed (see above)"
  exit 0
fi
/usr/bin/python3 "$src/tests/onnx/torch_mlp.py" "$tmp" 2> "$tmp/torch.log" || { cat "$tmp/torch.log"; exit 1; }
# The images as PyTorch and ONNX Runtime see them: [50, 1, 28, 28] / 255.
/usr/bin/python3 - "$tmp" <<'PY'
import sys
import numpy as np
raw = open(f"{sys.argv[1]}/images.idx", "rb").read()[16:]
x = np.frombuffer(raw, np.uint8).reshape(50, 1, 28, 28).astype(np.float32) / 255
np.save(f"{sys.argv[1]}/x.npy", x)
np.save(f"{sys.argv[1]}/torch.npy", np.loadtxt(f"{sys.argv[1]}/expected.txt", dtype=np.float32))
PY
NODE_PATH=$node_path node "$src/tests/onnx/ort_run.js" "$tmp/mlp.onnx" --input "$tmp/x.npy" \
  --output "$tmp/ort.npy"
for backend in jit interp; do
  "$kiln" predict "$tmp/mlp.onnx" --input "$tmp/x.npy" --output "$tmp/$backend.npy" \
    --backend $backend --threads 1
done
/usr/bin/python3 - "$tmp" <<'PY'
import sys
import numpy as np
t = sys.argv[1]
ort, torch = np.load(f"{t}/ort.npy"), np.load(f"{t}/torch.npy")
assert ort.shape == torch.shape == (50, 10), (ort.shape, torch.shape)
scale = float(np.abs(ort).max())
for name, other in (("kiln jit", np.load(f"{t}/jit.npy")), ("kiln interp", np.load(f"{t}/interp.npy")),
                    ("pytorch", torch)):
    err = float(np.abs(other.reshape(ort.shape) - ort).max())
    print(f"{name} vs ONNX Runtime: max |difference| = {err:.3g} (scale {scale:.3g})")
    assert err <= 1e-5 * scale, f"{name} differs from ONNX Runtime"
PY
echo "onnx_ort.sh: ok"
