#!/usr/bin/env python3
"""bench/mpi_model.py OUT — the summary of bench/mpi.sh's logs in OUT, and
the scaling model on paper for 8 machines (Markdown on stdout).

The model: a rank's compute per step at per-rank batch b is t(b) = t0 + k b
(least squares over the measured one-process medians at b = 32..256,
t0 >= 0); the
pass's buckets (sizes from the train-distributed dump) are ready when a
fraction w of the per-sample part k b of the step is left to compute
(from the step profile for the MLP, from FLOPs for the convnet), and each
is a ring allreduce over N machines,
    T(G) = 2 (N - 1) alpha + 2 (N - 1) / N * G / B,
one after the other on the link. What runs past the end of the backward
pass is exposed; efficiency = t(b) / (t(b) + exposed)."""
import glob
import os
import re
import statistics as st
import sys

out = sys.argv[1]
med = st.median

# buckets: (floats, w = fraction of k*b still to compute when the bucket is ready)
MODELS = {
    "mnist_mlp": {
        "label": "seed MLP (784-128-64-10)",
        # layers 3 and 2 (+ loss, accuracy) before layer 1's dX/relu'/dW GEMMs
        # (123 of the 293 us of per-sample work at batch 128: bench/RESULTS.md's
        # step profile); layer 1 (401.9 KB) at the end
        "buckets": [(8908, 123.0 / 293.0), (100480, 0.0)],
    },
    "fashion_cnn": {
        "label": "convnet (fashion_cnn)",
        # FLOPs per sample: forward 4.88M; backward: dense 0.06M, c2 filter 4.46M,
        # c2 input 4.46M, c1 filter 0.39M (of 14.25M in all)
        "buckets": [(16012, 9.31 / 14.25), (18496, 4.85 / 14.25), (320, 0.0)],
    },
}
NETS = [  # name, effective bandwidth (B/s), latency per message step (s)
    ("10 GbE (TCP: 1.1 GB/s, 25 us)", 1.1e9, 25e-6),
    ("100 GbE (RDMA: 11 GB/s, 5 us)", 11e9, 5e-6),
]
N = 8


def read(path):
    try:
        return open(path).read()
    except OSError:
        return ""


def train_line(text):
    m = re.search(r"^train: median epoch ([0-9.]+) s.*median step ([0-9.]+) us", text, re.M)
    return (float(m.group(1)), float(m.group(2)) * 1e-6) if m else None


def stats(text):
    """(start_s, wait_s, count) of rank 0's KILN_DIST_STATS line."""
    m = re.search(r"rank 0 of \d+: (\d+) allreduces.*starting them ([0-9.]+) ms, waiting for them ([0-9.]+) ms", text)
    return (float(m.group(2)) * 1e-3, float(m.group(3)) * 1e-3, int(m.group(1))) if m else None


def allreduce(f):
    m = re.search(r"median ([0-9.]+) us, min ([0-9.]+) us", read(f"{out}/allreduce_{f}.log"))
    return (float(m.group(1)) * 1e-6, float(m.group(2)) * 1e-6) if m else None


def result(text):
    """(median step wall s, median step CPU s) from a RESULT line."""
    m = re.search(r'"step_cpu_s_median": ([0-9.e-]+).*"step_s_median": ([0-9.e-]+)', text)
    return (float(m.group(2)), float(m.group(1))) if m else None


def medians(pattern):
    """(wall, CPU) medians of the median steps in the logs matching pattern."""
    rs = [r for r in (result(read(f)) for f in sorted(glob.glob(f"{out}/{pattern}"))) if r]
    return (med(r[0] for r in rs), med(r[1] for r in rs)) if rs else None


def coll(mode, f):
    m = re.search(r"median ([0-9.]+) us, min ([0-9.]+) us", read(f"{out}/allreduce_{mode}_{f}.log"))
    return (float(m.group(1)) * 1e-6, float(m.group(2)) * 1e-6) if m else None


def local(f):
    m = re.search(r"one bucket: ([0-9.]+) us CPU", read(f"{out}/local_{f}.log"))
    return float(m.group(1)) * 1e-6 if m else None


