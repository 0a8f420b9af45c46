"""Exports a small PyTorch MLP to ONNX and writes what `kiln predict` needs:
    torch_mlp.py OUT_DIR
OUT_DIR/mlp.onnx (dynamic batch; the flatten is x.view(x.size(0), -1), which
PyTorch exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape),
OUT_DIR/images.idx (50 random 28x28 uint8 images, IDX format) and
OUT_DIR/expected.txt (PyTorch's outputs on images / 255, one row each)."""
import struct
import sys

import torch

out = sys.argv[1]
torch.manual_seed(0)


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.h1 = torch.nn.Linear(784, 64)
        self.h2 = torch.nn.Linear(64, 32)
        self.out = torch.nn.Linear(32, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = torch.relu(self.h1(x))
        x = torch.tanh(self.h2(x))
        return torch.softmax(self.out(x), dim=1)


model = MLP().eval()
images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
with open(f"{out}/images.idx", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 50, 28, 28))
    f.write(images.numpy().tobytes())
x = images.to(torch.float32).div(255).reshape(50, 1, 28, 28)
with torch.no_grad():
    y = model(x)
    torch.onnx.export(model, x[:2], f"{out}/mlp.onnx", input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=13)
with open(f"{out}/expected.txt", "w") as f:
    for row in y.tolist():
        f.write(" ".join("%.9g" % v for v in row) + "\n")
