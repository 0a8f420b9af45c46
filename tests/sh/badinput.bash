# badinput.bash — what tests/sh/badinput_*.sh share (sourced; not a test itself).
#
#   expect RC 'lines' CMD...      runs CMD: its exit status must be RC and its whole
#                                 stderr exactly those lines (one error line, then
#                                 any 'kiln: note:' lines it gives)
#   make_idx DIR ...              writes IDX datasets (see below)
#   finish                        prints the tally; exits 1 if any check failed
# The scripts cd into a temporary directory, so messages hold short relative paths.
set -euo pipefail
kiln=$(readlink -f "$1") build=$2 src=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
export OPENBLAS_NUM_THREADS=1
checks=0 fails=0

expect() {
  local rc=$1 want=$2 got
  shift 2
  checks=$((checks + 1))
  set +e
  "$@" >"$T/.out" 2>"$T/.err"
  got=$?
  set -e
  if [ "$got" -eq "$rc" ] && [ "$(cat "$T/.err")" = "$want" ] && [ "$(wc -l <"$T/.err")" -eq "$(printf '%s\n' "$want" | wc -l)" ]; then
    echo "ok: [$rc] $want"
  else
    fails=$((fails + 1))
    echo "FAIL: $*"
    echo "  status $got, expected $rc"
    echo "  stderr ($(wc -l <"$T/.err") lines):"
    sed 's/^/    | /' "$T/.err"
    echo "  expected exactly:"
    echo "    | $want"
  fi
}

finish() {
  echo "$checks checks, $fails failed"
  [ "$fails" -eq 0 ]
}

# A model of 2x2 images, 3 classes, and one whose weights blow up in 3 steps.
cat >tiny.kiln <<'KILN'
model tiny
input x : f32[?, 4]
label y : f32[?, 3]
h = dense(x, 5, activation=relu)
p = dense(h, 3, activation=softmax)
output p
loss categorical_crossentropy(p, y)
train {
  optimizer = adam(lr=0.01)
  batch_size = 4
}
KILN
cat >blowup.kiln <<'KILN'
model blowup
input x : f32[?, 4]
label y : f32[?, 3]
h = dense(x, 5)
p = dense(h, 3)
output p
loss mse(p, y)
train {
  optimizer = sgd(lr=1e6)
  batch_size = 4
}
KILN

# make_idx DIR KIND: a dataset directory with the four standard files, 12
# samples of 2x2 uint8 images and labels 0..2, spoiled as KIND says:
#   good | size (3x3 images) | label (label 5 at sample 7) | nan / inf (float32
#   images with NaN / -Inf) | trunc (images cut short) | truncgz (gzipped, cut)
#   | count (11 labels) | swapped (images and labels swapped) | nolabels
make_idx() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import gzip, os, struct, sys
d, kind = sys.argv[1], sys.argv[2]
def idx(t, dims, data):
    return bytes([0, 0, t, len(dims)]) + b"".join(struct.pack(">I", x) for x in dims) + data
n = 12
images = idx(8, [n, 2, 2], bytes((i * 37) % 256 for i in range(4 * n)))
labs = [i % 3 for i in range(n)]
if kind == "label":
    labs[7] = 5
labels = idx(8, [n], bytes(labs))
if kind == "size":
    images = idx(8, [n, 3, 3], bytes(9 * n))
if kind in ("nan", "inf"):
    v = [0.5] * (4 * n)
    v[6 * 4 + 1] = float("nan") if kind == "nan" else float("-inf")
    images = idx(0x0D, [n, 2, 2], struct.pack(">%df" % len(v), *v))
if kind == "trunc":
    images = images[:-5]
if kind == "count":
    labels = idx(8, [n - 1], bytes(labs[:-1]))
if kind == "swapped":
    images, labels = labels, images
os.makedirs(d, exist_ok=True)
for split in ("train", "t10k"):
    im, lb = d + "/%s-images-idx3-ubyte" % split, d + "/%s-labels-idx1-ubyte" % split
    if kind == "truncgz":
        open(im + ".gz", "wb").write(gzip.compress(images, mtime=0)[:-9])
    else:
        open(im, "wb").write(images)
    if kind != "nolabels" or split == "t10k":
        open(lb, "wb").write(labels)
PY
}
