#!/usr/bin/env bash
# `kiln compile` end to end, as a user runs it: the README's three commands
# (compile, cc, run the client), the client's outputs against the JIT's
# (`kiln predict`, within 1e-5) and its accuracy against `kiln eval`; the
# dynamic symbol table holds exactly the names the header declares; no LLVM
# and no libkiln at run time; the header is strict C99; caller-owned memory
# (NAME_SIZE / NAME_init); a header from another Kiln version is refused by
# exact text; weights loaded at run time; a --train library whose checkpoint
# `kiln eval` reads; --emit obj|llvm|asm; a .kir module; usage errors.
# Usage: aot_client.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
model="$src/examples/mnist_mlp.kiln"
data=/usr/share/datasets/fashion-mnist
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "FAIL: $*"; exit 1; }

# A checkpoint to compile in: a short training run.
"$kiln" train "$model" --max-steps 40 --save ckpt.safetensors > train.log

# 1. The README's commands.
"$kiln" compile "$model" --load ckpt.safetensors -o libmnist.so --header mnist.h
$cc "$src/examples/aot_client.c" -o client -I. -L. -Wl,-rpath,'$ORIGIN' -lmnist -lz
./client --output aot.txt > client.log
cat client.log

# 2. The same numbers as the JIT: every probability p within the suite's
#    comparator, |aot - p| <= 1e-6 + 1e-5 p (a number: NaN or text fails),
#    the same classes, the same accuracy as `kiln eval`.
gzip -dc "$data/t10k-images-idx3-ubyte.gz" > images.idx
"$kiln" predict "$model" --load ckpt.safetensors --input images.idx --output jit.txt
[ "$(wc -l < aot.txt)" -eq 10000 ] || fail "the client wrote $(wc -l < aot.txt) rows"
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
acc_eval=$("$kiln" eval "$model" --load ckpt.safetensors | sed -n 's/^test: .*accuracy \([0-9.]*\).*/\1/p')
acc_aot=$(sed -n 's/^accuracy: \([0-9.]*\) .*/\1/p' client.log)
[ -n "$acc_aot" ] && [ "$acc_eval" = "$acc_aot" ] || fail "accuracy: kiln eval $acc_eval, client $acc_aot"
echo "ok: accuracy $acc_aot, as kiln eval"

# 3. Exports: exactly the functions the header declares.
documented() { grep -vE '^[[:space:]]*(/\*|\*)' "$1" | grep -oE "\\b$2_[a-z_]+\\(" | tr -d '(' | sort -u; }
exports() { nm -D --defined-only "$1" | awk '{print $3}' | sort -u; }
documented mnist.h mnist > documented.txt
exports libmnist.so > exported.txt
diff documented.txt exported.txt || fail "exported symbols differ from the header's functions"
[ "$(wc -l < exported.txt)" -ge 10 ] || fail "only $(wc -l < exported.txt) exports"
readelf --dyn-syms -W libmnist.so | awk '$7 != "UND" && $5 == "GLOBAL" {print $8}' | sort -u > dynsym.txt
diff documented.txt dynsym.txt || fail "readelf shows other global symbols"
echo "ok: $(wc -l < exported.txt) exports, all documented"

# 4. Run-time dependencies: OpenBLAS, libm, libc; no LLVM, no Kiln.
readelf -d libmnist.so > dynamic.txt || fail "readelf -d failed"
sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' dynamic.txt | sort > needed.txt
grep -q '^libc\.so' needed.txt || fail "no libc among the NEEDED entries: $(cat needed.txt)"
if grep -Eiv '^(libopenblas\.so.*|libm\.so.*|libc\.so.*)$' needed.txt; then fail "unexpected NEEDED entries"; fi
# ldd must succeed and resolve everything: a failing ldd lists nothing to grep.
ldd libmnist.so > ldd.txt || fail "ldd libmnist.so failed"
grep -q 'libc\.so' ldd.txt || fail "ldd lists no libc: $(cat ldd.txt)"
if grep -q 'not found' ldd.txt; then fail "unresolved dependencies: $(cat ldd.txt)"; fi
if grep -Ei 'llvm|kiln' ldd.txt; then fail "the library needs LLVM or Kiln"; fi
echo "ok: needs only $(tr '\n' ' ' < needed.txt)"

