#!/usr/bin/env python3
"""make_npy_seeds.py — writes the seed corpora of the NumPy and CSV readers
(tests/fuzz/corpus/npy, tests/fuzz/corpus/csv): small valid files of every
supported dtype, the archive forms NumPy writes, and the refused cases.

    tests/fuzz/make_npy_seeds.py
"""
import glob, io, os, struct, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, "seed-" + name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def npy(descr, shape, body, fortran=False, version=1):
    h = "{'descr': %r, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    pre = 10 if version == 1 else 12
    h += " " * (63 - (pre + len(h)) % 64) + "\n"
    size = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + size + h.encode() + body


def npz(members, method):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression=method, allowZip64=True) as zf:
        for name, data in members.items():
            with zf.open(name, "w", force_zip64=True) as f:
                f.write(data)
    return b.getvalue()


for p in glob.glob(os.path.join(CORPUS, "npy", "seed-*")) + glob.glob(os.path.join(CORPUS, "csv", "seed-*")):
    os.remove(p)
u8 = npy("|u1", "(2, 3)", bytes(range(6)))
f4 = npy("<f4", "(3,)", struct.pack("<3f", 0.5, -1, 2))
put("npy", "u8.npy", u8)
put("npy", "f4.npy", f4)
put("npy", "f8.npy", npy("<f8", "(2, 1)", struct.pack("<2d", 1e300, 3)))
put("npy", "i4.npy", npy("<i4", "(2,)", struct.pack("<2i", 7, -1)))
put("npy", "i8.npy", npy("<i8", "(2,)", struct.pack("<2q", 1 << 40, 2)))
put("npy", "v2.npy", npy("<f4", "(1, 1)", struct.pack("<f", 1), version=2))
put("npy", "fortran.npy", npy("<f4", "(2, 2)", bytes(16), fortran=True))
put("npy", "f2.npy", npy("<f2", "(2,)", bytes(4)))
put("npy", "nan.npy", npy("<f4", "(1,)", struct.pack("<f", float("nan"))))
put("npy", "trunc.npy", u8[:-2])
put("npy", "scalar.npy", npy("<f4", "()", bytes(4)))
put("npy", "stored.npz", npz({"x.npy": u8, "y.npy": f4}, zipfile.ZIP_STORED))
put("npy", "deflated.npz", npz({"x.npy": f4}, zipfile.ZIP_DEFLATED))
put("npy", "other.npz", npz({"y.npy": u8}, zipfile.ZIP_DEFLATED))

put("csv", "simple.csv", "a,b,label\n1,2,0\n3.5,-4e2,1\n")
put("csv", "quoted.csv", '"a","b"\n1,2\n')
put("csv", "crlf.csv", "x,y\r\n1,2\r\n3,4\r\n")
put("csv", "ragged.csv", "a,b\n1\n")
put("csv", "notnum.csv", "a,b\n1,abc\n")
put("csv", "empty.csv", "")
put("csv", "nan.csv", "a,b\nnan,1\n")
