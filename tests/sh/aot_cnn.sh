#!/usr/bin/env bash
# The convnet (examples/fashion_cnn.kiln: conv2d, max pooling, dropout)
# compiled ahead of time equals the JIT:
#   1. `kiln compile --train`: a C program runs train steps on the first
#      batches of Fashion-MNIST in file order; the checkpoint it saves
#      (weights, Adam's moments, the step) is within 1e-5 of the one
#      `kiln train --no-shuffle` saves after the same steps, same seed (the
#      same dropout masks: Philox keyed by seed, step and node);
#   2. `kiln compile` (inference, weights from that checkpoint): the
#      probabilities of the 10,000 test images within 1e-5 of `kiln
#      predict`'s (|aot - jit| <= 1e-6 + 1e-5 |jit|), the same classes, the
#      same accuracy as `kiln eval`.
# Usage: aot_cnn.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
model="$src/examples/fashion_cnn.kiln"
data=/usr/share/datasets/fashion-mnist
cc=${CC:-cc}
steps=4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "FAIL: $*"; exit 1; }

# 1. Training: the JIT, then the library, from the same initialization.
"$kiln" train "$model" --seed 7 --max-steps $steps --no-shuffle --no-eval --save jit.safetensors > jit.log
"$kiln" compile "$model" --train --seed 7 --name cnn -o libcnn.so --header cnn.h
grep -q '^#define CNN_INPUT0_SHAPE {-1, 28, 28, 1}' cnn.h || fail "header: $(grep INPUT0_SHAPE cnn.h)"
cat > train.c <<EOF
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>
#include "cnn.h"
enum { B = 128, STEPS = $steps };
/* The first n bytes after an IDX header of h bytes. */
static int read_idx(const char *path, long h, unsigned char *out, long n) {
    unsigned char head[16];
    gzFile f = gzopen(path, "rb");
    int ok = f && gzread(f, head, (unsigned)h) == h && gzread(f, out, (unsigned)n) == n;
    if (f) gzclose(f);
    return ok;
}
int main(void) {
    static unsigned char px[STEPS * B * CNN_INPUT_SIZE], lab[STEPS * B];
    static float x[B * CNN_INPUT_SIZE], y[B * CNN_LABEL_SIZE];
    cnn_model *m;
    float loss, acc;
    if (!read_idx("$data/train-images-idx3-ubyte.gz", 16, px, sizeof px) ||
        !read_idx("$data/train-labels-idx1-ubyte.gz", 8, lab, sizeof lab)) return 10;
    if (cnn_create(B, &m) != CNN_OK) return 11;
    for (int s = 0; s < STEPS; s++) {
        for (long i = 0; i < B * CNN_INPUT_SIZE; i++) x[i] = (float)px[s * B * CNN_INPUT_SIZE + i] / 255.0f;
        for (long i = 0; i < B * CNN_LABEL_SIZE; i++) y[i] = (i % CNN_LABEL_SIZE) == lab[s * B + i / CNN_LABEL_SIZE];
        if (cnn_train_step(m, B, x, y, &loss, &acc) != CNN_OK) { fprintf(stderr, "%s\n", cnn_last_error(m)); return 12; }
        printf("step %d: loss %.6f accuracy %.4f\n", s + 1, loss, acc);
    }
    if (cnn_save(m, "aot.safetensors") != CNN_OK) { fprintf(stderr, "%s\n", cnn_last_error(m)); return 13; }
    cnn_destroy(m);
    return 0;
}
EOF
$cc -std=c99 -Wall -Wextra -Werror train.c -o train -I. -L. -Wl,-rpath,'$ORIGIN' -lcnn -lz
./train > train.log || fail "training from the .so exited with $?: $(cat train.log)"
cat train.log
python3 "$src/tests/sh/st_diff.py" jit.safetensors aot.safetensors 1e-5 ||
  fail "the library's checkpoint after $steps steps differs from the JIT's"
echo "ok: $steps train steps, the checkpoint as the JIT's"

# 2. Inference with the trained weights embedded, through examples/aot_client.c.
"$kiln" compile "$model" --load jit.safetensors --name mnist -o libmnist.so --header mnist.h
$cc "$src/examples/aot_client.c" -o client -I. -L. -Wl,-rpath,'$ORIGIN' -lmnist -lz
./client --output aot.txt > client.log
gzip -dc "$data/t10k-images-idx3-ubyte.gz" > images.idx
"$kiln" predict "$model" --load jit.safetensors --input images.idx --output jit.txt
paste -d' ' jit.txt aot.txt | awk '
  function num(s) { return s ~ /^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/ }
  { n = NF / 2; if (NF != 22 || $1 != $(n + 1)) cls++
    for (i = 2; i <= n; i++) {
      if (!num($i) || !num($(n + i))) { bad++; continue }
      d = $(n + i) - $i; if (d < 0) d = -d
      e = d / (1e-6 + 1e-5 * ($i < 0 ? -$i : $i)); if (e > worst) worst = e } }
  END { printf "AOT vs JIT: worst error %.3g x tolerance over %d rows, %d class differences, %d non-numbers\n",
               worst, NR, cls, bad
        exit !(NR == 10000 && worst <= 1 && cls == 0 && bad == 0) }' || fail "AOT outputs differ from the JIT's"
acc_eval=$("$kiln" eval "$model" --load jit.safetensors | sed -n 's/^test: .*accuracy \([0-9.]*\).*/\1/p')
acc_aot=$(sed -n 's/^accuracy: \([0-9.]*\) .*/\1/p' client.log)
[ -n "$acc_aot" ] && [ "$acc_eval" = "$acc_aot" ] || fail "accuracy: kiln eval $acc_eval, client $acc_aot"
echo "ok: inference as the JIT's, accuracy $acc_aot as kiln eval"
