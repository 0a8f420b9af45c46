#!/usr/bin/env python3
"""make_seeds.py — writes the seed corpora of tests/fuzz/corpus/ (the
"seed-*" files; "crash-*" files are inputs the fuzzers found, kept by hand).

    tests/fuzz/make_seeds.py [KILN_BINARY]

Seeds are real files (the example model, the .kir golden tests, the IR of
the example after every pass of its pipeline, a checkpoint, IDX files raw and
gzipped) and small cases that reach the loaders' corners. KILN_BINARY
(default build-rel/bin/kiln) writes the pass-by-pass dumps.
"""
import glob, gzip, json, os, shutil, struct, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
KILN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build-rel", "bin", "kiln")


def put(target, name, data):
    path = os.path.join(CORPUS, target, "seed-" + name)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)


def clear(target):
    for p in glob.glob(os.path.join(CORPUS, target, "seed-*")):
        os.remove(p)


# ------------------------------------------------------------------ .kiln
KILN_CASES = {
    "every_layer.kiln": """model every_layer
input x : f32[?, 2, 3]
label y : i32[?]
f = flatten(x)
h = dense(f, 8, activation=leaky_relu(alpha=0.1), kernel_initializer=he_normal, bias_initializer=constant(0.1))
a = relu(h)
b = sigmoid(dense(a, 8, use_bias=false))
c = tanh(b)
s = add(c, leaky_relu(a, alpha=0.2))
p = softmax(dense(s, 4, kernel_initializer=normal(mean=0, stddev=0.05)), axis=-1)
output p
loss sparse_categorical_crossentropy(p, y)
train {
  optimizer = sgd(lr=0.1, momentum=0.9, nesterov=true)
  epochs = 2
  batch_size = 4
  seed = 3
  metrics = [acc]
}
""",
    "binary.kiln": """input x : f32[?, 5]
label t : f32[?, 1]
p = dense(dense(x, 3, activation=tanh, trainable=false), 1, activation=sigmoid,
          kernel_initializer=uniform(minval=-0.1, maxval=0.1))
output p
loss binary_crossentropy(p, t)
train { optimizer = adamw(learning_rate=0.01, weight_decay=0.01) metrics = [accuracy] }
""",
    "mse.kiln": """model reg
input x : f32[?, 3]
label y : f32[?, 2]
out = dense(x, 2, kernel_initializer=glorot_normal, bias_initializer=ones)
output out
loss mse(out, y)
train { optimizer = adam(lr=1e-3, beta_1=0.8, beta_2=0.99, epsilon=1e-8) epochs = 1 batch_size = 2 }
""",
    "infer_only.kiln": """model two_outputs
input x : f32[?, 4]
h = dense(x, 3, activation=relu)
output h, softmax(dense(h, 2))
""",
    "inline_names.kiln": """input x : f32[?, 4]
label y : f32[?, 5]
a = dense(relu(dense(x, 8)), 6)
dense_1 = tanh(dense(a, 5))
output softmax(dense_1)
loss categorical_crossentropy(softmax(dense_1), y)
""",
    "error_typo.kiln": "input x : f32[?, 4]\nh1 = dense(x, 128, activation=rellu)\noutput h1\n",
    "error_unclosed.kiln": "input x : f32[?, 4]\nh1 = dense(x, 128,\nh2 = dense(h1, 3)\noutput h2\n",
    "error_shape.kiln": "input x : f32[?, 4]\nlabel y : f32[?, 10]\np = dense(x, 5)\noutput p\nloss categorical_crossentropy(p, y)\n",
    "error_label_first.kiln": "input x : f32[?, 4]\nlabel y : f32[?, 3]\np = dense(x, 3)\noutput p\nloss categorical_crossentropy(y, p)\n",
    "limits.kiln": "input x : f32[?, 2147483647]\nh = dense(x, 2147483647)\noutput h\n",
    "nested.kiln": "input x : f32[?, 2]\noutput " + "relu(" * 20 + "x" + ")" * 20 + "\n",
    "numbers.kiln": "input x : f32[?, 2]\np = dense(x, 2, activation=leaky_relu(alpha=.5e-1))\noutput p\nloss mse(p, p)\ntrain { optimizer = sgd(lr=-1) }\n",
}


def kiln_seeds():
    clear("kiln")
    put("kiln", "mnist_mlp.kiln", open(os.path.join(ROOT, "examples", "mnist_mlp.kiln")).read())
    for p in sorted(glob.glob(os.path.join(ROOT, "tests", "ir", "*.kiln"))):
        put("kiln", os.path.basename(p), open(p).read())
    for name, text in KILN_CASES.items():
        put("kiln", name, text)


