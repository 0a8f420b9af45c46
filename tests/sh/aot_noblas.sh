#!/usr/bin/env bash
# `kiln compile` without BLAS (issue 18): by default the shared object uses
# Kiln's own GEMM kernels and `readelf -d` lists only libc and libm among its
# NEEDED entries (libm only if used); `--gemm openblas` links libopenblas as
# before; both libraries (compiled with --train, so the train step links
# too) classify the test images alike (probabilities within 1e-5 relative),
# at batch 128 and batch 1 (the row path).
# Usage: aot_noblas.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
model="$src/examples/mnist_mlp.kiln"
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "FAIL: $*"; exit 1; }

"$kiln" train "$model" --max-steps 20 --save ckpt.safetensors > train.log

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' '; }
for g in kiln openblas; do
  mkdir "$g"
  opt=()
  [ "$g" = openblas ] && opt=(--gemm openblas)
  "$kiln" compile "$model" --load ckpt.safetensors --train -o "$g/libmnist.so" \
    --header "$g/mnist.h" "${opt[@]}"
  $cc "$src/examples/aot_client.c" -o "$g/client" -I"$g" -L"$g" -Wl,-rpath,'$ORIGIN' -lmnist -lz
  (cd "$g" && ./client --output b128.txt > client.log && ./client --batch 1 --output b1.txt > client1.log)
done

# The default: libc and libm only (no libopenblas, so no libgfortran either).
n=$(needed kiln/libmnist.so)
case "$n" in "libc.so.6 " | "libc.so.6 libm.so.6 ") ;; *) fail "kiln/libmnist.so needs: $n" ;; esac
nm -D kiln/libmnist.so | grep -q cblas_ && fail "kiln/libmnist.so refers to cblas"
# --gemm openblas: libopenblas is linked.
n=$(needed openblas/libmnist.so)
case "$n" in *libopenblas*) ;; *) fail "openblas/libmnist.so needs: $n" ;; esac
echo "ok: NEEDED kiln: $(needed kiln/libmnist.so)| openblas: $n"

# Both libraries compute the same probabilities.
for f in b128 b1; do
  paste -d' ' openblas/$f.txt kiln/$f.txt | awk '
    { n = NF / 2; if (NF != 22 || $1 != $(n + 1)) cls++
      for (i = 2; i <= n; i++) { d = $(n + i) - $i; if (d < 0) d = -d
        e = d / (1e-6 + 1e-5 * ($i < 0 ? -$i : $i)); if (e > worst) worst = e } }
    END { printf "'$f' kiln vs openblas: worst %.3g x tolerance, %d rows, %d class differences\n", worst, NR, cls
          exit !(NR == 10000 && worst <= 1 && cls == 0) }' || fail "$f: the backends differ"
done

# A backend that does not exist is a usage error (status 2), on each verb.
for verb in compile train eval predict; do
  set +e
  out=(); [ "$verb" = compile ] && out=(-o x.so); [ "$verb" = predict ] && out=(--input x.idx)
  "$kiln" $verb "$model" "${out[@]}" --gemm mkl > usage.log 2>&1
  rc=$?
  set -e
  [ "$rc" = 2 ] && grep -q "error: --gemm expects 'kiln' or 'openblas', got 'mkl'" usage.log ||
    fail "$verb --gemm mkl: status $rc: $(cat usage.log)"
done
echo "ok: --gemm mkl refused"
