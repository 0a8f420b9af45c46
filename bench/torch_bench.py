#!/usr/bin/python3
"""torch_bench.py -- PyTorch's side of the Kiln benchmark (bench/run.sh).

The seed recipe in PyTorch, CPU, fp32: 784 -> Dense(128, relu) -> Dense(64,
relu) -> Dense(10, softmax), categorical cross-entropy (from the logits, as
Keras does), glorot-uniform kernels and zero biases, Adam with the Keras
formula (lr 1e-3, beta 0.9/0.999, epsilon 1e-7 added to sqrt(v) before the
bias correction), batch 128, shuffled each epoch, last batch 96 samples.

Trimmed from ../shared/anchors/torch_mlp.py, the project's PyTorch anchor
(same model, same Keras-Adam loop with torch._foreach ops, same data
loading, same thread handling and latency/throughput method); what is left
out: the torch.optim.Adam variant and the jit.script/trace/freeze variants
other than optimize_for_inference.

Threads: torch.set_num_threads(N), and OpenBLAS's own pool (Debian's torch
calls sgemm_ from libblas.so.3 = OpenBLAS, whose pool torch does not manage)
set to N as well through ctypes. With 2 threads on 2 cores, torch's libgomp
workers spin after each parallel region and fight OpenBLAS's workers (3-40x
slower): run with OMP_WAIT_POLICY=PASSIVE in the environment (read before
torch is imported; bench/run.sh sets it).

Run with Debian's python (/usr/bin/python3, package python3-torch):
    /usr/bin/python3 bench/torch_bench.py --threads 1 --epochs 10
The last line is 'RESULT {json}'.
"""
import argparse
import ctypes
import gzip
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = data[0] << 8 | data[1], data[2], data[3]
    assert zero == 0 and dtype == 0x08, f"{path}: not an unsigned-byte IDX file"
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion(root):
    def images(name):
        x = load_idx(os.path.join(root, name))
        return torch.from_numpy(x.reshape(x.shape[0], 784).astype(np.float32) / np.float32(255.0))

    def labels(name):
        return torch.from_numpy(load_idx(os.path.join(root, name)).astype(np.int64))

    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)
        for layer in (self.fc1, self.fc2, self.fc3):
            nn.init.xavier_uniform_(layer.weight)  # == Keras glorot_uniform
            nn.init.zeros_(layer.bias)

    def logits(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)

    def forward(self, x):
        return torch.softmax(self.logits(x), dim=1)


class KerasAdam:
    """Adam exactly as tf.keras: epsilon added to sqrt(v) before bias correction."""

    def __init__(self, params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
        self.params = list(params)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        g = [p.grad for p in self.params]
        torch._foreach_mul_(self.m, self.b1)
        torch._foreach_add_(self.m, g, alpha=1.0 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, g, g, value=1.0 - self.b2)
        alpha = self.lr * math.sqrt(1.0 - self.b2 ** self.t) / (1.0 - self.b1 ** self.t)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, value=-alpha)


