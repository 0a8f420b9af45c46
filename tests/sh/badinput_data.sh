#!/usr/bin/env bash
# Datasets that do not fit the model, or are broken, get one clear line on
# stderr and exit status 1: images of another size, a label out of range,
# NaN or Inf in float images, missing or truncated files.
source "$(dirname "$0")/badinput.bash"
for k in good size label nan inf trunc truncgz count swapped nolabels; do make_idx "$k" "$k"; done
mkdir empty
train=("$kiln" train tiny.kiln --backend interp --no-eval --data)

expect 1 "kiln: error: size/train-images-idx3-ubyte: images are 3x3 = 9 values, the model expects 4" \
  "${train[@]}" size
# An image model takes images of its input's shape, checked before anything
# is compiled (no "compiled" line), at the input's declaration.
cat >img.kiln <<'KILN'
model img
input x : f32[?, 1, 9, 1]
label y : f32[?, 3]
c = conv2d(x, 2, 1, activation=relu)
p = dense(flatten(c), 3, activation=softmax)
output p
loss categorical_crossentropy(p, y)
KILN
expect 1 "img.kiln:2:7: error: size/train-images-idx3-ubyte: images are 3x3, the model's input 'x' is f32[?,1,9,1]" \
  "$kiln" train img.kiln --no-eval --data size
grep -q compiled "$T/.out" && { fails=$((fails + 1)); echo "FAIL: compiled before the data check"; }
expect 1 "kiln: error: label/train-labels-idx1-ubyte: label 5 of sample 7 is out of range: the model has 3 classes (0..2)" \
  "${train[@]}" label
expect 1 "kiln: error: nan/train-images-idx3-ubyte: value 1 of image 6 is NaN" "${train[@]}" nan
expect 1 "kiln: error: inf/train-images-idx3-ubyte: value 1 of image 6 is -Inf" "${train[@]}" inf
expect 1 "kiln: error: trunc/train-images-idx3-ubyte: truncated: expected 48 bytes of data, got 43" \
  "${train[@]}" trunc
expect 1 "kiln: error: truncgz/train-images-idx3-ubyte.gz: truncated: the gzip stream ends before its trailer" \
  "${train[@]}" truncgz
expect 1 "kiln: error: count/train-labels-idx1-ubyte: 11 labels, but count/train-images-idx3-ubyte has 12 images" \
  "${train[@]}" count
expect 1 "kiln: error: swapped/train-images-idx3-ubyte: an images file has rank 2 or more (the count, then the shape of one image); this one is 12; is it a labels file?" \
  "${train[@]}" swapped
expect 1 "kiln: error: empty: no train-images-idx3-ubyte or train-images-idx3-ubyte.gz in this directory" \
  "${train[@]}" empty
expect 1 "kiln: error: nolabels: no train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz in this directory" \
  "${train[@]}" nolabels
expect 1 "kiln: error: missing: No such file or directory" "${train[@]}" missing

# The test split of eval and the input of predict are checked the same way.
"$kiln" train tiny.kiln --backend interp --no-eval --data good --save w.safetensors >/dev/null
expect 1 "kiln: error: size/t10k-images-idx3-ubyte: images are 3x3 = 9 values, the model expects 4" \
  "$kiln" eval tiny.kiln --backend interp --load w.safetensors --data size
expect 1 "kiln: error: label/t10k-labels-idx1-ubyte: label 5 of sample 7 is out of range: the model has 3 classes (0..2)" \
  "$kiln" eval tiny.kiln --backend interp --load w.safetensors --data label
expect 1 "kiln: error: size/t10k-images-idx3-ubyte: images are 3x3 = 9 values, the model expects 4" \
  "$kiln" predict tiny.kiln --backend interp --load w.safetensors --input size/t10k-images-idx3-ubyte
expect 1 "kiln: error: nan/t10k-images-idx3-ubyte: value 1 of image 6 is NaN" \
  "$kiln" predict tiny.kiln --backend interp --load w.safetensors --input nan/t10k-images-idx3-ubyte
expect 1 "kiln: error: nowhere.idx: No such file or directory" \
  "$kiln" predict tiny.kiln --backend interp --load w.safetensors --input nowhere.idx
finish
