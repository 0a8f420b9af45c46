"""examples/fashion_pretrain.py — the pretrained half of the fine-tuning
example (examples/fashion_finetune.kiln is the other): PyTorch trains a
small convnet on Fashion-MNIST's classes 0-4 only and exports it to ONNX:
    /usr/bin/python3 examples/fashion_pretrain.py OUT_DIR [STEPS]
The body (Conv(1,16,3)+relu, MaxPool 2, Conv(16,32,3)+relu, MaxPool 2,
torch.flatten, Linear(800,64)+relu) feeds a 5-class head Linear(64,5).
Writes OUT_DIR/fashion_body.onnx (opset 13, dynamic batch, input 'x'
[?, 1, 28, 28]), OUT_DIR/feature.txt (the ONNX name of the body's output,
the input of the head's Gemm), OUT_DIR/body.npz (the body's weights as
PyTorch holds them) and prints the 5-class test accuracy."""
import gzip
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn

out = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
torch.manual_seed(0)
torch.set_num_threads(1)
d = "/usr/share/datasets/fashion-mnist"


def idx(name, off):
    with gzip.open(f"{d}/{name}.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=off)


xs = torch.tensor(idx("train-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32)
ys = torch.tensor(idx("train-labels-idx1-ubyte", 8).astype(np.int64))
xt = torch.tensor(idx("t10k-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32)
yt = torch.tensor(idx("t10k-labels-idx1-ubyte", 8).astype(np.int64))
keep, keep_t = ys < 5, yt < 5
xs, ys, xt, yt = xs[keep], ys[keep], xt[keep_t], yt[keep_t]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.fc1 = nn.Linear(800, 64)
        self.head = nn.Linear(64, 5)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.head(x)


net = Net()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(1)
for step in range(steps):
    i = torch.randint(0, len(xs), (64,), generator=g)
    loss = nn.functional.cross_entropy(net(xs[i]), ys[i])
    opt.zero_grad()
    loss.backward()
    opt.step()
net.eval()
with torch.no_grad():
    acc = (net(xt).argmax(1) == yt).float().mean().item()
print(f"pretrained on classes 0-4: {steps} steps, test accuracy {acc:.4f}")
torch.onnx.export(net, xs[:2], f"{out}/fashion_body.onnx", input_names=["x"], output_names=["y"],
                  opset_version=13, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
m = onnx.load(f"{out}/fashion_body.onnx")
gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
open(f"{out}/feature.txt", "w").write(gemms[-1].input[0])
np.savez(f"{out}/body.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
