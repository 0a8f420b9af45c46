#!/usr/bin/python3
"""cnn_torch.py -- PyTorch's side of the convnet benchmark (bench/cnn.sh).

Keras' "simple MNIST convnet" in PyTorch, CPU, fp32, the recipe of
examples/fashion_cnn.kiln: Conv2D(32, 3, relu) -> MaxPooling2D(2) ->
Conv2D(64, 3, relu) -> MaxPooling2D(2) -> Flatten -> Dropout(0.5) ->
Dense(10, softmax); glorot-uniform kernels (PyTorch's xavier_uniform_ on a
conv weight uses fan_in = in*kh*kw, fan_out = out*kh*kw, as Keras), zero
biases; categorical cross-entropy from the logits; Adam with Keras' formula
(torch_bench.KerasAdam); batch 128, shuffled each epoch. Debian's torch
runs the convolutions through oneDNN (mkldnn), NCHW.

    /usr/bin/python3 bench/cnn_torch.py --threads 1 --steps 200     # step time
    /usr/bin/python3 bench/cnn_torch.py --threads 1 --epochs 12     # accuracy

--steps N: N training steps after 5 warm-up steps, each timed (median, and
x 469 = an epoch; also the process's CPU time, which on a shared machine
says more than the wall time); then batch-1 latency and batch-10,000 throughput over
the test images (unless --no-infer). --epochs N: the whole recipe, then the
test loss and accuracy. Threads as torch_bench.py (OMP_WAIT_POLICY=PASSIVE
with 2). The last line is 'RESULT {json}'.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bench import (KerasAdam, bench_latency, bench_throughput, load_idx,  # noqa: E402
                         peak_rss_mb, set_blas_threads)


def load_images(root):
    def images(name):
        x = load_idx(os.path.join(root, name))
        return torch.from_numpy(x.reshape(x.shape[0], 1, 28, 28).astype(np.float32) / np.float32(255.0))

    def labels(name):
        return torch.from_numpy(load_idx(os.path.join(root, name)).astype(np.int64))

    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3)
        self.c2 = nn.Conv2d(32, 64, 3)
        self.drop = nn.Dropout(0.5)
        self.p = nn.Linear(1600, 10)
        for layer in (self.c1, self.c2, self.p):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def logits(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.p(self.drop(torch.flatten(x, 1)))

    def forward(self, x):
        return torch.softmax(self.logits(x), dim=1)


def evaluate(model, x, y):
    model.eval()
    loss, hits = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], 1000):
            z = model.logits(x[i:i + 1000])
            loss += F.cross_entropy(z, y[i:i + 1000], reduction="sum").item()
            hits += (z.argmax(1) == y[i:i + 1000]).sum().item()
    model.train()
    return loss / x.shape[0], hits / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--infer-calls", type=int, default=2000)
    ap.add_argument("--tput-reps", type=int, default=3)
    ap.add_argument("--no-infer", action="store_true")
    args = ap.parse_args()
    if (args.steps > 0) == (args.epochs > 0):
        ap.error("give one of --steps N and --epochs N")
    torch.set_num_threads(args.threads)
    _, blas_core, blas_threads = set_blas_threads(args.threads)
    torch.manual_seed(args.seed)
    res = {"side": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "blas_threads": blas_threads, "mkldnn": torch.backends.mkldnn.is_available(),
           "seed": args.seed, "batch": args.batch}
    xtr, ytr, xte, yte = load_images(args.data)
    model = ConvNet()
    opt = KerasAdam(model.parameters())
    n, b = xtr.shape[0], args.batch
    steps_per_epoch = (n + b - 1) // b
    res["steps_per_epoch"] = steps_per_epoch

    def step(idx):
        z = model.logits(xtr[idx])
        loss = F.cross_entropy(z, ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    if args.epochs:
        t0 = time.perf_counter()
        for e in range(args.epochs):
            perm = torch.randperm(n)
            te = time.perf_counter()
            for s in range(steps_per_epoch):
                loss = step(perm[s * b:(s + 1) * b])
            print(f"epoch {e + 1}: {time.perf_counter() - te:.1f} s, last loss {loss.item():.4f}",
                  flush=True)
        res["train_s"] = time.perf_counter() - t0
        res["epochs"] = args.epochs
        res["test_loss"], res["test_acc"] = evaluate(model, xte, yte)
        print(f"test: loss {res['test_loss']:.4f} - accuracy {res['test_acc']:.4f}")
    else:
        perm = torch.randperm(n)
        for s in range(5):
            step(perm[s * b:(s + 1) * b])
        ts, cs = [], []
        for s in range(args.steps):
            k = (5 + s) % (steps_per_epoch - 1)
            t0, c0 = time.perf_counter(), time.process_time()
            step(perm[k * b:(k + 1) * b])
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
        ts.sort()
        cs.sort()
        res["step_s_median"] = ts[len(ts) // 2]
        res["step_cpu_s_median"] = cs[len(cs) // 2]  # every thread of the process
        res["epoch_s_steady"] = res["step_s_median"] * steps_per_epoch
        print(f"train: median step {res['step_s_median'] * 1e3:.2f} ms "
              f"(x {steps_per_epoch} = {res['epoch_s_steady']:.1f} s an epoch)")
        if not args.no_infer:
            model.eval()
            xs = [xte[i:i + 1] for i in range(1000)]
            res["b1"] = bench_latency(model, xs, args.infer_calls, warmup=100)
            res["b10000_sps"] = bench_throughput(model, xte, 10000, args.tput_reps, warmup=1)
            print(f"inference: batch 1 median {res['b1']['median_us']:.1f} us; batch 10000 "
                  f"{res['b10000_sps']['median']:.0f} samples/s")
    res["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + __import__("json").dumps(res))


if __name__ == "__main__":
    main()
