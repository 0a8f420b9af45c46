#!/usr/bin/env bash
# The compile cache from the command line: a second `kiln train` hits what
# the first one stored ("cache" in --report) and reads the images from their
# decompressed copy (the same losses), --no-cache bypasses it,
# `kiln cache` / `cache dir` / `cache clear` show and empty it, and a cache
# directory that cannot be created costs one warning line, not the run.
# Usage: cache_cli.sh KILN BUILD_DIR SOURCE_DIR
set -euo pipefail
kiln=$1 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
model="$src/examples/mnist_mlp.kiln"
export KILN_CACHE_DIR="$tmp/cache"
fail() { echo "FAIL: $*"; exit 1; }
cache_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cache"])' "$1"; }
train() { "$kiln" train "$model" --max-steps 1 --no-eval --threads 1 "$@" > /dev/null; }

"$kiln" cache | grep -q "^entries    0$" || fail "a fresh cache is not empty"
[ "$("$kiln" cache dir)" = "$tmp/cache" ] || fail "kiln cache dir: $("$kiln" cache dir)"

train --report "$tmp/1.json"
[ "$(cache_of "$tmp/1.json")" = "{'train_step': 'miss'}" ] || fail "first run: $(cache_of "$tmp/1.json")"
train --report "$tmp/2.json"
[ "$(cache_of "$tmp/2.json")" = "{'train_step': 'hit'}" ] || fail "second run: $(cache_of "$tmp/2.json")"
train --no-cache --report "$tmp/3.json"
[ "$(cache_of "$tmp/3.json")" = "{'train_step': 'off'}" ] || fail "--no-cache: $(cache_of "$tmp/3.json")"
KILN_CACHE=0 train --report "$tmp/4.json"
[ "$(cache_of "$tmp/4.json")" = "{'train_step': 'off'}" ] || fail "KILN_CACHE=0: $(cache_of "$tmp/4.json")"
# The same losses either way (the weights and data are the same).
python3 - "$tmp"/[1-4].json <<'PY'
import json, sys
losses = {json.load(open(p))["epochs"][0]["loss"] for p in sys.argv[1:]}
if len(losses) != 1:
    sys.exit("FAIL: the losses differ: %r" % losses)
PY

# Seven entries: train_step's object, the list of its GEMM kernels' modules
# (under a key derived from train_step's), the object of each of the four
# kernel modules (under the module's own key: the seed's eight GEMMs are
# five kinds, grouped into modules of at least 800 instructions) and the
# decompressed training images (the labels inflate to less than 1 MB and
# are not kept).
info=$("$kiln" cache info)
echo "$info" | grep -q "^location   $tmp/cache$" || fail "cache info: $info"
echo "$info" | grep -q "^entries    7$" || fail "cache info: $info"
"$kiln" cache clear | grep -q "^removed 7 entries" || fail "cache clear"
"$kiln" cache | grep -q "^entries    0$" || fail "not empty after clear"

# A directory that cannot be created: one warning, the run goes on.
touch "$tmp/file"
KILN_CACHE_DIR="$tmp/file/kiln" "$kiln" train "$model" --max-steps 1 --threads 1 \
  > /dev/null 2> "$tmp/err" || fail "training failed with an unwritable cache"
[ "$(grep -c . "$tmp/err")" = 1 ] || fail "expected one line on stderr, got: $(cat "$tmp/err")"
# (whichever uses the cache first says so: the data read, when it comes before the compile)
grep -Eq "^kiln: warning: compile cache: $tmp/file/kiln: .*; (compiling in memory|reading the data without it)$" "$tmp/err" ||
  fail "warning: $(cat "$tmp/err")"

# Room for the compiled code but not for the 47 MB of images: one warning.
KILN_CACHE_DIR="$tmp/small" KILN_CACHE_MAX_MB=1 "$kiln" train "$model" --max-steps 1 --no-eval \
  --threads 1 > /dev/null 2> "$tmp/err" || fail "training failed with a small cache"
[ "$(grep -c . "$tmp/err")" = 1 ] || fail "expected one line on stderr, got: $(cat "$tmp/err")"
grep -q "^kiln: warning: compile cache: $tmp/small: .*exceeds the cache size limit (1 MB); reading the data without it$" \
  "$tmp/err" || fail "warning: $(cat "$tmp/err")"

# kiln compile --report: miss, then hit, then off with --no-cache.
for want in miss hit off; do
  flag=; [ $want = off ] && flag=--no-cache
  KILN_CACHE_DIR="$tmp/aot" "$kiln" compile "$model" -o "$tmp/libm.so" --report "$tmp/c.json" $flag ||
    fail "kiln compile ($want)"
  /usr/bin/python3 - "$tmp/c.json" "$want" <<'PY' || fail "compile report: $(cat "$tmp/c.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["cache"] == {"object": sys.argv[2]}, r
assert r["model"] == "mnist_mlp" and r["compile_ms"] > 0, r
PY
done

set +e
"$kiln" cache bogus 2> "$tmp/err"; rc=$?
set -e
[ $rc = 2 ] && grep -q "unknown action 'bogus'" "$tmp/err" || fail "cache bogus: $rc $(cat "$tmp/err")"
echo "cache_cli: ok"
