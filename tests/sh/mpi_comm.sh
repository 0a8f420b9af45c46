#!/usr/bin/env bash
# The C API trains over a communicator of the program's (kiln_fit_opts.comm,
# include/kiln/kiln_mpi.h): 4 ranks split MPI_COMM_WORLD into two groups of
# 2, each group trains its own copy of mnist_mlp (30 steps, global batch
# 128, its own shuffle seed), and each group ends with the weights and
# optimizer state of one process trained alike, to 1e-5. The groups
# shuffle differently, so a fit over the whole world would match neither.
# A model created before kiln_distributed_init is refused a communicator.
# Arguments (from ctest): KILN_BINARY BUILD_DIR SOURCE_DIR. Run only when
# Kiln is built with MPI (tests/CMakeLists.txt).
set -euo pipefail
BUILD=${2:?usage: mpi_comm.sh KILN BUILD_DIR SOURCE_DIR}
SRC=${3:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PROG=$BUILD/bin/comm_groups
MODEL=$SRC/examples/mnist_mlp.kiln
DATA=/usr/share/datasets/fashion-mnist
DIFF="python3 $SRC/tests/sh/st_diff.py"
rank_asan="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # see mpi_equivalence.sh
ASAN_OPTIONS=$rank_asan mpirun --allow-run-as-root --oversubscribe -x ASAN_OPTIONS -np 4 \
  "$PROG" "$MODEL" "$DATA" "$T/w" | sort > "$T/groups.log"
cat "$T/groups.log"
[ "$(grep -c 'of 2: trained' "$T/groups.log")" -eq 4 ]
# A model created before kiln_distributed_init trains alone: fit refuses it
# a communicator, on every rank.
[ "$(grep -c 'refused: .*kiln_model_fit: a communicator for a model not created for distributed training' "$T/groups.log")" -eq 4 ]
"$PROG" "$MODEL" "$DATA" "$T/w" --single 0
"$PROG" "$MODEL" "$DATA" "$T/w" --single 1
echo "group 0 (2 ranks) vs 1 process:"; $DIFF "$T/w.single0.st" "$T/w.g0.st" 1e-5
echo "group 1 (2 ranks) vs 1 process:"; $DIFF "$T/w.single1.st" "$T/w.g1.st" 1e-5
# The two groups trained different runs (else the test above proves little).
echo "group 0 vs group 1 (must differ):"
if $DIFF "$T/w.g0.st" "$T/w.g1.st" 1e-3; then echo "the groups trained the same run"; exit 1; fi
