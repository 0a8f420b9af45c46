#!/usr/bin/env bash
# Exact resume on the full Fashion-MNIST training set (60000 samples, batch
# 128: 469 steps per epoch, the last one short). For k in 1, 17, 468, 469,
# 470, "train k steps, save, load, train the rest" writes the checkpoint of
# one uninterrupted 480-step run byte for byte (weights, optimizer state,
# step, epoch and shuffle state). Then a run saving every 100 steps is killed
# with SIGKILL at a random moment after its first checkpoint; resuming from
# the last checkpoint it left ends with the uninterrupted run's final file.
# One thread, so every sum runs in the same order.
set -euo pipefail
kiln=$1 build=$2 src=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
export OPENBLAS_NUM_THREADS=1
cat >m.kiln <<'KILN'
input x : f32[?, 784]
label y : i32[?]
h = dense(x, 32, activation=relu)
p = dense(h, 10, activation=softmax)
output p
loss sparse_categorical_crossentropy(p, y)
train {
  optimizer = adam(lr=0.001)
  batch_size = 128
  epochs = 3
}
KILN
common=(--seed 11 --threads 1 --no-eval --data /usr/share/datasets/fashion-mnist)
N=480
"$kiln" train m.kiln "${common[@]}" --max-steps $N --save whole.safetensors >/dev/null
fails=0
for k in 1 17 468 469 470; do
  "$kiln" train m.kiln "${common[@]}" --max-steps $k --save a$k.safetensors >/dev/null
  "$kiln" train m.kiln "${common[@]}" --load a$k.safetensors --max-steps $((N - k)) \
    --save b$k.safetensors >/dev/null
  if cmp -s whole.safetensors b$k.safetensors; then echo "ok: resume after $k of $N steps is bit-identical"
  else echo "FAIL: resume after $k of $N steps differs"; python3 "$src/tests/sh/st_diff.py" whole.safetensors b$k.safetensors || true
    fails=$((fails + 1)); fi
done

# SIGKILL during a run that checkpoints every 100 steps.
step_of() { python3 - "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
print(json.loads(b[8:8 + n])['__metadata__']['step'])
PY
}
M=938  # two whole epochs
"$kiln" train m.kiln "${common[@]}" --max-steps $M --save whole2.safetensors >/dev/null
"$kiln" train m.kiln "${common[@]}" --max-steps $M --checkpoint-every 100 --save ck.safetensors >run.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -e ck.safetensors ] && break; sleep 0.01; done
sleep "0.$((RANDOM % 40))"
if kill -9 $pid 2>/dev/null; then killed=yes; else killed=no; fi
wait $pid 2>/dev/null || true
[ -e ck.safetensors ] || { echo "FAIL: no checkpoint was written"; cat run.log; exit 1; }
s=$(step_of ck.safetensors)
if [ "$s" -lt $M ]; then
  "$kiln" train m.kiln "${common[@]}" --load ck.safetensors --max-steps $((M - s)) --save ck.safetensors >/dev/null
fi
if cmp -s whole2.safetensors ck.safetensors; then
  echo "ok: killed (SIGKILL: $killed) with a checkpoint at step $s, resumed to the uninterrupted run's final file"
else echo "FAIL: resume after SIGKILL at step $s differs"; python3 "$src/tests/sh/st_diff.py" whole2.safetensors ck.safetensors || true
  fails=$((fails + 1)); fi
[ $fails -eq 0 ]
