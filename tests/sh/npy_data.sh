#!/usr/bin/env bash
# NumPy files: a directory of x_train.npy, y_train.npy, x_test.npy, y_test.npy
# and a .npz of them (stored or deflated, zip64 as NumPy writes it) train to
# the very weights the same samples in IDX files give; predict reads .npy and
# writes .npy; broken files get one line naming the file and the place.
source "$(dirname "$0")/badinput.bash"
tool=(python3 "$src/tests/sh/npy_tool.py")
F=/usr/share/datasets/fashion-mnist
mkdir idx npy
for s in train t10k; do
  for k in images labels; do
    r=$([ $k = images ] && echo 3 || echo 1)
    "${tool[@]}" head2idx $F/$s-$k-idx$r-ubyte.gz idx/$s-$k-idx$r-ubyte 1000
  done
  n=$([ $s = train ] && echo train || echo test)
  "${tool[@]}" idx2npy idx/$s-images-idx3-ubyte npy/x_$n.npy
  "${tool[@]}" idx2npy idx/$s-labels-idx1-ubyte npy/y_$n.npy
done
"${tool[@]}" npz data.npz x_train=npy/x_train.npy y_train=npy/y_train.npy x_test=npy/x_test.npy y_test=npy/y_test.npy
"${tool[@]}" npz stored.npz --stored x_train=npy/x_train.npy y_train=npy/y_train.npy x_test=npy/x_test.npy y_test=npy/y_test.npy
cat >mlp.kiln <<'KILN'
model mlp
input x : f32[?, 784]
label y : f32[?, 10]
h = dense(x, 32, activation=relu)
p = dense(h, 10, activation=softmax)
output p
loss categorical_crossentropy(p, y)
train {
  optimizer = adam(lr=0.001)
  batch_size = 50
  metrics = [accuracy]
}
KILN
run() { "$kiln" train mlp.kiln --data "$1" --epochs 1 --seed 3 --save "$2" >"$2.log"; }
run idx idx.safetensors
checks=$((checks + 1))
for d in npy data.npz stored.npz; do
  run $d $d.safetensors
  checks=$((checks + 1))
  if cmp -s idx.safetensors $d.safetensors && [ "$(tail -1 idx.safetensors.log)" = "$(tail -1 $d.safetensors.log)" ]; then
    echo "ok: --data $d trains to the weights and test loss of IDX"
  else
    fails=$((fails + 1)); echo "FAIL: --data $d differs from IDX"; tail -1 $d.safetensors.log idx.safetensors.log
  fi
done
# int64 labels and float64 images (as x / 255) train too
"${tool[@]}" idx2npy idx/train-images-idx3-ubyte f64/x_train.npy 1000 '<f8' 2>/dev/null || { mkdir -p f64; "${tool[@]}" idx2npy idx/train-images-idx3-ubyte f64/x_train.npy 1000 '<f8'; }
"${tool[@]}" idx2npy idx/train-labels-idx1-ubyte f64/y_train.npy 1000 '<i8'
checks=$((checks + 1))
if "$kiln" train mlp.kiln --data f64 --epochs 1 --no-eval >f64.log 2>&1; then
  echo "ok: float64 images and int64 labels train"
else
  fails=$((fails + 1)); echo "FAIL: float64/int64"; cat f64.log
fi

# predict: .npy in, .npy out (1000 rows of 10 probabilities)
"$kiln" predict mlp.kiln --load idx.safetensors --input npy/x_test.npy --output p.npy
"$kiln" predict mlp.kiln --load idx.safetensors --input idx/t10k-images-idx3-ubyte --output p.txt
checks=$((checks + 1))
got=$("${tool[@]}" shape p.npy)
case $got in
  "<f4 (1000, 10) 40000 sum=1000.0"*) echo "ok: predict --output p.npy: $got" ;;
  *) fails=$((fails + 1)); echo "FAIL: p.npy is $got" ;;
esac
checks=$((checks + 1))
if [ "$(wc -l <p.txt)" -eq 1000 ]; then echo "ok: IDX input still predicts"; else fails=$((fails + 1)); echo "FAIL: p.txt"; fi

# Broken files: one line naming the file and the place.
pred=("$kiln" predict mlp.kiln --load idx.safetensors --input)
"${tool[@]}" raw f16.npy '<f2' False '(1, 784)' 0000
expect 1 "kiln: error: f16.npy: unsupported dtype '<f2' (float16); Kiln reads float32, float64, uint8, int32 and int64, little-endian" "${pred[@]}" f16.npy
"${tool[@]}" raw be.npy '>f4' False '(1, 784)' 00
expect 1 "kiln: error: be.npy: unsupported dtype '>f4' (big-endian float32); Kiln reads float32, float64, uint8, int32 and int64, little-endian" "${pred[@]}" be.npy
"${tool[@]}" raw fortran.npy '<f4' True '(2, 392)' 00
expect 1 "kiln: error: fortran.npy: Fortran order (column-major) is not supported; save a C-order array (np.ascontiguousarray)" "${pred[@]}" fortran.npy
"${tool[@]}" raw trunc.npy '|u1' False '(2, 784)' 0102
expect 1 "kiln: error: trunc.npy: truncated: the shape needs 1568 bytes of data after byte 128, the file has 2" "${pred[@]}" trunc.npy
"${tool[@]}" raw key.npy '|u1' False '(2, 784)' ""
sed -i 's/fortran_order/fortran_ordex/' key.npy
expect 1 "kiln: error: key.npy: header byte 27: unknown key (expected 'descr', 'fortran_order' and 'shape')" "${pred[@]}" key.npy
head -c 60 npy/x_test.npy >short.npy
expect 1 "kiln: error: short.npy: byte 8: the header claims 118 bytes, the file has 50 after byte 10" "${pred[@]}" short.npy
head -c 3000 data.npz >cut.npz
expect 1 "kiln: error: cut.npz: byte 3000: no end of central directory record: truncated?" \
  "$kiln" train mlp.kiln --data cut.npz
"${tool[@]}" npz partial.npz x_train=npy/x_train.npy
expect 1 "kiln: error: partial.npz: no array 'y_train' in the archive (it has 'x_train.npy')" \
  "$kiln" train mlp.kiln --data partial.npz
finish