def breakdown():
    """What a seed-MLP step is made of, at 1 process and per rank of 2."""
    a128, a64 = medians("mnist_mlp_np1_r*.log"), medians("mnist_mlp_b64_r*.log")
    s128, s64 = medians("mlp_sgd_b128_r*.log"), medians("mlp_sgd_b64_r*.log")
    two = medians("mnist_mlp_np2_r*.log")
    if not (a128 and a64 and s128 and s64):
        return
    us = lambda t: f"{t * 1e6:.0f} us"
    print("#### What a seed-MLP step is made of (global batch 128, 1 thread per rank)\n")
    print("Medians of the runs' median steps, wall / CPU (one process: CPU is the work itself).\n")
    print("| part | 1 process, batch 128 | a rank of 2, batch 64 |")
    print("|---|---|---|")
    print(f"| step with SGD (forward, backward, a 1-FMA update) | {us(s128[0])} / {us(s128[1])} | {us(s64[0])} / {us(s64[1])} |")
    print(f"| Adam instead of SGD, all 109k weights (Adam step - SGD step) | {us(a128[0] - s128[0])} / {us(a128[1] - s128[1])} | {us(a64[0] - s64[0])} / {us(a64[1] - s64[1])} |")
    print(f"| = the step alone (Adam) | {us(a128[0])} / {us(a128[1])} | {us(a64[0])} / {us(a64[1])} |")
    bk = [(g, coll("raw", g), coll("scatter", g), local(g)) for g in (8908, 100480)]
    if all(r and s and l for _, r, s, l in bk):
        raw = sum(r[0] for _, r, _, _ in bk)
        sh = sum(l for _, _, _, l in bk)
        print(f"| the shim's copies and scaling, both buckets (--mode local, CPU) | | {us(sh)} |")
        print(f"| MPI_Allreduce of the buckets alone, 35.6 + 401.9 KB (median wall) | | {us(bk[0][1][0])} + {us(bk[1][1][0])} |")
        print(f"| = a rank's step from its parts | | {us(a64[0] + sh + raw)} |")
        if two:
            print(f"| measured 2-rank step (rank 0, median) | | {us(two[0])} / {us(two[1])} CPU |")
        print(f"\nFrom the parts: 2 ranks = **{a128[0] / (a64[0] + sh + raw):.2f}x** one process; 1.7x needs a 2-rank "
              f"step of {us(a128[0] / 1.7)}, i.e. {us(a128[0] / 1.7 - a64[0])} for all communication.")
        print("\nA sharded optimizer (ZeRO stage 1: reduce-scatter, each rank updates 1/2 of the weights, "
              "allgather) instead of the allreduce, per bucket (median wall, 2 ranks):\n")
        print("| bucket | MPI_Allreduce | reduce-scatter + allgather | Adam saved (half of its share) | net |")
        print("|---|---|---|---|---|")
        adam = a64[0] - s64[0]
        for g, r, s_, _ in bk:
            save = adam / 2 * g / 109388
            print(f"| {g * 4 / 1e3:.1f} KB | {us(r[0])} | {us(s_[0])} | {us(save)} | "
                  f"{'+' if s_[0] - r[0] - save > 0 else '-'}{us(abs(s_[0] - r[0] - save))} per step |")
    print()


def fit(points):
    xs, ys = zip(*points)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    if my - k * mx < 0:  # no fixed part: through the origin
        return 0.0, sum(x * y for x, y in points) / sum(x * x for x in xs)
    return my - k * mx, k


def ring(G, bw, alpha):
    return 2 * (N - 1) * alpha + 2 * (N - 1) / N * G * 4 / bw


def step(t0, k, b, buckets, bw, alpha):
    P = k * b
    end = 0.0
    for g, w in buckets:
        end = max(end, P * (1 - w)) + ring(g, bw, alpha)
    exposed = max(0.0, end - P)
    return (t0 + P) / (t0 + P + exposed), exposed


