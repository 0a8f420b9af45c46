#!/usr/bin/env python3
"""npy_tool.py — writes .npy / .npz files as NumPy does, without NumPy (tests only).

  npy_tool.py idx2npy IN.idx[.gz] OUT.npy [N] [DESCR]   first N samples; DESCR '<f8', '<i8', ... converts
  npy_tool.py npz OUT.npz [--stored] NAME=FILE.npy ...   np.savez_compressed (or np.savez) of .npy files
  npy_tool.py head2idx IN.idx[.gz] OUT.idx N             the first N samples as IDX again
  npy_tool.py raw OUT.npy DESCR FORTRAN SHAPE HEXBYTES  any header (e.g. '<f2' False '(2,)' 0000)
  npy_tool.py shape FILE.npy                             prints descr and shape
"""
import ast, gzip, struct, sys, zipfile

IDX = {0x08: ('B', '|u1'), 0x0C: ('>i', '<i4'), 0x0D: ('>f', '<f4'), 0x0E: ('>d', '<f8')}
CONV = {'<f4': 'f', '<f8': 'd', '<i4': 'i', '<i8': 'q', '|u1': 'B'}


def read_idx(path):
    data = open(path, 'rb').read()
    if data[:2] == b'\x1f\x8b':
        data = gzip.decompress(data)
    t, rank = data[2], data[3]
    dims = list(struct.unpack('>%dI' % rank, data[4:4 + 4 * rank]))
    return t, dims, data[4 + 4 * rank:]


def header(descr, fortran, shape):
    h = "{'descr': %r, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)
    h += ' ' * (63 - (10 + len(h)) % 64) + '\n'
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode()


def shape_str(dims):
    return '(%d,)' % dims[0] if len(dims) == 1 else '(%s)' % ', '.join(map(str, dims))


def idx2npy(src, dst, n=None, descr=None):
    t, dims, body = read_idx(src)
    fmt, d0 = IDX[t]
    if n:
        per = 1
        for x in dims[1:]:
            per *= x
        dims[0] = min(dims[0], int(n))
        body = body[:dims[0] * per * struct.calcsize(fmt)]
    if descr and descr != d0:
        vals = struct.unpack('>%d%s' % (len(body) // struct.calcsize(fmt), fmt.lstrip('>')), body)
        if descr == '<f8' and t == 0x08:
            vals = [v / 255.0 for v in vals]
        body = struct.pack('<%d%s' % (len(vals), CONV[descr]), *vals)
    elif fmt != 'B':
        vals = struct.unpack('>%d%s' % (len(body) // struct.calcsize(fmt), fmt.lstrip('>')), body)
        body = struct.pack('<%d%s' % (len(vals), fmt.lstrip('>')), *vals)
    open(dst, 'wb').write(header(descr or d0, False, shape_str(dims)) + body)


def head2idx(src, dst, n):
    t, dims, body = read_idx(src)
    per = 1
    for x in dims[1:]:
        per *= x
    dims[0] = min(dims[0], int(n))
    size = struct.calcsize(IDX[t][0])
    out = bytes([0, 0, t, len(dims)]) + struct.pack('>%dI' % len(dims), *dims)
    open(dst, 'wb').write(out + body[:dims[0] * per * size])


def npz(dst, args):
    method = zipfile.ZIP_DEFLATED
    if args and args[0] == '--stored':
        method, args = zipfile.ZIP_STORED, args[1:]
    with zipfile.ZipFile(dst, 'w', compression=method, allowZip64=True) as zf:
        for a in args:
            name, path = a.split('=', 1)
            with zf.open(name + '.npy', 'w', force_zip64=True) as f:  # as NumPy does
                f.write(open(path, 'rb').read())


def shape(path):
    data = open(path, 'rb').read()
    hl = struct.unpack('<H', data[8:10])[0]
    h = ast.literal_eval(data[10:10 + hl].decode())
    n = 1
    for x in h['shape']:
        n *= x
    vals = struct.unpack('<%df' % n, data[10 + hl:]) if h['descr'] == '<f4' else ()
    print(h['descr'], h['shape'], len(data[10 + hl:]), 'sum=%.4f' % sum(vals))


cmd = sys.argv[1]
if cmd == 'idx2npy':
    idx2npy(*sys.argv[2:])
elif cmd == 'npz':
    npz(sys.argv[2], sys.argv[3:])
elif cmd == 'head2idx':
    head2idx(*sys.argv[2:])
elif cmd == 'raw':
    open(sys.argv[2], 'wb').write(header(sys.argv[3], sys.argv[4], sys.argv[5]) + bytes.fromhex(sys.argv[6]))
elif cmd == 'shape':
    shape(sys.argv[2])
