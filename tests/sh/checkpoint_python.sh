#!/usr/bin/env bash
# Checkpoints between Kiln and Python: a safetensors file written by Python
# (standard library only: json and struct) loads in Kiln with the same
# numbers, and Kiln's file reads back in Python with the same numbers.
# Arguments (from ctest): KILN_BINARY BUILD_DIR SOURCE_DIR.
# The Kiln side is the helper mode of the test_checkpoint suite.
set -euo pipefail
BUILD=${2:?usage: checkpoint_python.sh KILN BUILD_DIR SOURCE_DIR}
HELPER="$BUILD/bin/test_checkpoint"
PY=/usr/bin/python3
[ -x "$HELPER" ] || { echo "checkpoint_python.sh: $HELPER is not built" >&2; exit 1; }
[ -x "$PY" ] || { echo "checkpoint_python.sh: $PY is missing" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

"$PY" - "$HELPER" "$T" <<'EOF'
import json, struct, subprocess, sys

helper, tmp = sys.argv[1], sys.argv[2]
failures = 0

def check(what, cond, detail=""):
    global failures
    print(("ok   " if cond else "FAIL ") + what + ("" if cond else ": " + detail))
    if not cond:
        failures += 1

# The tiny model of test_checkpoint.c: names, shapes and values in the same order.
NAMES = ["h1.kernel", "h1.bias", "out.kernel", "out.bias"]
SHAPES = [[3, 4], [4], [4, 2], [2]]
NAMES += ["optimizer.%s.%s" % (n, s) for s in ("m", "v") for n in NAMES[:4]]
SHAPES += SHAPES[:4] * 2

def val(k, i):
    if k == 0 and i < 3:
        return [-0.0, 1e-45, 3.4028234663852886e38][i]
    return ((i * 37 + k * 11) % 101 - 50) / 16.0

def count(shape):
    n = 1
    for d in shape:
        n *= d
    return n

def f32_bits(v):
    return struct.unpack("<I", struct.pack("<f", v))[0]

def write_st(path, tensors, meta=None, reverse=True):
    """tensors: list of (name, dtype, shape, raw bytes). The data is laid out
    in reverse order of the header's entries, which the format allows."""
    header, blobs, at = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    order = list(reversed(tensors)) if reverse else tensors
    offsets = {}
    for name, dtype, shape, raw in order:
        offsets[name] = (at, at + len(raw))
        at += len(raw)
        blobs.append(raw)
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": list(offsets[name])}
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def model_tensors(first_shape=None):
    out = []
    for k, (name, shape) in enumerate(zip(NAMES, SHAPES)):
        if k == 0 and first_shape:
            shape = first_shape
        raw = struct.pack("<%df" % count(shape), *[val(k, i) for i in range(count(shape))])
        out.append((name, "F32", shape, raw))
    out.append(("optimizer.iterations", "I32", [], struct.pack("<i", 1234567)))
    return out

def run(*args):
    return subprocess.run([helper] + list(args), capture_output=True, text=True)

# 1. Python writes, Kiln loads the model's globals: the same bits.
a = tmp + "/py.safetensors"
write_st(a, model_tensors(), {"step": "77", "epoch": "2", "written_by": "python"})
r = run("--load-model", a)
check("Kiln loads Python's checkpoint", r.returncode == 0, r.stderr)
if r.returncode == 0:
    lines = r.stdout.splitlines()
    check("step and epoch from __metadata__", lines[0] == "step 77 epoch 2", lines[0])
    got = {l.split()[0]: l.split()[1:] for l in lines[1:]}
    same = True
    for k, (name, shape) in enumerate(zip(NAMES, SHAPES)):
        want = ["%08x" % f32_bits(val(k, i)) for i in range(count(shape))]
        if got.get(name) != want:
            same = False
            check("values of " + name, False, "%s != %s" % (got.get(name), want))
    same = same and got.get("optimizer.iterations") == ["%08x" % 1234567]
    check("every value bit for bit (-0, a denormal and FLT_MAX included)", same)

# 2. Every dtype through the generic reader, byte for byte.
def half(v):
    return struct.pack("<e", v)
def bf16(v):
    return struct.pack("<f", v)[2:]
generic = [
    ("f64", "F64", [2], struct.pack("<2d", 3.141592653589793, -1e300)),
    ("i64", "I64", [3], struct.pack("<3q", -2**63, 0, 2**63 - 1)),
    ("u64", "U64", [1], struct.pack("<Q", 2**64 - 1)),
    ("u32", "U32", [1, 1], struct.pack("<I", 4000000000)),
    ("i16", "I16", [2], struct.pack("<2h", -32768, 32767)),
    ("u16", "U16", [1], struct.pack("<H", 65535)),
    ("f16", "F16", [2], half(0.5) + half(-65504.0)),
    ("bf16", "BF16", [2], bf16(1.0) + bf16(-2.5)),
    ("i8", "I8", [2], struct.pack("<2b", -128, 127)),
    ("u8", "U8", [2, 2], bytes([0, 1, 254, 255])),
    ("bool", "BOOL", [3], bytes([1, 0, 1])),
    ("scalar", "F32", [], struct.pack("<f", 2.5)),
    ("empty", "F32", [0, 7], b""),
    ("name with \"quotes\" and \u00e9", "I32", [1], struct.pack("<i", -7)),
]
b = tmp + "/generic.safetensors"
write_st(b, generic, {"k": "v", "unicode": "\u00e9t\u00e9"})
r = run("--dump", b)
check("Kiln reads every dtype", r.returncode == 0, r.stderr)
if r.returncode == 0:
    want = ["meta k=v", "meta unicode=\u00e9t\u00e9"]
    for name, dtype, shape, raw in generic:
        want.append("tensor %s %s [%s] %s" % (name, dtype, ",".join(map(str, shape)), raw.hex()))
    check("names, dtypes, shapes and bytes as written", r.stdout.splitlines() == want,
          "\n" + r.stdout)

# 3. Kiln writes, Python reads.
c = tmp + "/kiln.safetensors"
r = run("--write", c)
check("Kiln saves a checkpoint", r.returncode == 0, r.stderr)
if r.returncode == 0:
    raw = open(c, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = h.pop("__metadata__")
    check("metadata", meta.get("format") == "kiln" and meta.get("format_version") == "1"
          and meta.get("model") == "tiny_mlp" and meta.get("step") == "1234"
          and meta.get("epoch") == "3" and meta.get("shuffle_state") == "0123456789abcdef"
          and meta.get("shuffle_drawn") == "true" and len(meta.get("structure_hash", "")) == 16,
          str(meta))
    check("the data starts 8-aligned", (8 + n) % 8 == 0)
    spans = sorted(tuple(e["data_offsets"]) for e in h.values())
    at = 0
    for s, e in spans:
        if s != at:
            break
        at = e
    check("the tensors cover the data exactly", at == len(data), "%s vs %d" % (spans, len(data)))
    check("every global is there", sorted(h) == sorted(NAMES + ["optimizer.iterations"]),
          str(sorted(h)))
    ok = True
    for k, (name, shape) in enumerate(zip(NAMES, SHAPES)):
        e = h[name]
        s, t = e["data_offsets"]
        vals = struct.unpack("<%df" % count(shape), data[s:t])
        if e["dtype"] != "F32" or e["shape"] != shape or \
                [f32_bits(v) for v in vals] != [f32_bits(val(k, i)) for i in range(count(shape))]:
            ok = False
            check("tensor " + name, False, str(e))
    e = h["optimizer.iterations"]
    s, t = e["data_offsets"]
    ok = ok and e["dtype"] == "I32" and e["shape"] == [] and \
        struct.unpack("<i", data[s:t])[0] == 1234567
    check("Python reads Kiln's numbers bit for bit", ok)

# 4. Refusals reach the user as one line naming the file and the tensor.
d = tmp + "/wide.safetensors"
write_st(d, model_tensors(first_shape=[3, 5]))
r = run("--load-model", d)
check("a checkpoint for another model is refused",
      r.returncode == 1 and r.stderr == "kiln: error: %s: tensor 'h1.kernel' has shape [3,5], "
      "the model expects [3,4]\n" % d, r.stderr)
e = tmp + "/cut.safetensors"
write_st(e, model_tensors())
full = open(e, "rb").read()
open(e, "wb").write(full[:len(full) // 3])
r = run("--load-model", e)
check("a truncated checkpoint is refused",
      r.returncode == 1 and r.stderr == "kiln: error: %s: header length %d exceeds the file size "
      "(%d bytes)\n" % (e, struct.unpack("<Q", full[:8])[0], len(full) // 3), r.stderr)

print("%d failure(s)" % failures)
sys.exit(1 if failures else 0)
EOF
