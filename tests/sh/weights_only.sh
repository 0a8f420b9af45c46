#!/usr/bin/env bash
# A weights-only safetensors file (no optimizer state, as PyTorch's
# save_file(model.state_dict()) writes) evaluates, predicts and trains with
# a fresh optimizer and one note saying so; a file missing a weight is
# still refused with the tensor named.
set -euo pipefail
kiln=$1 build=$2 src=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
export OPENBLAS_NUM_THREADS=1
M=$src/examples/mnist_mlp.kiln
"$kiln" train "$M" --max-steps 20 --no-eval --save full.safetensors >/dev/null
strip() { # strip IN OUT [DROP]: only the parameters (and not DROP)
python3 - "$@" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
h.pop('__metadata__', None)
out, data = {}, b''
for k, v in h.items():
    if k.startswith('optimizer.') or (len(sys.argv) > 3 and k == sys.argv[3]):
        continue
    s, e = v['data_offsets']
    out[k] = dict(dtype=v['dtype'], shape=v['shape'], data_offsets=[len(data), len(data) + e - s])
    data += b[8 + n + s:8 + n + e]
hj = json.dumps(out).encode(); hj += b' ' * ((8 - len(hj) % 8) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hj)) + hj + data)
PY
}
strip full.safetensors w.safetensors
strip full.safetensors nokernel.safetensors h2.kernel
"$kiln" eval "$M" --load full.safetensors | tail -1 >full.txt
"$kiln" eval "$M" --load w.safetensors 2>eval.err | tail -1 >w.txt
cmp full.txt w.txt || { echo "weights-only eval differs"; cat full.txt w.txt; exit 1; }
[ ! -s eval.err ] || { echo "eval printed:"; cat eval.err; exit 1; }
"$kiln" predict "$M" --load w.safetensors --input /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz >/dev/null
"$kiln" train "$M" --load w.safetensors --max-steps 2 --no-eval >/dev/null 2>train.err
[ "$(cat train.err)" = "kiln: note: w.safetensors: weights only (no optimizer state): training starts a fresh optimizer" ] ||
  { echo "train note:"; cat train.err; exit 1; }
if "$kiln" eval "$M" --load nokernel.safetensors >/dev/null 2>bad.err; then echo "a missing weight loaded"; exit 1; fi
grep -q "tensor 'h2.kernel' is missing" bad.err || { echo "missing weight message:"; cat bad.err; exit 1; }
# compile --load embeds the same weights as the full checkpoint's.
"$kiln" compile "$M" --load full.safetensors --name m --emit llvm -o full.ll
"$kiln" compile "$M" --load w.safetensors --name m --emit llvm -o w.ll
cmp -s full.ll w.ll || { echo "compile --load: weights-only LLVM IR differs from the full checkpoint's"; exit 1; }
"$kiln" compile "$M" --load w.safetensors --train --emit obj -o w.o
# A file of another model: training names the tensor and points at --finetune.
sed 's/dense(h1, 64/dense(h1, 32/' "$M" >other.kiln
if "$kiln" train other.kiln --load w.safetensors --max-steps 1 --no-eval >/dev/null 2>other.err; then
  echo "a mismatched checkpoint loaded"; exit 1; fi
grep -q "tensor 'h2.kernel' has shape" other.err && grep -q -- "note: --finetune loads" other.err ||
  { echo "mismatch message:"; cat other.err; exit 1; }
"$kiln" train other.kiln --load w.safetensors --finetune --max-steps 1 --no-eval >/dev/null 2>&1 ||
  { echo "--finetune did not load"; exit 1; }
echo "ok: weights-only eval = full eval ($(cat w.txt)); train notes the fresh optimizer; a missing weight is named; compile --load embeds them; --finetune suggested"
