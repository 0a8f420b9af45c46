#!/usr/bin/env bash
# A loss that turns NaN or Inf stops training with one line naming the step
# and the first non-finite tensor (here the op and its line in the model
# file), exit status 1; --continue-on-nan trains on; and a checkpoint is never
# written with non-finite weights over a good one (the old file stays, byte
# for byte, and the message names the tensor).
source "$(dirname "$0")/badinput.bash"
make_idx good good
for backend in jit interp; do
  expect 1 "kiln: error: step 3: the loss is infinite: the first non-finite value (Inf) is computed by dense at blowup.kiln:5:5; the model keeps the weights of step 2 (use --continue-on-nan to go on)" \
    "$kiln" train blowup.kiln --backend $backend --data good --epochs 3 --no-eval
done
# A good checkpoint after one step, then training on through NaN: the save at
# the end is refused and the good file kept.
"$kiln" train blowup.kiln --data good --max-steps 1 --no-eval --save good.safetensors >/dev/null
cp good.safetensors before.safetensors
expect 1 "kiln: error: good.safetensors: not saved: tensor 'h.kernel' holds NaN at element 0; the previous checkpoint is kept" \
  "$kiln" train blowup.kiln --data good --epochs 3 --no-eval --continue-on-nan --load good.safetensors --save good.safetensors
cmp -s good.safetensors before.safetensors || { echo "FAIL: the good checkpoint was overwritten"; fails=$((fails + 1)); }
grep -q "Epoch 3/3 .*loss: -\?nan" "$T/.out" || { echo "FAIL: --continue-on-nan did not train 3 epochs:"; cat "$T/.out"; fails=$((fails + 1)); }
for f in .*.tmp-*; do [ -e "$f" ] && { echo "FAIL: a temporary file was left behind: $f"; fails=$((fails + 1)); }; done
# Saving every step stops at the first step with non-finite weights, the
# last good checkpoint in place.
expect 1 "kiln: error: every.safetensors: not saved: tensor 'h.kernel' holds -Inf at element 0; the previous checkpoint is kept" \
  "$kiln" train blowup.kiln --data good --epochs 3 --no-eval --continue-on-nan --save every.safetensors --checkpoint-every 1
/usr/bin/python3 - <<'PY' || fails=$((fails + 1))
import json, struct, sys
b = open("every.safetensors", "rb").read()
meta = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]
if meta.get("step") != "2":  # not assert: PYTHONOPTIMIZE would strip it
    print("FAIL: the last checkpoint written is of step %s, not 2" % meta.get("step"))
    sys.exit(1)
print("ok: every.safetensors holds step 2, the last with finite weights")
PY
finish
