#!/usr/bin/env bash
# ONNX models through the command line: an MLP exported by PyTorch 1.13
# (dynamic batch, its view(x.size(0), -1) flatten) predicts what PyTorch
# predicts to 1e-5 of the output's scale, with the JIT and the interpreter,
# and without --load (the weights are the initializers); models Kiln must
# refuse give one message naming every unsupported node, or the tensor whose
# size is absurd. Usage: onnx_torch.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
if ! "$kiln" --version | grep -q "onnx import: yes"; then
  echo "onnx_torch.sh: this kiln has no ONNX support"; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$src/tests/onnx/torch_mlp.py" "$tmp" 2> "$tmp/torch.log" || { cat "$tmp/torch.log"; exit 1; }

for backend in jit interp; do
  "$kiln" predict "$tmp/mlp.onnx" --input "$tmp/images.idx" --output "$tmp/$backend.txt" \
    --backend $backend --threads 1
  /usr/bin/python3 - "$tmp/$backend.txt" "$tmp/expected.txt" $backend <<'PY'
import sys
got = [list(map(float, l.split()[1:])) for l in open(sys.argv[1])]
want = [list(map(float, l.split())) for l in open(sys.argv[2])]
assert len(got) == len(want) == 50, (len(got), len(want))
scale = max(abs(v) for row in want for v in row)
err = max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))
print(f"{sys.argv[3]}: max |kiln - torch| = {err:.3g} (scale {scale:.3g})")
assert len(got[0]) == 10 and err <= 1e-5 * scale, "outputs differ from PyTorch's"
PY
done
"$kiln" summary "$tmp/mlp.onnx" | grep -q "Total params: 52,650"

/usr/bin/python3 "$src/tests/onnx/bad_models.py" "$tmp"
expect_error() { # model, text the message must hold
  if "$kiln" summary "$tmp/$1.onnx" > /dev/null 2> "$tmp/err"; then
    echo "onnx_torch.sh: $1.onnx was accepted"; exit 1
  fi
  grep -qF -- "$2" "$tmp/err" || { echo "onnx_torch.sh: $1.onnx: expected '$2' in:"; cat "$tmp/err"; exit 1; }
}
expect_error unsupported "2 unsupported nodes: 'frob_1' (Frobnicate, opset 13), 'zorp_2' (Zorp, opset 13)"
expect_error huge "tensor 'W_huge': dimension 1099511627776 is out of range"
expect_error short "tensor 'W_short': float data of 3 elements for dims of 4 elements"
expect_error external "tensor 'W_ext': external data is not supported"
expect_error many "the graph has 100001 nodes (at most 100000)"
expect_error nested "messages nested more than 64 deep (field 'node' of onnx.GraphProto)"
"$kiln" summary "$tmp/deep.onnx" > /dev/null
echo "onnx_torch.sh: ok"
