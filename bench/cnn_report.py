#!/usr/bin/python3
"""cnn_report.py OUT_DIR -- the convnet benchmark's table (bench/cnn.sh):
medians over the repetitions of each side's RESULT lines, and the ratios
PyTorch / Kiln (higher is better for Kiln), as Markdown on stdout."""
import glob
import json
import os
import re
import statistics
import sys

STEPS_PER_EPOCH = 469


def load(out, side):
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, f"{side}_t*_r*.json"))):
        t = int(re.search(r"_t(\d+)_r", path).group(1))
        with open(path) as f:
            text = f.read().strip()
        if text:
            runs.setdefault(t, []).append(json.loads(text))
    return runs


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def ratio(a, b):
    return f"**{a / b:.2f}x**" if a == a and b == b and b else "—"


def num(v, fmt):
    return format(v, fmt) if v == v else "—"


def main():
    out = sys.argv[1]
    kiln, torch = load(out, "kiln"), load(out, "torch")
    with open(os.path.join(out, "machine.txt")) as f:
        machine = " ".join(line.strip() for line in f)
    print(f"Raw results: `{out}` ({machine}).\n")
    print("| threads | reps | epoch (median step x 469), Kiln | PyTorch | PyTorch / Kiln "
          "| CPU s an epoch, Kiln | PyTorch | ratio "
          "| batch-1 latency, Kiln | PyTorch | ratio | batch-10,000 samples/s, Kiln | PyTorch "
          "| ratio | compile ms (train step / all) | peak RSS MB, Kiln / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t in sorted(kiln):
        k, p = kiln[t], torch.get(t, [])
        ke = med([r["step_s_median"] for r in k]) * STEPS_PER_EPOCH
        pe = med([r["epoch_s_steady"] for r in p])
        kl = med([r["infer"]["jit"]["b1"]["median_us"] for r in k if r.get("infer")])
        pl = med([r["b1"]["median_us"] for r in p if "b1" in r])
        kt = med([r["infer"]["jit"]["b10000_sps"]["median"] for r in k if r.get("infer")])
        pt = med([r["b10000_sps"]["median"] for r in p if "b10000_sps" in r])
        kc = med([r.get("step_cpu_s_median") for r in k]) * STEPS_PER_EPOCH
        pc = med([r.get("step_cpu_s_median") for r in p]) * STEPS_PER_EPOCH
        cm = med([r["compile_ms"] for r in k])
        cmt = med([r["compile_ms_total"] for r in k])
        kr, pr = med([r["peak_rss_mb"] for r in k]), med([r["peak_rss_mb"] for r in p])
        print(f"| {t} | {len(k)}/{len(p)} | {num(ke, '.1f')} s | {num(pe, '.1f')} s | {ratio(pe, ke)} "
              f"| {num(kc, '.1f')} | {num(pc, '.1f')} | {ratio(pc, kc)} "
              f"| {num(kl, '.0f')} µs | {num(pl, '.0f')} µs | {ratio(pl, kl)} | {num(kt, '.0f')} "
              f"| {num(pt, '.0f')} | {ratio(kt, pt)} | {num(cm, '.0f')} / {num(cmt, '.0f')} "
              f"| {num(kr, '.0f')} / {num(pr, '.0f')} |")
    acc_k, acc_t = os.path.join(out, "kiln_acc.json"), os.path.join(out, "torch_acc.json")
    if os.path.exists(acc_k) and os.path.exists(acc_t):
        with open(acc_k) as f:
            k = json.load(f)
        with open(acc_t) as f:
            p = json.load(f)
        rss = ""
        tpath = os.path.join(out, "kiln_acc.time")
        if os.path.exists(tpath):
            m = re.search(r"peak_rss_kb (\d+)", open(tpath).read())
            rss = f"; peak RSS of `kiln train` {int(m.group(1)) / 1024:.0f} MB" if m else ""
        ka, pa = k["test"]["accuracy"], p["test_acc"]
        print(f"\nThe whole recipe (12 epochs, batch 128, 1 thread): test accuracy Kiln "
              f"**{ka:.4f}** (loss {k['test']['loss']:.4f}), PyTorch **{pa:.4f}** (loss "
              f"{p['test_loss']:.4f}): {100 * (ka - pa):+.2f} points{rss}.")


if __name__ == "__main__":
    main()
