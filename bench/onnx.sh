#!/usr/bin/env bash
# bench/onnx.sh — inference at 1 thread side by side: Kiln (JIT and AOT .so)
# vs ONNX Runtime (npm's onnxruntime-node, CPU) vs PyTorch eager, on an MLP
# (784-128-64-10) and a convnet (examples/fashion_cnn.kiln's layers), both
# exported from PyTorch (bench/onnx_torch.py): batch-1 latency and
# batch-10,000 throughput.
#
#   bench/onnx.sh [--quick] [--build-dir DIR] [--no-build] [--out DIR]
#
# Every number is a median at one thread (OPENBLAS_NUM_THREADS=1, Kiln's
# --threads 1, ORT's intra- and inter-op pools of 1, torch.set_num_threads(1)).
# ONNX Runtime is timed per awaited session.run() from Node; its per-call
# cost, measured on a one-node Identity model, is subtracted from its times
# (both raw and corrected figures are printed). When Kiln cannot import
# PyTorch's convnet (the importer's Conv is issue 16's other half), Kiln runs
# its own fashion_cnn.kiln and ONNX Runtime runs Kiln's export of it (NHWC,
# with one Transpose in and one out), with PyTorch's convnet export in ORT
# alongside.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=build-bench build=1 out='' quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --build-dir) build_dir=${2:?}; shift ;;
    --no-build) build=0 ;;
    --out) out=${2:?}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/onnx.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
calls=30000 reps=9
[ "$quick" = 1 ] && calls=3000 reps=3
PY=/usr/bin/python3
bin=$build_dir/bin
if [ "$build" = 1 ]; then
  [ -f "$build_dir/CMakeCache.txt" ] ||
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=OFF > /dev/null
  cmake -S . -B "$build_dir" > /dev/null
  cmake --build "$build_dir" -j"$(nproc)" --target kiln_cli bench_onnx_infer > "$build_dir/onnx-build.log" 2>&1 ||
    { tail -20 "$build_dir/onnx-build.log" >&2; exit 1; }
fi
node_path=$(tests/onnx/ort_env.sh) || { echo "bench/onnx.sh: ONNX Runtime is not available" >&2; exit 1; }
[ -n "$out" ] || out=$build_dir/bench-out/onnx-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
export KILN_CACHE_DIR=$out/cache OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
echo "== bench/onnx.sh: results in $out (load $(cut -d' ' -f1-3 /proc/loadavg))"

$PY bench/onnx_torch.py export "$out" 2> "$out/export.log" || { cat "$out/export.log" >&2; exit 1; }
ort() { # ort MODEL INPUT RUNS -> median seconds per call (warm-up: RUNS/10 + 1 calls)
  NODE_PATH=$node_path node tests/onnx/ort_run.js "$1" --input "$2" --runs "$3" --warmup $(( $3 / 10 + 1 )) |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["median_s"])'
}
kiln() { # kiln NAME MODEL [--load CKPT]
  local name=$1; shift
  "$bin/bench_onnx_infer" "$@" --calls "$calls" --reps "$reps" > "$out/kiln_$name.log" 2>&1 ||
    { cat "$out/kiln_$name.log" >&2; exit 1; }
  sed -n 's/^RESULT //p' "$out/kiln_$name.log"
}

# The convnet Kiln runs, and the file ORT runs next to it.
if "$bin/kiln" summary "$out/cnn_torch.onnx" > /dev/null 2> "$out/cnn_import.log"; then
  cnn_note="PyTorch's export in both"
  kiln_cnn=("$out/cnn_torch.onnx") ort_cnn=$out/cnn_torch.onnx cnn_in=cnn
else
  cnn_note="Kiln cannot import PyTorch's Conv yet: Kiln runs examples/fashion_cnn.kiln, ORT Kiln's export of it"
  "$bin/kiln" train examples/fashion_cnn.kiln --epochs 1 --max-steps 50 --no-eval --threads 1 \
    --save "$out/fashion_cnn.st" > "$out/cnn_train.log" 2>&1
  "$bin/kiln" export examples/fashion_cnn.kiln --load "$out/fashion_cnn.st" -o "$out/cnn_kiln.onnx"
  kiln_cnn=(examples/fashion_cnn.kiln --load "$out/fashion_cnn.st") ort_cnn=$out/cnn_kiln.onnx
  cnn_in=cnn_nhwc
