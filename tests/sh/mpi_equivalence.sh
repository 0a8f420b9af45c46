#!/usr/bin/env bash
# Data-parallel training gives the weights of one process: 50 steps of
# mnist_mlp at a global batch of 128 on 1 process, on 2 ranks (64 rows
# each) and on 3 ranks (uneven shards: 42, 43, 43 rows) end within 1e-5 of
# each other, weights and optimizer state alike; so does the convnet
# after 5 steps; and a checkpoint moves between a 2-rank run and a single
# process (an epoch + an epoch either way).
# Arguments (from ctest): KILN_BINARY BUILD_DIR SOURCE_DIR. Run only when
# Kiln is built with MPI (tests/CMakeLists.txt).
set -euo pipefail
KILN=${1:?usage: mpi_equivalence.sh KILN BUILD_DIR SOURCE_DIR}
SRC=${3:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
MODEL=$SRC/examples/mnist_mlp.kiln
DIFF="python3 $SRC/tests/sh/st_diff.py"
common=(--threads 1 --batch-size 128 --seed 7 --no-eval)
# Under tests/run.sh --sanitize the ranks run without LeakSanitizer: Open
# MPI's components (dlopen'ed, unloaded at MPI_Finalize) leave allocations
# that LeakSanitizer can only call "<unknown module>", so no suppression can
# name them (only mpirun's children get this). Kiln's own code on this path
# is leak-checked by the other tests (allreduce_mean in the unit tables).
rank_asan="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mpi() { local n=$1; shift; ASAN_OPTIONS=$rank_asan mpirun --allow-run-as-root --oversubscribe -x ASAN_OPTIONS ${KILN_ALLREDUCE:+-x KILN_ALLREDUCE} -np "$n" "$KILN" "$@"; }

"$KILN" train "$MODEL" "${common[@]}" --max-steps 50 --save "$T/one.st" >"$T/one.log"
mpi 2 train "$MODEL" --distributed "${common[@]}" --max-steps 50 --save "$T/two.st" >"$T/two.log"
mpi 3 train "$MODEL" --distributed "${common[@]}" --max-steps 50 --save "$T/three.st" >"$T/three.log"
echo "2 ranks x 64 vs 1 process x 128:"; $DIFF "$T/one.st" "$T/two.st" 1e-5
echo "3 ranks (42/43/43) vs 1 process x 128:"; $DIFF "$T/one.st" "$T/three.st" 1e-5

# Within one machine sums block where they start; the non-blocking ones
# (which overlap the backward pass across machines) give the same weights:
# over 2 ranks to the bit (a + b either way), over 3 within 1e-5.
KILN_ALLREDUCE=overlap mpi 2 train "$MODEL" --distributed "${common[@]}" --max-steps 50 \
  --save "$T/two_ov.st" >/dev/null
KILN_ALLREDUCE=overlap mpi 3 train "$MODEL" --distributed "${common[@]}" --max-steps 50 \
  --save "$T/three_ov.st" >/dev/null
echo "2 ranks, non-blocking vs blocking sums:"; $DIFF "$T/two.st" "$T/two_ov.st" 0
echo "3 ranks, non-blocking sums vs 1 process:"; $DIFF "$T/one.st" "$T/three_ov.st" 1e-5

# The progress line (rank 0's) shows the loss and accuracy of the whole
# batch: the same figures as the single process, to the printed digits.
last() { tr '\r' '\n' <"$1" | grep -Eo 'accuracy: [0-9.]+ - loss: [0-9.]+' | tail -1; }
echo "1 process: $(last "$T/one.log") | 2 ranks: $(last "$T/two.log") | 3 ranks: $(last "$T/three.log")"
[ "$(last "$T/one.log")" = "$(last "$T/two.log")" ]
[ "$(last "$T/one.log")" = "$(last "$T/three.log")" ]
# Only rank 0 saves and prints: one "saved" line.
[ "$(grep -c '^saved' "$T/two.log")" -eq 1 ]

# The convnet (convolutions, max pooling, dropout): each rank draws its
# rows' part of the dropout mask one process draws (dropout's shard=true),
# so 2 and 3 ranks follow one process. 5 steps: later the runs part ways
# where rounding flips a tie of max pooling over ReLU zeros, as one
# process's interpreter and JIT part ways (SGD, lr 0.05: 1.5e-8 after 5
# steps, 1e-4 after 15, for either pair).
CNN=$SRC/examples/fashion_cnn.kiln
"$KILN" train "$CNN" "${common[@]}" --max-steps 5 --save "$T/cnn1.st" >/dev/null
mpi 2 train "$CNN" --distributed "${common[@]}" --max-steps 5 --save "$T/cnn2.st" >/dev/null
mpi 3 train "$CNN" --distributed "${common[@]}" --max-steps 5 --save "$T/cnn3.st" >/dev/null
echo "convnet, 2 ranks vs 1 process:"; $DIFF "$T/cnn1.st" "$T/cnn2.st" 1e-6
echo "convnet, 3 ranks vs 1 process:"; $DIFF "$T/cnn1.st" "$T/cnn3.st" 1e-6

# Checkpoints cross over at an epoch's end (where a resume is exact, as
# tests/sh/resume.sh shows for one process): on the first 2560 training
# samples (20 steps an epoch), 1 epoch on 2 ranks then 1 in 1 process, and
# the reverse, give the weights of 2 epochs in 1 process.
mkdir "$T/data"
python3 - /usr/share/datasets/fashion-mnist "$T/data" 2560 <<'PY'
import gzip, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name, header, row in (("train-images-idx3-ubyte.gz", 16, 784), ("train-labels-idx1-ubyte.gz", 8, 1)):
    raw = gzip.open(src + "/" + name).read()
    head = bytearray(raw[:header])
    head[4:8] = n.to_bytes(4, "big")
    with gzip.open(dst + "/" + name, "wb") as f:
        f.write(bytes(head) + raw[header:header + n * row])
PY
small=("${common[@]}" --data "$T/data")
"$KILN" train "$MODEL" "${small[@]}" --epochs 2 --save "$T/e2.st" >/dev/null
mpi 2 train "$MODEL" --distributed "${small[@]}" --epochs 1 --save "$T/a1.st" >/dev/null
"$KILN" train "$MODEL" "${small[@]}" --epochs 1 --load "$T/a1.st" --save "$T/a2.st" >/dev/null
"$KILN" train "$MODEL" "${small[@]}" --epochs 1 --save "$T/b1.st" >/dev/null
mpi 2 train "$MODEL" --distributed "${small[@]}" --epochs 1 --load "$T/b1.st" \
  --save "$T/b2.st" >/dev/null
echo "1 epoch on 2 ranks, then 1 in 1 process vs 2 in 1 process:"; $DIFF "$T/e2.st" "$T/a2.st" 1e-5
echo "1 epoch in 1 process, then 1 on 2 ranks vs 2 in 1 process:"; $DIFF "$T/e2.st" "$T/b2.st" 1e-5
echo "ok: data-parallel runs give the weights of one process"