# ------------------------------------------------------------------- .kir
def kir_seeds():
    clear("kir")
    put("kir", "every_op.kir", open(os.path.join(ROOT, "tests", "data", "every_op.kir")).read())
    for p in sorted(glob.glob(os.path.join(ROOT, "tests", "ir", "*.kir"))):
        put("kir", "golden_" + os.path.basename(p), open(p).read())
    # The example's IR after every pass of its pipeline (each file parseable).
    tmp = tempfile.mkdtemp()
    try:
        for model in ["examples/mnist_mlp.kiln"] + ["tests/fuzz/corpus/kiln/seed-" + n for n in
                                                     ("every_layer.kiln", "binary.kiln", "infer_only.kiln")]:
            d = os.path.join(tmp, os.path.basename(model))
            os.mkdir(d)
            subprocess.run([KILN, "dump", os.path.join(ROOT, model), "--print-after-all",
                            "--dump-dir=" + d], check=True, stdout=subprocess.DEVNULL)
            stem = os.path.basename(model).replace("seed-", "").replace(".kiln", "")
            for p in sorted(glob.glob(os.path.join(d, "*.kir"))):
                put("kir", "%s_%s" % (stem, os.path.basename(p)), open(p).read())
    finally:
        shutil.rmtree(tmp)
    put("kir", "region_nesting.kir", """module @nest
func @f(%x : f32[?,2]) -> f32[?,2] {
  %1 = fused(%x) : f32[?,2] {
    %2 = fused(%x) : f32[?,2] {
      %3 = relu(%x) : f32[?,2]
      yield %3
    }
    yield %2
  }
  return %1
}
""")
    put("kir", "bad_char.kir", "module @m\nparam @w : f32[2] = zeros\n\x00\x01")


# ------------------------------------------------------------ safetensors
TINY = [("h1.kernel", [2, 3]), ("h1.bias", [3]), ("out.kernel", [3, 2]), ("out.bias", [2])]
SLOTS = ["m", "v"]


def safetensors(tensors, meta=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - (len(h) + 8) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(shape, start=0.0):
    n = 1
    for d in shape:
        n *= d
    return struct.pack("<%df" % n, *[start + 0.25 * i for i in range(n)])


def tiny_tensors(with_state=True, nan=False):
    t = [(n, "F32", s, f32(s, 1.0)) for n, s in TINY]
    if nan:
        t[0] = (t[0][0], "F32", t[0][2], struct.pack("<f", float("nan")) + t[0][3][4:])
    if with_state:
        t.append(("optimizer.iterations", "I32", [], struct.pack("<i", 7)))
        for n, s in TINY:
            for slot in SLOTS:
                t.append(("optimizer.%s.%s" % (n, slot), "F32", s, f32(s)))
    return t


META = {"format": "kiln", "format_version": "1", "kiln_version": "0.1.0", "model": "tiny",
        "step": "7", "epoch": "1", "shuffle_state": "0123456789abcdef", "shuffle_drawn": "true"}


def st_seeds():
    clear("safetensors")
    put("safetensors", "tiny_full.safetensors", safetensors(tiny_tensors(), META))
    put("safetensors", "tiny_params.safetensors", safetensors(tiny_tensors(False), {"format": "kiln"}))
    put("safetensors", "tiny_nometa.safetensors", safetensors(tiny_tensors(False), None, pad=False))
    put("safetensors", "tiny_nan.safetensors", safetensors(tiny_tensors(False, nan=True)))
    other = [("h1.kernel", "F32", [2, 4], f32([2, 4])), ("h1.bias", "F32", [4], f32([4])),
             ("extra", "F16", [2], b"\x00\x3c\x00\x40")]
    put("safetensors", "other_model.safetensors", safetensors(other, {"model": "other"}))
    put("safetensors", "dtypes.safetensors", safetensors(
        [("a", "BF16", [2], b"\x80\x3f\x00\x40"), ("b", "I64", [1], struct.pack("<q", -1)),
         ("c", "BOOL", [3], b"\x01\x00\x01"), ("d", "U8", [0], b""), ("e", "F64", [1, 1], struct.pack("<d", 2.5))]))
    put("safetensors", "empty.safetensors", safetensors([], {}))
    put("safetensors", "bad_meta.safetensors", safetensors(tiny_tensors(), dict(META, step="x", format_version="9")))
    hdr = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}'
    put("safetensors", "overlap.safetensors", struct.pack("<Q", len(hdr)) + hdr + b"\0" * 6)
    put("safetensors", "huge_shape.safetensors", safetensors(
        [("h1.kernel", "F32", [2**40, 2**40], b"")]))
    put("safetensors", "header_too_long.safetensors", struct.pack("<Q", 2**63) + b"{}")
    put("safetensors", "not_json.safetensors", struct.pack("<Q", 6) + b"{\"a\":[")


