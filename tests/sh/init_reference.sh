#!/usr/bin/env bash
# The initializer checksums that test_train_interp.c pins (glorot_uniform and
# he_normal of a [784, 128] kernel named h1.kernel, seed 1234) recomputed by
# an independent reference: splitmix64, the stream from the name's FNV-1a
# hash, Keras' fans and the truncated normal, in the Python standard library
# (ir/init.c documents the recipe). The C constants are thereby not just what
# the C code happened to produce.
# Usage: init_reference.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
src=$3
/usr/bin/python3 - "$src/tests/unit/test_train_interp.c" <<'PY'
import math, re, struct, sys

M = (1 << 64) - 1

def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)

def mix64(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return z ^ (z >> 31)

def fnv1a(data, seed=0):
    h = 1469598103934665603 ^ seed
    for b in data:
        h = ((h ^ b) * 1099511628211) & M
    return h

class Rng:
    def __init__(self, seed, stream):
        self.state = mix64(seed ^ 0x6a09e667f3bcc909) ^ mix64((stream + 0x9e3779b97f4a7c15) & M)
    def next(self):
        self.state = (self.state + 0x9e3779b97f4a7c15) & M
        return mix64(self.state)
    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53
    def normal(self):
        u1, u2 = self.uniform(), self.uniform()
        u1 = max(u1, 1e-300)
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)

def f32(v):
    return struct.pack("<f", v)

def glorot_uniform(name, seed, fan_in, fan_out):
    r = Rng(seed, fnv1a(name.encode()))
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return b"".join(f32((2.0 * r.uniform() - 1.0) * limit) for _ in range(fan_in * fan_out))

def he_normal(name, seed, fan_in, fan_out):
    r = Rng(seed, fnv1a(name.encode()))
    s = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    out = []
    for _ in range(fan_in * fan_out):
        while True:
            z = r.normal()
            if abs(z) <= 2.0:
                break
        out.append(f32(z * s))
    return b"".join(out)

# Known splitmix64 outputs (seed 1234567, the generator's reference values):
# mix64 of the state after one step is the published first output.
state = 1234567
first = mix64((state + 0x9e3779b97f4a7c15) & M)
if first != 6457827717110365317:
    fail("splitmix64 reference: first output %d" % first)

text = open(sys.argv[1]).read()
want = {}
for var, name in (("ca", "glorot_uniform"), ("ch", "he_normal")):
    m = re.search(r"\b%s == (0x[0-9a-fA-F]+)ULL" % var, text)
    if not m:
        fail("no %s checksum in %s" % (name, sys.argv[1]))
    want[name] = int(m.group(1), 16)

got = {"glorot_uniform": fnv1a(glorot_uniform("h1.kernel", 1234, 784, 128)),
       "he_normal": fnv1a(he_normal("h2.kernel", 1234, 784, 128))}
for name in want:
    if got[name] != want[name]:
        fail("%s: the reference gives %#x, test_train_interp.c pins %#x" % (name, got[name], want[name]))
    print("ok: %s checksum %#x (independent reference)" % (name, got[name]))
PY
