#!/usr/bin/env bash
# bench/conv_ab.sh — two builds of bench_kiln_run on the convnet
# (examples/fashion_cnn.kiln), alternating A and B in every repetition, for
# kernel changes measured on a shared machine (issues 14 and 18): the ratios
# of the same repetition and the CPU seconds are what to read, not wall times.
#
#   bench/conv_ab.sh A_BIN B_BIN [--reps N] [--steps N] [--threads N] [--data DIR]
#
#   A_BIN, B_BIN   bench_kiln_run binaries (static: copy the baseline to /tmp)
#   --reps N       A/B pairs (default 5)     --steps N   train steps (default 20)
#   --threads N    (default 1)               --data DIR  Fashion-MNIST
#
# Per run: batch-1 latency of infer (median of 2000 calls), batch-10,000
# throughput, the median train step's CPU seconds, the run's user CPU
# (/usr/bin/time), and the final training loss (equal when the kernels agree).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,15p "$0" >&2; exit 2; }
a=$1 b=$2; shift 2
reps=5 steps=20 threads=1 data=/usr/share/datasets/fashion-mnist
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "bench/conv_ab.sh: $1 needs a value" >&2; exit 2; }
  case $1 in
    --reps) reps=$2 ;; --steps) steps=$2 ;; --threads) threads=$2 ;; --data) data=$2 ;;
    *) echo "bench/conv_ab.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$reps"); do
  for side in A B; do
    bin=$a; [ "$side" = B ] && bin=$b
    /usr/bin/time -f "%U" -o "$tmp/cpu" "$bin" --model examples/fashion_cnn.kiln --data "$data" \
      --threads "$threads" --steps "$steps" --epochs 1 --infer-calls 2000 > "$tmp/out" 2>&1
    sed -n 's/^RESULT //p' "$tmp/out" | python3 -c '
import json, sys
d = json.load(sys.stdin); j = d["infer"]["jit"]
print(json.dumps({"side": sys.argv[1], "rep": int(sys.argv[2]), "b1_us": j["b1"]["median_us"],
                  "b10000_sps": j["b10000_sps"]["median"], "step_cpu_ms": 1e3 * d["step_cpu_s_median"],
                  "run_cpu_s": float(open(sys.argv[3]).read().split()[-1]), "loss": d["train_loss_last"]}))
' "$side" "$r" "$tmp/cpu" >> "$tmp/rows"
  done
done
python3 - "$tmp/rows" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ["b1_us", "b10000_sps", "step_cpu_ms", "run_cpu_s"]
print("| rep | " + " | ".join(f"{k} A | B | B/A" for k in keys) + " | loss A = B |")
print("|---" * (1 + 3 * len(keys) + 1) + "|")
ratios = {k: [] for k in keys}
for r in sorted({x["rep"] for x in rows}):
    A = next(x for x in rows if x["rep"] == r and x["side"] == "A")
    B = next(x for x in rows if x["rep"] == r and x["side"] == "B")
    cells = []
    for k in keys:
        ratios[k].append(B[k] / A[k])
        cells.append(f"{A[k]:.4g} | {B[k]:.4g} | {B[k] / A[k]:.3f}")
    print(f"| {r} | " + " | ".join(cells) + f" | {A['loss'] == B['loss']} |")
print("| median B/A | " + " | ".join(f" | | {st.median(ratios[k]):.3f}" for k in keys) + " | |")
PY
