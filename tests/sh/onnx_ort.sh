#!/usr/bin/env bash
# The peer on the same file: an MLP exported by PyTorch 1.13
# (tests/onnx/torch_mlp.py) run by `kiln predict` (JIT and interpreter) and
# by ONNX Runtime (tests/onnx/ort_run.js, 1 thread) agrees to 1e-5 of the
# output's scale, and ONNX Runtime agrees with PyTorch; the import is fused
# dense ops and its export runs in ONNX Runtime. Skipped, saying so,
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
# PyTorch's Linear weights are [out, in] (Gemm transB=1); the import holds
# them as [in, out] under their ONNX names, so each Gemm + Relu is one
# fused dense, and `kiln export` writes them as held (Gemm transB=0): ONNX's
# checker and ONNX Runtime take the file, and its import predicts the same.
"$kiln" dump "$tmp/mlp.onnx" > "$tmp/dump.txt"
n_dense=$(grep -c ' = dense(' "$tmp/dump.txt" || true)
grep -q 'transpose' "$tmp/dump.txt" && { echo "FAIL: a transpose left in the imported MLP"; cat "$tmp/dump.txt"; exit 1; }
[ "$n_dense" -ge 2 ] || { echo "FAIL: $n_dense dense ops after fuse-dense-act"; cat "$tmp/dump.txt"; exit 1; }
grep -q ' = dense(.*activation=relu' "$tmp/dump.txt" || { echo "FAIL: no dense with relu"; exit 1; }
"$kiln" export "$tmp/mlp.onnx" -o "$tmp/re.onnx"
"$kiln" predict "$tmp/re.onnx" --input "$tmp/x.npy" --output "$tmp/re.npy" --threads 1
NODE_PATH=$node_path node "$src/tests/onnx/ort_run.js" "$tmp/re.onnx" --input "$tmp/x.npy" \
  --output "$tmp/re_ort.npy"
/usr/bin/python3 - "$tmp" "$n_dense" <<'PY'
import sys
import numpy as np
import onnx
t = sys.argv[1]
src, re = onnx.load(f"{t}/mlp.onnx"), onnx.load(f"{t}/re.onnx")
onnx.checker.check_model(re, full_check=True)
w = {i.name: list(i.dims) for i in src.graph.initializer}
for i in re.graph.initializer:
    if len(i.dims) == 2:
        assert list(i.dims) == w[i.name][::-1], (i.name, list(i.dims), w[i.name])
assert all(a.name != "transB" or a.i == 0 for n in re.graph.node for a in n.attribute)
jit, ort = np.load(f"{t}/jit.npy"), np.load(f"{t}/ort.npy")
err = float(np.abs(np.load(f"{t}/re.npy").reshape(jit.shape) - jit).max())
err2 = float(np.abs(np.load(f"{t}/re_ort.npy").reshape(ort.shape) - ort).max())
print(f"onnx_ort.sh: {sys.argv[2]} fused dense ops; the export ([in, out] weights, transB=0): "
      f"kiln {err:.3g} from the import, ONNX Runtime {err2:.3g} from its run of the original")
assert err == 0 and err2 <= 1e-5 * float(np.abs(ort).max())
PY
# One initializer W [4, 3] as a Gemm's transB=1 weight, as a MatMul's plain
# one and again transposed: one parameter W held [3, 4], a transpose of it
# where the plain layout is needed; outputs as NumPy's.
/usr/bin/python3 - "$tmp" <<'PY'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
t = sys.argv[1]
rs = np.random.RandomState(0)
W, b, x = rs.randn(4, 3).astype(np.float32), rs.randn(4).astype(np.float32), rs.rand(5, 3).astype(np.float32)
nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "W"], ["y0"]), helper.make_node("Gemm", ["y0", "W"], ["y"], transB=1)]
g = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                      [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), f"{t}/shared.onnx")
np.save(f"{t}/xs.npy", x)
np.save(f"{t}/ys.npy", (np.maximum(x @ W.T + b, 0) @ W) @ W.T)
PY
for backend in jit interp; do
  "$kiln" predict "$tmp/shared.onnx" --input "$tmp/xs.npy" --output "$tmp/shared_$backend.npy" --backend $backend
done
"$kiln" summary "$tmp/shared.onnx" > /dev/null
"$kiln" dump "$tmp/shared.onnx" | grep -q '^param @W : f32\[3,4\]' || { echo "FAIL: W is not held [3, 4]"; exit 1; }
/usr/bin/python3 - "$tmp" <<'PY'
import sys
import numpy as np
t = sys.argv[1]
want = np.load(f"{t}/ys.npy")
for backend in ("jit", "interp"):
    err = float(np.abs(np.load(f"{t}/shared_{backend}.npy").reshape(want.shape) - want).max())
    print(f"onnx_ort.sh: a weight shared by Gemm transB=1 and MatMul, {backend}: max |difference| {err:.3g} (scale {np.abs(want).max():.3g})")
    assert err <= 1e-6 * float(np.abs(want).max())
PY
echo "onnx_ort.sh: ok"
