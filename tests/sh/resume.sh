#!/usr/bin/env bash
# Exact resume: "train 2 epochs" and "train 1 epoch, save, load, train 1
# epoch" give bit-identical weights and optimizer state; fine-tuning a
# model with another head loads what matches and reports the rest.
set -euo pipefail
kiln=$1 build=$2 src=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
M=$src/examples/mnist_mlp.kiln
common=(--threads 1 --seed 7 --no-eval)

"$kiln" train "$M" "${common[@]}" --epochs 2 --save "$T/two.safetensors" >/dev/null
"$kiln" train "$M" "${common[@]}" --epochs 1 --save "$T/one.safetensors" >/dev/null
"$kiln" train "$M" "${common[@]}" --epochs 1 --load "$T/one.safetensors" \
        --save "$T/resumed.safetensors" >/dev/null

/usr/bin/python3 - "$T/two.safetensors" "$T/resumed.safetensors" <<'PY'
import json, struct, sys
# Explicit checks, not assert (python -O and PYTHONOPTIMIZE strip asserts).
def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop('__metadata__', {})
    return {k: b[8 + n + v['data_offsets'][0]: 8 + n + v['data_offsets'][1]] for k, v in h.items()}, meta
a, ma = load(sys.argv[1]); b, mb = load(sys.argv[2])
if sorted(a) != sorted(b):
    fail("other tensors after resume: %s vs %s" % (sorted(a), sorted(b)))
if not a:
    fail("no tensors in the checkpoints")
diff = [k for k in a if a[k] != b[k]]
if diff:
    fail("tensors differ after resume: %s" % diff)
if not (ma.get('step') == mb.get('step') == '938'):
    fail("steps %r and %r, expected 938" % (ma.get('step'), mb.get('step')))
if not (ma.get('epoch') == mb.get('epoch') == '2'):
    fail("epochs %r and %r, expected 2" % (ma.get('epoch'), mb.get('epoch')))
print("resume: %d tensors bit-identical, step %s" % (len(a), ma['step']))
PY

# Fine-tuning: a model with a narrower second layer loads h1 from the
# checkpoint and reports h2 and p (other shapes) as skipped; a strict load of
# the same file is refused with a message naming the tensor and both shapes.
sed -e 's/^h2 = dense(h1, 64, activation=relu)/h2 = dense(h1, 32, activation=relu)/' "$M" > "$T/narrow.kiln"
grep -q 'dense(h1, 32' "$T/narrow.kiln"
set +e
"$kiln" train "$T/narrow.kiln" --load "$T/one.safetensors" --max-steps 1 --no-eval >"$T/strict.out" 2>"$T/strict.err"
rc=$?
set -e
[ $rc -eq 1 ] || { echo "strict load of another shape: rc=$rc"; cat "$T/strict.err"; exit 1; }
grep -q "tensor 'h2.kernel' has shape \[128,64\], the model expects \[128,32\]" "$T/strict.err" ||
  { echo "strict error does not name the tensor and both shapes:"; cat "$T/strict.err"; exit 1; }
"$kiln" train "$T/narrow.kiln" --load "$T/one.safetensors" --finetune --max-steps 1 --no-eval \
        >"$T/ft.out" 2>"$T/ft.err" || { cat "$T/ft.err"; exit 1; }
grep -q "loaded .* skipped" "$T/ft.err" || { echo "fine-tune did not report:"; cat "$T/ft.err"; exit 1; }
grep -q "skipped h2.kernel" "$T/ft.err" || { echo "fine-tune does not name h2.kernel:"; cat "$T/ft.err"; exit 1; }
if grep -q "skipped h1.kernel" "$T/ft.err"; then echo "h1.kernel was not loaded"; exit 1; fi
echo "ok: resume exact; fine-tune loads h1 and skips the rest"