print(f"Raw logs: `{out}`.\n")
for name, M in MODELS.items():
    reps = sorted(glob.glob(f"{out}/{name}_np1_r*.log"))
    if not reps:
        continue
    rows, split = [], []
    for f1 in reps:
        r = f1.rsplit("_r", 1)[1][:-4]
        t1, t2 = read(f1), read(f"{out}/{name}_np2_r{r}.log")
        a, b = train_line(t1), train_line(t2)
        s = stats(t2)
        if not a or not b:
            continue
        load = re.findall(r"^load ([0-9.]+)", t1 + t2, re.M)
        rows.append((a, b, load))
        if s:
            split.append((b[0], s))
    if not rows:
        continue
    wall = [a[0] / b[0] for a, b, _ in rows]
    medr = [a[1] / b[1] for a, b, _ in rows]
    print(f"#### {M['label']}, global batch 128, 1 thread per rank\n")
    print("| rep | 1 process: wall s | 2 ranks: wall s | samples/s ratio (wall) | 1 process: median step | 2 ranks: median step | ratio (median steps) | load |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (a, b, load) in enumerate(rows):
        print(f"| {i + 1} | {a[0]:.3f} | {b[0]:.3f} | {a[0] / b[0]:.2f}x | {a[1] * 1e6:.0f} us | {b[1] * 1e6:.0f} us | {a[1] / b[1]:.2f}x | {'/'.join(load)} |")
    print(f"\nMedian ratio 2 ranks / 1 process: **{med(wall):.2f}x** (wall), {med(medr):.2f}x (median steps).")
    if split:
        wall2, (s0, w0, cnt) = split[len(split) // 2]
        print(f"Rank 0 of a 2-rank run (rep {len(split) // 2 + 1}): {wall2:.3f} s wall, of which "
              f"{s0:.3f} s in starting or making the {cnt} sums and {w0:.3f} s waiting for them; "
              f"compute and the rest {wall2 - s0 - w0:.3f} s.")
    pts = []
    for b in (32, 64, 128, 256):
        ms = []
        for f in glob.glob(f"{out}/{name}_b{b}_r*.log") if b != 128 else reps:
            t = train_line(read(f))
            if t:
                ms.append(t[1])
        if ms:
            pts.append((b, med(ms)))
    if len(pts) < 2:
        continue
    t0, k = fit(pts)
    print(f"\nA rank's compute (one process, median step): " +
          ", ".join(f"batch {b}: {t * 1e6:.0f} us" for b, t in pts) +
          f"; fit t(b) = {t0 * 1e6:.0f} us + {k * 1e6:.2f} us x b.")
    tot = sum(g for g, _ in M["buckets"])
    ar = allreduce(tot)
    bks = [allreduce(g) for g, _ in M["buckets"]]
    if ar:
        print(f"Allreduce of all {tot * 4 / 1e3:.1f} KB of gradients over 2 ranks (shared memory, "
              f"bench_allreduce): median {ar[0] * 1e6:.0f} us (min {ar[1] * 1e6:.0f}); the pass's buckets: " +
              ", ".join(f"{g * 4 / 1e3:.1f} KB {x[0] * 1e6:.0f} us" for (g, _), x in zip(M["buckets"], bks) if x) + ".")
        half = dict(pts).get(64)
        full = dict(pts).get(128)
        if half and full:
            print(f"From these parts, 2 ranks that never wait for each other (a quiet machine) would take "
                  f"{half * 1e6:.0f} + {ar[0] * 1e6:.0f} us per step of 128 (a rank's half-batch compute + the "
                  f"allreduce, which here the same two cores make, so it does not overlap): "
                  f"**{full / (half + ar[0]):.2f}x** one process.")
    print(f"\nOn paper, {N} machines, ring allreduce per bucket (buckets: " +
          ", ".join(f"{g * 4 / 1e3:.1f} KB with {w:.0%} of the per-sample work left" for g, w in M["buckets"]) + "):\n")
    print("| network | per-rank batch | compute t(b) | exposed comm | efficiency |")
    print("|---|---|---|---|---|")
    for net, bw, alpha in NETS:
        for b in (32, 64, 128, 256):
            e, x = step(t0, k, b, M["buckets"], bw, alpha)
            print(f"| {net} | {b} | {(t0 + k * b) * 1e6:.0f} us | {x * 1e6:.0f} us | {e:.0%} |")
        b90 = next((b for b in range(1, 1 << 16) if step(t0, k, b, M["buckets"], bw, alpha)[0] >= 0.9), None)
        print(f"| {net} | **{b90}** (90%) | {(t0 + k * b90) * 1e6:.0f} us | | global batch {N * b90} |" if b90 else f"| {net} | never 90% | | | |")
    print()


breakdown()
