"""Exports PyTorch convnets to ONNX with what `kiln predict` needs to check them:
    torch_convnets.py OUT_DIR
OUT_DIR/x.npy: 50 inputs [50, 1, 28, 28] float32 in [0, 1];
OUT_DIR/NAME.onnx and OUT_DIR/NAME.npy (PyTorch's outputs on x) for
  lenet    LeNet-5: Conv(1,6,5,pad 2)+relu, AvgPool 2, Conv(6,16,5)+relu,
           MaxPool 2, x.view(x.size(0), -1) (PyTorch's Shape -> Gather ->
           Unsqueeze -> Concat -> Reshape), Linear 400-120-84-10
  convnet  Keras' "simple MNIST convnet": Conv(1,32,3)+relu, MaxPool 2,
           Conv(32,64,3)+relu, MaxPool 2, torch.flatten (ONNX Flatten),
           Dropout(0.5), Linear(1600,10), softmax
  bnnet    Conv(1,8,3,pad 1) + BatchNorm (trained statistics) + relu,
           Conv(8,8,3,stride 2,pad 1), GlobalAveragePool, Linear(8,10)
  catnet   two Conv branches (3x3 pad 1, 5x5 pad 2) + relu, torch.cat on the
           channels (a run-time Concat), F.pad (1, 2, 0, 1) with 0.5 (a real
           Pad), Conv(8,4,3), GlobalAveragePool, Linear(4,10)
  padnet   Conv(1,4,3)+relu, F.pad (2, 1, 1, 2) reflect and (1, 1, 2, 0)
           replicate (Pad modes reflect and edge), Conv(4,4,3,stride 2)+relu,
           GlobalAveragePool, Linear(4,10)
All with a dynamic batch, opset 13."""
import sys

import numpy as np
import torch
import torch.nn as nn

out = sys.argv[1]
torch.manual_seed(0)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1 = nn.Linear(400, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.avg_pool2d(torch.relu(self.c1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.f3(torch.relu(self.f2(torch.relu(self.f1(x)))))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.drop = nn.Dropout(0.5)
        self.dense = nn.Linear(1600, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = self.drop(torch.flatten(x, 1))
        return torch.softmax(self.dense(x), dim=1)


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = nn.functional.adaptive_avg_pool2d(self.c2(x), 1)
        return self.fc(torch.flatten(x, 1))


class CatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(1, 4, 5, padding=2)
        self.c = nn.Conv2d(8, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        h = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        h = nn.functional.pad(h, (1, 2, 0, 1), value=0.5)
        h = nn.functional.adaptive_avg_pool2d(self.c(h), 1)
        return self.fc(torch.flatten(h, 1))


class PadNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3)
        self.c = nn.Conv2d(4, 4, 3, stride=2)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        h = nn.functional.pad(torch.relu(self.a(x)), (2, 1, 1, 2), mode="reflect")
        h = nn.functional.pad(h, (1, 1, 2, 0), mode="replicate")
        h = nn.functional.adaptive_avg_pool2d(torch.relu(self.c(h)), 1)
        return self.fc(torch.flatten(h, 1))


x = torch.rand(50, 1, 28, 28)
np.save(f"{out}/x.npy", x.numpy())
for name, model in [("lenet", LeNet()), ("convnet", ConvNet()), ("bnnet", BNNet()),
                    ("catnet", CatNet()), ("padnet", PadNet())]:
    if name == "bnnet":  # moving statistics that are not the initial 0 and 1
        model.train()
        with torch.no_grad():
            for _ in range(5):
                model(torch.rand(64, 1, 28, 28) * 2 + 0.5)
    model.eval()
    with torch.no_grad():
        np.save(f"{out}/{name}.npy", model(x).numpy())
        torch.onnx.export(model, x[:2], f"{out}/{name}.onnx", input_names=["x"],
                          output_names=["y"], opset_version=13,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
