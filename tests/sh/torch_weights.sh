#!/usr/bin/env bash
# Weights trained by PyTorch evaluate and train in Kiln directly (issue 15).
# PyTorch trains the seed MLP (784-128-64-10) for 300 steps and saves its
# state_dict as a weights-only safetensors file, under Kiln's names (Keras'
# kernel is nn.Linear's weight transposed), byte for byte as
# safetensors.torch.save_file writes it: an 8-byte header length, the JSON
# header with {"__metadata__": {"format": "pt"}}, space padding to 8, the data.
# (The safetensors package itself is on PyPI only, which this machine does
# not reach.) Then:
#   - `kiln eval` gives PyTorch's test loss and accuracy on the 10,000 test images;
#   - `kiln train --load` continues from it with a fresh optimizer (one note).
set -euo pipefail
kiln=$(readlink -f "$1") src=$(readlink -f "$3")
PY=/usr/bin/python3
data=/usr/share/datasets/fashion-mnist
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
export OPENBLAS_NUM_THREADS=1
fail() { echo "torch_weights.sh: FAIL: $*" >&2; exit 1; }

$PY - "$data" <<'PY' > torch.txt
import gzip, json, struct, sys
import numpy as np, torch
d = sys.argv[1]
def idx(name, off):
    return np.frombuffer(gzip.open(f"{d}/{name}.gz").read(), np.uint8, offset=off)
xtr = torch.tensor(idx("train-images-idx3-ubyte", 16).reshape(-1, 784) / 255.0, dtype=torch.float32)
ytr = torch.tensor(idx("train-labels-idx1-ubyte", 8).astype(np.int64))
xte = torch.tensor(idx("t10k-images-idx3-ubyte", 16).reshape(-1, 784) / 255.0, dtype=torch.float32)
yte = torch.tensor(idx("t10k-labels-idx1-ubyte", 8).astype(np.int64))
torch.manual_seed(0)
torch.set_num_threads(1)
m = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                        torch.nn.ReLU(), torch.nn.Linear(64, 10))
opt = torch.optim.Adam(m.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(0)
perm = torch.randperm(len(xtr), generator=g)
for s in range(300):
    b = perm[s * 128:(s + 1) * 128]
    loss = torch.nn.functional.cross_entropy(m(xtr[b]), ytr[b])
    opt.zero_grad(); loss.backward(); opt.step()
with torch.no_grad():
    logits = m(xte)
    loss = torch.nn.functional.cross_entropy(logits, yte).item()
    acc = (logits.argmax(1) == yte).float().mean().item()
sd = m.state_dict()
names = {"0": "h1", "2": "h2", "4": "p"}
tensors = {}
for k, v in sd.items():
    i, kind = k.split(".")
    tensors[names[i] + (".kernel" if kind == "weight" else ".bias")] = \
        (v.t() if kind == "weight" else v).contiguous().numpy().astype("<f4")
header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
for k in sorted(tensors):
    a = tensors[k]
    header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
    blobs.append(a.tobytes()); off += a.nbytes
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open("torch.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print(f"{loss:.6f} {acc:.4f}")
PY
read -r tloss tacc < torch.txt

# Kiln evaluates PyTorch's weights: the same loss and accuracy (float32 sums
# in another order: 1e-4 of the loss, and at most 2 of 10,000 argmaxes).
"$kiln" eval "$src/examples/mnist_mlp.kiln" --load torch.safetensors --data "$data" \
  --threads 1 --report eval.json > eval.txt || fail "kiln eval refused PyTorch's weights"
read -r kloss kacc < <($PY -c 'import json,sys; r=json.load(open("eval.json"))
e=r["test"]; print(e["loss"], e["accuracy"])')
$PY -c "import sys; tl,ta,kl,ka=map(float,sys.argv[1:])
ok = abs(kl-tl) <= 1e-4*max(1,abs(tl)) and abs(ka-ta) <= 2e-4
print(f'PyTorch loss {tl:.6f} acc {ta:.4f}; Kiln loss {kl:.6f} acc {ka:.4f}')
sys.exit(0 if ok else 1)" "$tloss" "$tacc" "$kloss" "$kacc" || fail "kiln eval differs from PyTorch"

# Training starts from them with a fresh optimizer, and says so once.
"$kiln" train "$src/examples/mnist_mlp.kiln" --load torch.safetensors --data "$data" \
  --threads 1 --max-steps 50 --no-eval --save more.safetensors > train.txt 2> train.err ||
  fail "kiln train refused PyTorch's weights: $(cat train.err)"
[ "$(grep -c "note:" train.err)" = 1 ] || fail "expected one note about the fresh optimizer: $(cat train.err)"
"$kiln" eval "$src/examples/mnist_mlp.kiln" --load more.safetensors --data "$data" --threads 1 \
  --report more.json > /dev/null || fail "kiln eval of the continued weights"
$PY -c 'import json,sys; r=json.load(open("more.json")); e=r["test"]
a=e["accuracy"]; print(f"after 50 more steps in Kiln: acc {a:.4f}"); sys.exit(0 if a >= float(sys.argv[1]) - 0.02 else 1)' \
  "$tacc" || fail "accuracy fell after continuing in Kiln"
echo "torch_weights.sh: ok"
