#!/usr/bin/env python3
"""st_diff.py A.safetensors B.safetensors [TOL] — the largest absolute
difference between two checkpoints' tensors (standard library only: the
format is an 8-byte little-endian header length, a JSON header, the data).
Exit status 1 when the names, dtypes or shapes differ or the difference
exceeds TOL (default 1e-5)."""
import json, struct, sys


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    data, out = raw[8 + n :], {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        fmt = {"F32": "f", "I32": "i", "I64": "q"}[t["dtype"]]
        out[name] = (t["dtype"], t["shape"], struct.unpack("<%d%s" % ((e - b) // struct.calcsize(fmt), fmt), data[b:e]))
    return out


def main():
    a, b = read(sys.argv[1]), read(sys.argv[2])
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
    if sorted(a) != sorted(b):
        print("st_diff: the tensors differ: %s vs %s" % (sorted(a), sorted(b)))
        return 1
    worst, where = 0.0, ""
    for name in sorted(a):
        (da, sa, va), (db, sb, vb) = a[name], b[name]
        if (da, sa) != (db, sb):
            print("st_diff: %s is %s%s vs %s%s" % (name, da, sa, db, sb))
            return 1
        for x, y in zip(va, vb):
            if abs(x - y) > worst:
                worst, where = abs(x - y), name
    print("st_diff: %d tensors, max |a - b| = %.3g%s" % (len(a), worst, " (" + where + ")" if where else ""))
    return 0 if worst <= tol else 1


sys.exit(main())