# 5. The header is strict C99 (and C11), and caller memory works: NAME_SIZE is
#    mnist_size, a handle in a static buffer gives mnist_create's answers.
cat > own.c <<'EOF'
#include <stdio.h>
#include <string.h>
#include "mnist.h"
static unsigned char mem[MNIST_SIZE(4)] __attribute__((aligned(MNIST_ALIGN)));
int main(void) {
    static const long shape[] = MNIST_INPUT0_SHAPE;
    float x[2 * MNIST_INPUT_SIZE], a[2 * MNIST_OUTPUT_SIZE], b[2 * MNIST_OUTPUT_SIZE];
    mnist_model *own, *heap;
    int i;
    if (MNIST_SIZE(4) != mnist_size(4) || MNIST_SIZE(100) != mnist_size(100) || mnist_size(0) != 0) return 10;
    if (shape[0] != -1 || shape[1] != MNIST_INPUT_SIZE || strcmp(MNIST_INPUT0_NAME, "x") != 0) return 11;
    for (i = 0; i < 2 * MNIST_INPUT_SIZE; i++) x[i] = (float)(i % 13) / 13.0f;
    if (mnist_init(mem, sizeof mem, 4, &own) != MNIST_OK || (void *)own != (void *)mem) return 12;
    if (mnist_init(mem, sizeof mem, 5, &own) != MNIST_ERR_INVALID) return 13; /* too small */
    if (mnist_init(mem, sizeof mem, 4, &own) != MNIST_OK) return 14;
    if (mnist_create(2, &heap) != MNIST_OK) return 15;
    if (mnist_infer(own, 2, x, a) != MNIST_OK || mnist_infer(heap, 2, x, b) != MNIST_OK) return 16;
    if (memcmp(a, b, sizeof a) != 0) return 17;
    mnist_destroy(heap);
    mnist_destroy(own);
    puts("caller memory ok");
    return 0;
}
EOF
for std in c99 c11; do
  $cc -std=$std -Wall -Wextra -Werror -pedantic -fsyntax-only -x c mnist.h || fail "mnist.h is not clean $std"
done
$cc -std=c99 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L own.c -o own -I. -L. \
  -Wl,-rpath,'$ORIGIN' -lmnist || fail "own.c does not build against mnist.h"
./own || fail "caller memory: own exited with $?"

# 6. A header from another Kiln version is refused, by exact text.
mkdir other
sed 's/^#define MNIST_KILN_VERSION_NUM 0x[0-9a-f]*u/#define MNIST_KILN_VERSION_NUM 0x000903u/' mnist.h > other/mnist.h
$cc "$src/examples/aot_client.c" -o client_other -Iother -L. -Wl,-rpath,'$ORIGIN' -lmnist -lz
version=$("$kiln" --version | awk '{print $2}')
set +e
./client_other > other.out 2> other.err
rc=$?
set -e
want="mnist: version mismatch: the library was built by Kiln $version, the header by Kiln 0.9.3; regenerate both with the same 'kiln compile'"
[ $rc -eq 1 ] || fail "client with another header's version exited $rc"
[ "$(cat other.err)" = "$want" ] || fail "version message: '$(cat other.err)'"
echo "ok: $(cat other.err)"

# 7. Weights loaded at run time by the library's own safetensors reader.
"$kiln" compile "$model" --weights file -o libmnist.so --header mnist.h
grep -q '^#define MNIST_WEIGHTS_EMBEDDED 0' mnist.h || fail "header says the weights are embedded"
[ "$(stat -c %s libmnist.so)" -lt 200000 ] || fail "libmnist.so embeds weights it should not"
$cc "$src/examples/aot_client.c" -o client_file -I. -L. -Wl,-rpath,'$ORIGIN' -lmnist -lz
./client_file --weights ckpt.safetensors > file.log
[ "$(sed -n 's/^accuracy: \([0-9.]*\) .*/\1/p' file.log)" = "$acc_aot" ] || fail "run-time weights: $(cat file.log)"
set +e
./client_file --weights images.idx 2> bad.err
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "images.idx: header length [0-9]* exceeds the file size" bad.err || fail "bad weights: $(cat bad.err)"
echo "ok: weights from a checkpoint at run time"

