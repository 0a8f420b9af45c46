#!/usr/bin/env python3
"""binary_torch.py DIR EPOCHS SEED — bench/binary.kiln's recipe in PyTorch:
784 -> Dense(64, relu) -> Dense(1, sigmoid), binary cross-entropy, Keras'
Adam (lr 1e-3, eps 1e-7), glorot-uniform kernels and zero biases, batch 128
shuffled each epoch, inputs scaled to [0, 1]; prints the test accuracy
(prediction > 0.5) and loss as JSON. DIR holds x_train.npy ... y_test.npy."""
import json, sys, time
import numpy as np
import torch

d, epochs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(seed)
np.random.seed(seed)
torch.set_num_threads(1)
load = lambda n: np.load('%s/%s.npy' % (d, n))
xtr = torch.tensor(load('x_train').reshape(-1, 784).astype(np.float32) / 255)
ytr = torch.tensor(load('y_train').astype(np.float32))
xte = torch.tensor(load('x_test').reshape(-1, 784).astype(np.float32) / 255)
yte = torch.tensor(load('y_test').astype(np.float32))
model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1),
                            torch.nn.Sigmoid())
for m in model:
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.xavier_uniform_(m.weight)
        torch.nn.init.zeros_(m.bias)
opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
bce = torch.nn.BCELoss()
t0 = time.time()
for e in range(epochs):
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 128):
        idx = perm[i:i + 128]
        opt.zero_grad()
        loss = bce(model(xtr[idx]), ytr[idx])
        loss.backward()
        opt.step()
with torch.no_grad():
    p = model(xte)
    acc = ((p > 0.5).float() == yte).float().mean().item()
    print(json.dumps({"accuracy": acc, "loss": bce(p, yte).item(), "seconds": time.time() - t0}))
