#!/usr/bin/env bash
# The convnet written in C (examples/fashion_cnn.c, through the C API) and
# as a model file (examples/fashion_cnn.kiln, through `kiln train`) are one
# model: after 8 training steps with the same seed (dropout active), their
# checkpoints hold the same tensors, bit for bit. Another seed must differ,
# so the comparison can fail.
# Usage: cnn_c_vs_file.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 build=$2 src=$3
prog="$build/bin/fashion_cnn"
[ -x "$prog" ] || { echo "FAIL: $prog was not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$prog" --steps 8 --seed 5 --save "$tmp/c.safetensors" > "$tmp/c.out" ||
  { cat "$tmp/c.out"; fail "fashion_cnn --steps 8"; }
"$kiln" train "$src/examples/fashion_cnn.kiln" --max-steps 8 --seed 5 --no-eval \
  --save "$tmp/file.safetensors" > "$tmp/file.out"
"$prog" --steps 8 --seed 6 --save "$tmp/other.safetensors" > /dev/null

for want in 'Total params: 34,826' 'c2 (Conv2D) .*(None, 11, 11, 64) .* 18,496' \
            'test accuracy 0\.' "saved $tmp/c.safetensors"; do
  grep -q "$want" "$tmp/c.out" || { cat "$tmp/c.out"; fail "no '$want' in the output"; }
done
python3 "$src/tests/sh/st_diff.py" "$tmp/c.safetensors" "$tmp/file.safetensors" 0 ||
  fail "the C program's checkpoint differs from kiln train's"
if python3 "$src/tests/sh/st_diff.py" "$tmp/c.safetensors" "$tmp/other.safetensors" 0 > /dev/null; then
  fail "seed 6 gave the checkpoint of seed 5"
fi
echo "ok: the C program and the model file trained to the same checkpoint"