# -------------------------------------------------------------------- IDX
def idx(dtype, dims, payload):
    return bytes([0, 0, dtype, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def idx_seeds():
    clear("idx")
    images = idx(0x08, [3, 2, 2], bytes(range(0, 240, 20)))
    labels = idx(0x08, [3], bytes([0, 2, 1]))
    files = {
        "images_u8.idx": images,
        "labels_u8.idx": labels,
        "images_f32.idx": idx(0x0D, [2, 3], struct.pack(">6f", 0, 0.5, 1, -1, 2.5, 1e-3)),
        "images_f64.idx": idx(0x0E, [1, 2], struct.pack(">2d", 0.25, -3)),
        "labels_i8.idx": idx(0x09, [2], bytes([1, 0xFF])),
        "labels_i16.idx": idx(0x0B, [2], struct.pack(">2h", 9, -2)),
        "labels_i32.idx": idx(0x0C, [2], struct.pack(">2i", 3, 70000)),
        "rank7.idx": idx(0x08, [1] * 7, b"\x05"),
        "nan_f32.idx": idx(0x0D, [1, 2], struct.pack(">2f", 1, float("nan"))),
        "truncated.idx": images[:-3],
        "trailing.idx": labels + b"\x00",
        "zero_dim.idx": idx(0x08, [0, 2], b""),
        "huge_dims.idx": idx(0x0E, [0xFFFFFFFF, 0xFFFFFFFF], b""),
        "bad_type.idx": idx(0x0A, [1], b"\x00"),
        "empty.idx": b"",
    }
    for name, data in files.items():
        put("idx", name, data)
        put("idx", name + ".gz", gzip.compress(data, mtime=0))
    put("idx", "two_members.idx.gz", gzip.compress(images[:10], mtime=0) + gzip.compress(images[10:], mtime=0))
    put("idx", "gz_truncated.idx.gz", gzip.compress(images, mtime=0)[:-6])
    put("idx", "gz_garbage_after.idx.gz", gzip.compress(labels, mtime=0) + b"junk")
    # A few real MNIST-digits samples (the first 2 images and labels).
    digits = os.path.join(ROOT, "data", "mnist-digits")
    if os.path.isdir(digits):
        with gzip.open(os.path.join(digits, "t10k-images-idx3-ubyte.gz")) as f:
            head = f.read(16)
            n = 2
            put("idx", "digits_2.idx.gz", gzip.compress(
                head[:4] + struct.pack(">I", n) + head[8:16] + f.read(n * 28 * 28), mtime=0))


# -------------------------------------------------------------- cache entries
# codegen/cache.h: magic, format, key, payload length, SHA-256, payload.
def cache_str(s):
    if s is None:
        return struct.pack("<I", 0xFFFFFFFF)
    b = s.encode()
    return struct.pack("<I", len(b)) + b


def cache_payload(funcs, obj):
    out = struct.pack("<I", len(funcs))
    for name, fails in funcs:
        out += cache_str(name) + cache_str("kiln_" + name)
        out += struct.pack("<iiqqqq", 2, 1, 4096, 160, 4080, 0)
        out += struct.pack("<I", len(fails))
        for serial, op, file in fails:
            out += struct.pack("<i", serial) + cache_str(op) + cache_str(file)
            out += struct.pack("<iiq", 7, 6, 10)
    return out + struct.pack("<Q", len(obj)) + obj


def cache_entry(payload, fmt=1):
    import hashlib
    head = b"KILNOBJ\0" + struct.pack("<II", fmt, 0) + bytes([0xAB]) * 32
    return head + struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest() + payload


def cache_seeds():
    clear("cache")
    obj = b"\x7fELF" + bytes(range(60))
    one = cache_payload([("infer", [])], obj)
    two = cache_payload([("loss", [(12, "sparse_categorical_crossentropy", "m.kiln"),
                                   (13, "sparse_categorical_crossentropy", None)]),
                         ("train_step", [])], obj)
    # Odd first byte: the payload alone (the target adds a valid header).
    put("cache", "payload_one", b"\x01" + one)
    put("cache", "payload_fails", b"\x01" + two)
    put("cache", "payload_bad_op", b"\x01" + two.replace(b"sparse_categorical_crossentropy",
                                                           b"sparse_categorical_crossentropx", 1))
    put("cache", "payload_short", b"\x01" + one[:-10])
    put("cache", "payload_no_funcs", b"\x01" + struct.pack("<I", 0) + struct.pack("<Q", 4) + b"abcd")
    # Even first byte: a whole entry file.
    put("cache", "entry_one", b"\x00" + cache_entry(one))
    put("cache", "entry_fails", b"\x00" + cache_entry(two))
    put("cache", "entry_truncated", b"\x00" + cache_entry(two)[:-7])
    put("cache", "entry_format_2", b"\x00" + cache_entry(one, fmt=2))
    bad = bytearray(cache_entry(one))
    bad[-3] ^= 0x40
    put("cache", "entry_checksum", b"\x00" + bytes(bad))
    put("cache", "entry_header_only", b"\x00" + cache_entry(one)[:88])


def main():
    kiln_seeds()
    kir_seeds()
    st_seeds()
    idx_seeds()
    cache_seeds()
    for t in ("kiln", "kir", "safetensors", "idx", "cache"):
        print("%-12s %3d seeds" % (t, len(glob.glob(os.path.join(CORPUS, t, "seed-*")))))


if __name__ == "__main__":
    main()
