#!/usr/bin/env bash
# bench/binary.sh KILN [SEEDS] [EPOCHS] — the Keras binary classifier
# (bench/binary.kiln: dense(h, 1, activation=sigmoid), binary_crossentropy,
# 0/1 float labels) on Fashion-MNIST class 0 (T-shirt/top) against the
# rest, trained by Kiln and by PyTorch with the same recipe
# (bench/binary_torch.py), one thread, SEEDS seeds each (default 3). Prints
# each run's test accuracy and the mean and spread of both; exits 1 when the
# means differ by more than 3 spreads plus 0.5% (noise).
set -euo pipefail
kiln=${1:?usage: bench/binary.sh KILN [SEEDS] [EPOCHS]} seeds=${2:-3} epochs=${3:-5}
here=$(cd "$(dirname "$0")" && pwd)
data=/usr/share/datasets/fashion-mnist
py=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# x_*.npy: the images as uint8 (Kiln scales them to [0, 1]); y_*.npy:
# float32 [N, 1], 1 for class 0.
$py - "$data" "$T" <<'PY'
import gzip, sys, numpy as np
src, dst = sys.argv[1:]
def idx(name):
    b = gzip.open('%s/%s.gz' % (src, name)).read()
    rank = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], 'big') for i in range(rank)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * rank).reshape(dims)
for split, pre in (('train', 'train'), ('test', 't10k')):
    np.save('%s/x_%s.npy' % (dst, split), idx(pre + '-images-idx3-ubyte'))
    np.save('%s/y_%s.npy' % (dst, split), (idx(pre + '-labels-idx1-ubyte') == 0).astype(np.float32).reshape(-1, 1))
PY
export OPENBLAS_NUM_THREADS=1
k=() t=()
for s in $(seq 1 "$seeds"); do
  "$kiln" train "$here/binary.kiln" --data "$T" --epochs "$epochs" --seed "$s" --threads 1 \
    --report "$T/k$s.json" >/dev/null
  k+=("$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["test"]["accuracy"])' "$T/k$s.json")")
  t+=("$($py "$here/binary_torch.py" "$T" "$epochs" "$s" | $py -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')")
  echo "seed $s: kiln ${k[-1]}  pytorch ${t[-1]}"
done
$py - "${k[*]}" "${t[*]}" "$epochs" <<'PY'
import statistics as st, sys
k, t = [list(map(float, a.split())) for a in sys.argv[1:3]]
sd = lambda v: st.stdev(v) if len(v) > 1 else 0.0
mk, mt = st.mean(k), st.mean(t)
spread = max(sd(k), sd(t))
ok = abs(mk - mt) <= 3 * spread + 0.005
print("binary class 0 vs rest, %s epochs, %d seeds: kiln %.4f +- %.4f, pytorch %.4f +- %.4f, "
      "difference %+.4f: %s" % (sys.argv[3], len(k), mk, sd(k), mt, sd(t), mk - mt,
                                "within noise" if ok else "NOT within noise"))
sys.exit(0 if ok else 1)
PY