# 8. --train: a train step and a checkpoint writer `kiln eval` reads.
"$kiln" compile "$model" --train --seed 5 -o libmt.so --header mt.h
documented mt.h mt > documented.txt
exports libmt.so > exported.txt
diff documented.txt exported.txt || fail "--train exports differ from the header"
grep -qx mt_train_step exported.txt && grep -qx mt_save exported.txt || fail "no mt_train_step / mt_save"
cat > train.c <<'EOF'
#include <stdio.h>
#include "mt.h"
int main(void) {
    static float x[32 * MT_INPUT_SIZE], y[32 * MT_LABEL_SIZE];
    float loss = 0, acc = 0, first = 0;
    mt_model *m;
    int i, s;
    if (mt_create(32, &m) != MT_OK) return 10;
    for (s = 0; s < 50; s++) {
        for (i = 0; i < 32 * MT_INPUT_SIZE; i++) x[i] = (float)((i * 7 + s) % 11) / 11.0f;
        for (i = 0; i < 32 * MT_LABEL_SIZE; i++) y[i] = (i % MT_LABEL_SIZE) == (i / MT_LABEL_SIZE) % 3;
        if (mt_train_step(m, 32, x, y, &loss, &acc) != MT_OK) { fprintf(stderr, "%s\n", mt_last_error(m)); return 11; }
        if (s == 0) first = loss;
    }
    if (!(loss < first)) return 12;
    if (mt_save(m, "trained.safetensors") != MT_OK) { fprintf(stderr, "%s\n", mt_last_error(m)); return 13; }
    printf("loss %.4f -> %.4f\n", first, loss);
    mt_destroy(m);
    return 0;
}
EOF
$cc -std=c99 -Wall -Wextra -Werror -pedantic train.c -o train -I. -L. -Wl,-rpath,'$ORIGIN' -lmt
./train || fail "training from the .so exited with $?"
"$kiln" eval "$model" --load trained.safetensors > eval.log || fail "kiln eval cannot read the .so's checkpoint"
grep -q '^test: loss' eval.log || fail "kiln eval: $(cat eval.log)"
echo "ok: $(tail -1 eval.log)"

# 9. --emit: object, LLVM IR, assembly.
"$kiln" compile "$model" --emit obj -o m.o --name mnist
readelf -h m.o > m.hdr # read whole: with pipefail, `readelf | grep -q` can fail on SIGPIPE
grep -q 'REL (Relocatable file)' m.hdr || fail "--emit obj is not an object file"
"$kiln" compile "$model" --emit llvm -o m.ll --name mnist
grep -q '^define i32 @mnist_infer(' m.ll || fail "--emit llvm has no mnist_infer"
"$kiln" compile "$model" --emit asm -o m.s --name mnist
grep -q '^mnist_infer:' m.s || fail "--emit asm has no mnist_infer"
echo "ok: --emit obj, llvm, asm"

# 10. A .kir module compiles too (here one through the train pipeline already).
"$kiln" dump "$model" > model.kir
"$kiln" compile model.kir --train -o libkir.so --header kir.h
documented kir.h kir > documented.txt
exports libkir.so > exported.txt
diff documented.txt exported.txt || fail "exports of the .kir library differ from its header"
grep -qx kir_train_step exported.txt || fail "no kir_train_step"
echo "ok: a .kir module"

# 11. Usage errors exit 2, work errors 1.
set +e
"$kiln" compile "$model" --emit elf -o x.so 2> e1; r1=$?
"$kiln" compile "$model" 2> e2; r2=$?
"$kiln" compile "$model" -o x.so --name 9lives 2> e3; r3=$?
set -e
[ $r1 -eq 2 ] && grep -q "kiln compile: error: --emit expects 'so', 'obj', 'llvm' or 'asm', got 'elf'" e1 || fail "--emit elf: $r1 $(cat e1)"
[ $r2 -eq 2 ] || fail "no -o: exit $r2"
[ $r3 -eq 1 ] && grep -q "the prefix '9lives' is not a C identifier" e3 || fail "--name 9lives: $r3 $(cat e3)"
echo "ok: usage errors"
