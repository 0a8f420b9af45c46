#!/usr/bin/env bash
# kiln predict on a model with two inputs: --input once per input, in the
# order of the model's `input` lines (an IDX file of bytes, scaled to [0, 1],
# and a float64 .npy), weights from a weights-only safetensors file written
# here; --output Y.npy holds the same numbers as the model's formula in
# double (1e-5). Too few --input files, or files with different sample
# counts, are refused in one line.
set -euo pipefail
kiln=$1 build=$2 src=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
cat >two.kiln <<'KILN'
input a : f32[?, 3]
input b : f32[?, 2]
h = dense(a, 4, activation=relu)
k = dense(b, 4, activation=tanh)
s = add(h, k)
p = dense(s, 2, activation=sigmoid)
output p
KILN
python3 - <<'PY'
import json, math, random, struct
random.seed(7)
def npy(path, descr, fmt, shape, vals):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, ', '.join(map(str, shape)))
    h += ' ' * (63 - (10 + len(h)) % 64) + '\n'
    open(path, 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() +
                           struct.pack('<%d%s' % (len(vals), fmt), *vals))
n = 5
a = [random.randrange(256) for _ in range(n * 3)]
open('a.idx', 'wb').write(bytes([0, 0, 8, 2]) + struct.pack('>II', n, 3) + bytes(a))
b = [random.uniform(-2, 2) for _ in range(n * 2)]
npy('b.npy', '<f8', 'd', (n, 2), b)
npy('b4.npy', '<f8', 'd', (n - 1, 2), b[:8])
shapes = {'h.kernel': [3, 4], 'h.bias': [4], 'k.kernel': [2, 4], 'k.bias': [4], 'p.kernel': [4, 2], 'p.bias': [2]}
w, hdr, data = {}, {}, b''
for name, sh in shapes.items():
    cnt = 1
    for d in sh: cnt *= d
    w[name] = [struct.unpack('<f', struct.pack('<f', random.uniform(-1, 1)))[0] for _ in range(cnt)]
    hdr[name] = dict(dtype='F32', shape=sh, data_offsets=[len(data), len(data) + 4 * cnt])
    data += struct.pack('<%df' % cnt, *w[name])
hj = json.dumps(hdr).encode(); hj += b' ' * ((8 - len(hj) % 8) % 8)
open('w.safetensors', 'wb').write(struct.pack('<Q', len(hj)) + hj + data)
def dense(x, k, bias, rows, cols, act):
    return [act(sum(x[i] * k[i * cols + j] for i in range(rows)) + bias[j]) for j in range(cols)]
out = []
for s in range(n):
    xa = [v / 255 for v in a[s * 3:s * 3 + 3]]
    xb = b[s * 2:s * 2 + 2]
    h = dense(xa, w['h.kernel'], w['h.bias'], 3, 4, lambda z: max(z, 0))
    k = dense(xb, w['k.kernel'], w['k.bias'], 2, 4, math.tanh)
    out += dense([u + v for u, v in zip(h, k)], w['p.kernel'], w['p.bias'], 4, 2,
                 lambda z: 1 / (1 + math.exp(-z)))
open('want.txt', 'w').write(' '.join(repr(v) for v in out))
PY
"$kiln" predict two.kiln --load w.safetensors --input a.idx --input b.npy --output y.npy
python3 - <<'PY'
import ast, struct
d = open('y.npy', 'rb').read()
hl = struct.unpack('<H', d[8:10])[0]
h = ast.literal_eval(d[10:10 + hl].decode())
assert h['descr'] == '<f4' and h['shape'] == (5, 2) and not h['fortran_order'], h
got = struct.unpack('<10f', d[10 + hl:])
want = list(map(float, open('want.txt').read().split()))
err = max(abs(g - w) for g, w in zip(got, want))
assert err < 1e-5, (err, got, want)
print("ok: two inputs (IDX bytes, float64 .npy) predict the formula's outputs, max error %.2g, as a [5, 2] .npy" % err)
PY
fail() { echo "FAIL: $*"; exit 1; }
if "$kiln" predict two.kiln --load w.safetensors --input a.idx >/dev/null 2>one.err; then fail "one --input for two inputs"; fi
[ "$(cat one.err)" = "kiln predict: error: the model has 2 inputs, --input was given 1 time" ] || fail "one input: $(cat one.err)"
if "$kiln" predict two.kiln --load w.safetensors --input a.idx --input b4.npy >/dev/null 2>n.err; then fail "different counts"; fi
grep -q "^kiln predict: error: b4.npy: 4 samples of 2 values; input 2 of the model takes samples of 2 values and every --input file the same number of samples$" n.err || fail "counts: $(cat n.err)"
[ "$(wc -l <n.err)" = 1 ] || fail "more than one line: $(cat n.err)"
echo "ok: a missing --input and unequal sample counts are refused in one line"
