#!/usr/bin/env bash
# Checkpoints that do not fit the model, or are broken, get one clear line on
# stderr and exit status 1: a checkpoint of another model names the first
# tensor that differs with both shapes (and how many more differ); a corrupt
# file names what is wrong with it; the model is left as it was.
source "$(dirname "$0")/badinput.bash"
make_idx good good
run=("$kiln" train --backend interp --no-eval --data good --max-steps 2)
"${run[@]}" tiny.kiln --save tiny.safetensors >/dev/null
sed 's/dense(x, 5,/dense(x, 6,/' tiny.kiln >wider.kiln
"${run[@]}" wider.kiln --save wider.safetensors >/dev/null
sed 's/^p = dense(h, 3/h2 = dense(h, 5)\np = dense(h2, 3/' tiny.kiln >deeper.kiln
"${run[@]}" deeper.kiln --save deeper.safetensors >/dev/null
eval=("$kiln" eval tiny.kiln --backend interp --data good --load)

expect 1 "kiln: error: wider.safetensors: tensor 'h.kernel' has shape [4,6], the model expects [4,5] (and 8 more tensors that do not match)" \
  "${eval[@]}" wider.safetensors
expect 1 "kiln: error: deeper.safetensors: tensor 'h2.kernel' is not in the model (and 1 more tensor that does not match)" \
  "${eval[@]}" deeper.safetensors
expect 1 "kiln: error: tiny.safetensors: tensor 'h.kernel' has shape [4,5], the model expects [4,6] (and 8 more tensors that do not match)
kiln: note: --finetune loads the tensors that match and starts the rest fresh" \
  "$kiln" train wider.kiln --backend interp --no-eval --data good --load tiny.safetensors

# Corrupt files, each spoiled one way.
/usr/bin/python3 - <<'PY'
import struct
b = open("tiny.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
open("cut.safetensors", "wb").write(b[:100])                      # cut inside the header
open("short.safetensors", "wb").write(b[:-4])                     # cut inside the data
open("json.safetensors", "wb").write(b[:8] + b"[" + b[9:])         # not a JSON object
open("trail.safetensors", "wb").write(b + b"\0" * 4)              # bytes no tensor owns
open("garbage.safetensors", "wb").write(b"this is not a checkpoint\n")
open("empty.safetensors", "wb").write(b"")
h = b[8:8 + n].replace(b'"h.kernel":{"dtype":"F32"', b'"h.kernel":{"dtype":"F99"')
open("dtype.safetensors", "wb").write(b[:8] + h + b[8 + n:])
h = b[8:8 + n].replace(b'"h.bias":{"dtype":"F32","shape":[5]', b'"h.bias":{"dtype":"F32","shape":[6]')
open("shape.safetensors", "wb").write(b[:8] + h + b[8 + n:])
# NaN in the first weight of h.kernel.
meta = b[8:8 + n].decode()
import json
off = json.loads(meta)["h.kernel"]["data_offsets"][0]
start = 8 + n + off
open("nan.safetensors", "wb").write(b[:start] + struct.pack("<f", float("nan")) + b[start + 4:])
PY
size=$(stat -c %s tiny.safetensors)
hlen=$(/usr/bin/python3 -c 'import struct,sys; print(struct.unpack("<Q", open("tiny.safetensors","rb").read(8))[0])')
expect 1 "kiln: error: cut.safetensors: header length $hlen exceeds the file size (100 bytes)" \
  "${eval[@]}" cut.safetensors
expect 1 "kiln: error: short.safetensors: tensor 'optimizer.p.bias.v': data_offsets [$((size - 8 - hlen - 12)),$((size - 8 - hlen))] go beyond the data ($((size - 8 - hlen - 4)) bytes)" \
  "${eval[@]}" short.safetensors
expect 1 "kiln: error: json.safetensors: the header is not valid JSON (error near byte 15)" \
  "${eval[@]}" json.safetensors
expect 1 "kiln: error: trail.safetensors: bytes [$((size - 8 - hlen)),$((size - 8 - hlen + 4))) of the data belong to no tensor" \
  "${eval[@]}" trail.safetensors
expect 1 "kiln: error: garbage.safetensors: header length 2338328219631577204 exceeds the file size (25 bytes)" \
  "${eval[@]}" garbage.safetensors
expect 1 "kiln: error: empty.safetensors: too short for a safetensors file (0 bytes)" \
  "${eval[@]}" empty.safetensors
expect 1 "kiln: error: dtype.safetensors: tensor 'h.kernel': unknown dtype 'F99'" \
  "${eval[@]}" dtype.safetensors
expect 1 "kiln: error: shape.safetensors: tensor 'h.bias': data_offsets [80,100] hold 20 bytes, but F32 [6] needs 24" \
  "${eval[@]}" shape.safetensors
expect 1 "kiln: error: nan.safetensors: tensor 'h.kernel' holds NaN at element 0" \
  "${eval[@]}" nan.safetensors
expect 1 "kiln: error: nothing.safetensors: No such file or directory" "${eval[@]}" nothing.safetensors
expect 1 "kiln: error: good: is a directory" "${eval[@]}" good
finish