def set_blas_threads(n):
    """OpenBLAS's pool to n threads; returns (config, core, threads) or Nones."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0")  # the instance torch's libblas.so.3 forwards to
    except OSError:
        return None, None, None
    lib.openblas_get_corename.restype = ctypes.c_char_p
    lib.openblas_get_config.restype = ctypes.c_char_p
    lib.openblas_set_num_threads(n)
    return (lib.openblas_get_config().decode(), lib.openblas_get_corename().decode(),
            lib.openblas_get_num_threads())


def evaluate(model, x, y):
    with torch.no_grad():
        z = model.logits(x)
        return F.cross_entropy(z, y).item(), (z.argmax(1) == y).double().mean().item()


def bench_latency(fn, xs, calls, warmup=300):
    """Batch-1 latency: one call per sample (cycling over xs), each timed."""
    with torch.no_grad():
        for i in range(warmup):
            fn(xs[i % len(xs)])
        ts = []
        pc = time.perf_counter_ns
        for i in range(calls):
            x = xs[i % len(xs)]
            t0 = pc()
            fn(x)
            ts.append(pc() - t0)
    ts.sort()
    return {"median_us": ts[len(ts) // 2] / 1e3, "min_us": ts[0] / 1e3,
            "p90_us": ts[int(len(ts) * 0.9)] / 1e3}


def bench_throughput(fn, x, batch, reps, warmup=2):
    """Samples/s over the whole of x in batches of `batch`; median and max over reps."""
    chunks = [x[i:i + batch] for i in range(0, x.shape[0], batch)]
    with torch.no_grad():
        for _ in range(warmup):
            for c in chunks:
                fn(c)
        rates = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for c in chunks:
                fn(c)
            rates.append(x.shape[0] / (time.perf_counter() - t0))
    return {"median": statistics.median(rates), "max": max(rates)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--infer-calls", type=int, default=10000)
    ap.add_argument("--tput-reps", type=int, default=15)
    ap.add_argument("--no-infer", action="store_true")
    args = ap.parse_args()

    if args.threads > 1 and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print("warning: --threads > 1 without OMP_WAIT_POLICY=PASSIVE: torch's and OpenBLAS's "
              "workers will fight over the cores", file=sys.stderr)
    torch.set_num_threads(args.threads)
    blas_cfg, blas_core, blas_threads = set_blas_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)
    res = {"side": "torch", "torch": torch.__version__, "numpy": np.__version__,
           "threads": torch.get_num_threads(), "blas_threads": blas_threads,
           "openblas_config": blas_cfg, "openblas_core": blas_core, "seed": args.seed,
           "batch": args.batch,
           "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OPENBLAS_CORETYPE",
                                                   "OPENBLAS_NUM_THREADS", "OPENBLAS_L2_SIZE")}}
    print(f"torch {torch.__version__}, {res['threads']} thread(s), OpenBLAS {blas_threads} "
          f"thread(s), core {blas_core}, env {res['env']}")
    res["rss_after_import_mb"] = peak_rss_mb()

    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_fashion(args.data)
    res["load_s"] = time.perf_counter() - t0
    res["rss_after_load_mb"] = peak_rss_mb()

    model = MLP()
    opt = KerasAdam(model.parameters())
    gen = torch.Generator().manual_seed(args.seed)
    n, B = xtr.shape[0], args.batch
    res["steps_per_epoch"] = math.ceil(n / B)
    epoch_s, step_s = [], []  # step_s: full-batch steps only
    pc = time.perf_counter
    for ep in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        t_step = t0
        for i in range(0, n, B):
            idx = perm[i:i + B]
            xb = xtr.index_select(0, idx)
            yb = ytr.index_select(0, idx)
            z = model.logits(xb)
            loss = F.cross_entropy(z, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                loss_sum += loss.detach() * yb.shape[0]
                correct += (z.argmax(1) == yb).sum()
            t_now = pc()
            if yb.shape[0] == B:
                step_s.append(t_now - t_step)
            t_step = t_now
        dt = time.perf_counter() - t0
        epoch_s.append(dt)
        print(f"epoch {ep + 1:2d}/{args.epochs}  {dt:7.3f} s  {n / dt:9.0f} samples/s  "
              f"loss {loss_sum.item() / n:.4f}  acc {correct.item() / n:.4f}", flush=True)
    res["epoch_s"] = epoch_s
    res["epoch_s_median"] = statistics.median(epoch_s)
    res["train_sps_median"] = n / res["epoch_s_median"]
    # median full-batch step x steps: an epoch time a few preempted steps do not move
    res["step_s_median"] = statistics.median(step_s)
    res["epoch_s_steady"] = res["step_s_median"] * res["steps_per_epoch"]
    res["train_loss_last"] = loss_sum.item() / n
    res["train_acc_last"] = correct.item() / n
    model.eval()
    res["test_loss"], res["test_acc"] = evaluate(model, xte, yte)
    res["rss_after_train_mb"] = peak_rss_mb()
    print(f"train: median epoch {res['epoch_s_median']:.3f} s, {res['train_sps_median']:.0f} "
          f"samples/s; median step {res['step_s_median'] * 1e6:.1f} us (x {res['steps_per_epoch']} = "
          f"{res['epoch_s_steady']:.3f} s); test: loss {res['test_loss']:.4f}  accuracy {res['test_acc']:.4f}")

    res["infer"] = None
    if not args.no_infer:
        variants = {"eager": model}
        with torch.no_grad():
            try:
                variants["optimize_for_inference"] = torch.jit.optimize_for_inference(
                    torch.jit.script(model).eval())
            except Exception as e:  # noqa: BLE001 -- reported, the eager figures still count
                print(f"optimize_for_inference failed: {e}", file=sys.stderr)
        xs = [xte[i:i + 1].clone() for i in range(min(1000, xte.shape[0]))]
        res["infer"] = {}
        for name, fn in variants.items():
            lat = bench_latency(fn, xs, args.infer_calls)
            t10k = bench_throughput(fn, xte, 10000, reps=args.tput_reps)
            t128 = bench_throughput(fn, xte, 128, reps=min(args.tput_reps, 7))
            res["infer"][name] = {"b1": lat, "b10000_sps": t10k, "b128_sps": t128}
            print(f"inference {name}: batch 1 median {lat['median_us']:.1f} us (min "
                  f"{lat['min_us']:.1f}); batch 10000 {t10k['median']:.0f} samples/s; batch 128 "
                  f"{t128['median']:.0f} samples/s")
    res["peak_rss_mb"] = peak_rss_mb()
    print(f"peak RSS {res['peak_rss_mb']:.0f} MB (after import {res['rss_after_import_mb']:.0f}, "
          f"after load {res['rss_after_load_mb']:.0f}, after train {res['rss_after_train_mb']:.0f})")
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
