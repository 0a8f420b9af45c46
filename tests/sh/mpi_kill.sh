#!/usr/bin/env bash
# Faults in a distributed run: killing (or stopping) one rank of `mpirun -np 2 kiln
# train --distributed` ends the whole job with a message naming the rank, well
# within 30 s (mpirun notices the dead process; a rank waiting in a
# collective on a dead peer is ended by Kiln's watchdog), never a hang.
# Arguments (from ctest): KILN_BINARY BUILD_DIR SOURCE_DIR. Run only when
# Kiln is built with MPI (tests/CMakeLists.txt).
set -uo pipefail
KILN=${1:?usage: mpi_kill.sh KILN BUILD_DIR SOURCE_DIR}
SRC=${3:?}
T=$(mktemp -d)
mp=
trap '[ -n "$mp" ] && kill -9 $mp 2>/dev/null; rm -rf "$T"' EXIT

# Under tests/run.sh --sanitize the ranks run without LeakSanitizer: Open
# MPI's components (dlopen'ed, unloaded at MPI_Finalize) leave allocations
# that LeakSanitizer can only call "<unknown module>", so no suppression can
# name them (only mpirun's children get this). Kiln's own code on this path
# is leak-checked by the other tests (allreduce_mean in the unit tables).
rank_asan="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
run_case() { # SIGNAL MESSAGE-REGEX
sig=$1 want=$2
ASAN_OPTIONS=$rank_asan mpirun --allow-run-as-root --oversubscribe -np 2 -x ASAN_OPTIONS -x KILN_DIST_TIMEOUT=3 "$KILN" train "$SRC/examples/mnist_mlp.kiln" \
  --distributed --threads 1 --epochs 50 --no-eval >"$T/out" 2>&1 &
mp=$!
# Rank 1: the child of mpirun whose environment says so, once it trains.
victim=
for _ in $(seq 1 600); do
  if grep -q "Epoch\|/469" "$T/out" 2>/dev/null; then
    for c in $(pgrep -P $mp); do
      if tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then
        victim=$c
      fi
    done
  fi
  [ -n "$victim" ] && break
  sleep 0.1
done
[ -n "$victim" ] || { echo "FAIL: rank 1 never started training"; cat "$T/out"; exit 1; }
kill -"$sig" "$victim"
start=$(date +%s)
ended=0
for _ in $(seq 1 300); do
  if ! kill -0 $mp 2>/dev/null; then ended=1; break; fi
  sleep 0.1
done
took=$(( $(date +%s) - start ))
wait $mp 2>/dev/null
rc=$?
echo "--- job output (tail)"; tail -c 1500 "$T/out" | tr '\r' '\n' | tail -12; echo "---"
[ $ended -eq 1 ] || { echo "FAIL: the job still runs 30 s after SIG$sig to rank 1"; exit 1; }
[ $rc -ne 0 ] || { echo "FAIL: the job exited 0 after losing a rank"; exit 1; }
grep -Eq "$want" "$T/out" || { echo "FAIL: no message matching '$want'"; exit 1; }
echo "ok: SIG$sig to rank 1 ended the job in ${took} s (exit $rc): $(grep -Eo "$want" "$T/out" | head -1)"
}

# Killed: mpirun sees the process die and names it.
run_case KILL "rank 1 with PID [0-9]+ on node [^ ]+ exited on signal 9"
# Stopped (a hung machine): rank 0 waits in its allreduce until the watchdog
# (KILN_DIST_TIMEOUT=3 s here) ends it with Kiln's message.
run_case STOP "rank 0 of 2: allreduce has had no answer from the other ranks for 3 s"