fi
echo "   convnet: $cnn_note"

{
  echo "ort_identity_s=$(ort "$out/identity.onnx" "$out/identity_x1.npy" "$calls")"
  echo "ort_mlp_b1_s=$(ort "$out/mlp_torch.onnx" "$out/mlp_x1.npy" "$calls")"
  echo "ort_mlp_big_s=$(ort "$out/mlp_torch.onnx" "$out/mlp_x10k.npy" "$reps")"
  echo "ort_cnn_b1_s=$(ort "$ort_cnn" "$out/${cnn_in}_x1.npy" "$calls")"
  echo "ort_cnn_big_s=$(ort "$ort_cnn" "$out/${cnn_in}_x10k.npy" "$reps")"
  if [ "$ort_cnn" != "$out/cnn_torch.onnx" ]; then
    echo "ort_tcnn_b1_s=$(ort "$out/cnn_torch.onnx" "$out/cnn_x1.npy" "$calls")"
    echo "ort_tcnn_big_s=$(ort "$out/cnn_torch.onnx" "$out/cnn_x10k.npy" "$reps")"
  fi
} > "$out/ort.txt"
echo "kiln_mlp=$(kiln mlp "$out/mlp_torch.onnx")" > "$out/kiln.txt"
echo "kiln_cnn=$(kiln cnn "${kiln_cnn[@]}")" >> "$out/kiln.txt"
$PY bench/onnx_torch.py time "$out" --calls "$calls" --reps "$reps" > "$out/torch.log" 2>&1 ||
  { cat "$out/torch.log" >&2; exit 1; }
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/ort.txt"

$PY - "$out" "$cnn_note" <<'PY'
import json, sys
out, note = sys.argv[1], sys.argv[2]
kv = lambda f: dict(l.strip().split("=", 1) for l in open(f) if "=" in l)
o, k = kv(f"{out}/ort.txt"), kv(f"{out}/kiln.txt")
t = json.loads([l for l in open(f"{out}/torch.log") if l.startswith("RESULT ")][0][7:])
ovh = float(o["ort_identity_s"])
print(f"ONNX Runtime per-call cost (Identity on [1,1]): {ovh*1e6:.1f} us, subtracted below "
      f"(raw figures in parentheses); load after: {o['load_after']}")
print("| model | figure | Kiln JIT | Kiln AOT .so | ONNX Runtime | PyTorch | Kiln's best ÷ ORT (speed) |")
print("|---|---|---|---|---|---|---|")
rows = [("MLP", "mlp", "mlp"), ("convnet", "cnn", "cnn")]
if "ort_tcnn_b1_s" in o:
    rows.append(("convnet, PyTorch's export (ORT only)", None, "tcnn"))
for label, kn, on in rows:
    kj = json.loads(k[f"kiln_{kn}"]) if kn else None
    b1, big = float(o[f"ort_{on}_b1_s"]), float(o[f"ort_{on}_big_s"])
    ob1, otp = (b1 - ovh) * 1e6, 10000 / (big - ovh)
    tt = t.get(kn or "cnn")
    if kj:
        best1 = min(kj["jit_b1_us"], kj["aot_b1_us"])
        bestt = max(kj["jit_tput"], kj["aot_tput"])
        print(f"| {label} | batch-1 latency | {kj['jit_b1_us']:.2f} us | {kj['aot_b1_us']:.2f} us | "
              f"{ob1:.2f} us ({b1*1e6:.2f}) | {tt['b1_us']:.2f} us | {ob1/best1:.2f}x |")
        print(f"| {label} | batch-10,000 | {kj['jit_tput']:,.0f}/s | {kj['aot_tput']:,.0f}/s | "
              f"{otp:,.0f}/s ({10000/big:,.0f}) | {tt['tput']:,.0f}/s | {bestt/otp:.2f}x |")
    else:
        print(f"| {label} | batch-1 latency | | | {ob1:.2f} us ({b1*1e6:.2f}) | | |")
        print(f"| {label} | batch-10,000 | | | {otp:,.0f}/s ({10000/big:,.0f}) | | |")
print(f"convnet: {note}")
PY
