#!/usr/bin/env bash
# The seed model written in C (examples/mnist_mlp.c, the real program) and
# as a model file (examples/mnist_mlp.kiln, through `kiln train`) are one
# model: after 50 training steps with the same seed, their checkpoints hold
# the same tensors, bit for bit — weights, Adam's slots and the step. A
# third run with another seed must differ, so the comparison can fail.
# Usage: mnist_c_vs_file.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 build=$2 src=$3
prog="$build/bin/mnist_mlp"
[ -x "$prog" ] || { echo "FAIL: $prog was not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$prog" --steps 50 --seed 5 --save "$tmp/c.safetensors" > "$tmp/c.out" ||
  { cat "$tmp/c.out"; echo "FAIL: mnist_mlp --steps 50"; exit 1; }
"$kiln" train "$src/examples/mnist_mlp.kiln" --max-steps 50 --seed 5 --no-eval \
  --save "$tmp/file.safetensors" > "$tmp/file.out"
"$prog" --steps 50 --seed 6 --save "$tmp/other.safetensors" > /dev/null

# The program did what its tutorial says: summary, training, test, predictions.
for want in 'Total params: 109,386' 'the callback saw 50 batches' 'test accuracy 0\.' \
            'test image 7: predicted [0-9]' "saved $tmp/c.safetensors"; do
  grep -q "$want" "$tmp/c.out" ||
    { cat "$tmp/c.out"; echo "FAIL: no '$want' in the output"; exit 1; }
done

/usr/bin/python3 - "$tmp/c.safetensors" "$tmp/file.safetensors" "$tmp/other.safetensors" <<'PY'
import json, struct, sys

def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items()}, meta

def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)

c, cm = load(sys.argv[1])
f, fm = load(sys.argv[2])
o, _ = load(sys.argv[3])
params = sorted(k for k in c if not k.startswith("optimizer."))
if params != ["h1.bias", "h1.kernel", "h2.bias", "h2.kernel", "p.bias", "p.kernel"]:
    fail("parameters of the C program: %s" % params)
if sorted(c) != sorted(f):
    fail("the checkpoints hold different tensors: %s vs %s" % (sorted(c), sorted(f)))
for k in sorted(c):
    if c[k][:2] != f[k][:2]:
        fail("%s: %s %s in C, %s %s from the file" % (k, c[k][0], c[k][1], f[k][0], f[k][1]))
    if c[k][2] != f[k][2]:
        if c[k][0] == "F32":
            n = len(c[k][2]) // 4
            a = struct.unpack("<%df" % n, c[k][2])
            b = struct.unpack("<%df" % n, f[k][2])
            bad = sum(1 for x, y in zip(a, b) if x != y)
            worst = max(abs(x - y) for x, y in zip(a, b))
            fail("%s: %d of %d values differ (max %g)" % (k, bad, n, worst))
        fail("%s differs" % k)
if cm.get("step") != "50" or fm.get("step") != "50":
    fail("steps: %s in C, %s from the file" % (cm.get("step"), fm.get("step")))
if cm.get("model") != fm.get("model") or cm.get("structure_hash") != fm.get("structure_hash"):
    fail("metadata: %s vs %s" % (cm, fm))
moved = [k for k in params if c[k][2] != o[k][2]]
if moved != params:
    fail("another seed gave the same %s" % sorted(set(params) - set(moved)))
print("ok: %d tensors bit-identical after 50 steps (seed 5); seed 6 differs" % len(c))
PY
