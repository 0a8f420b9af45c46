#!/usr/bin/env bash
# ort_env.sh — makes ONNX Runtime (npm's onnxruntime-node, whose CPU library
# ships inside the package) available to tests/onnx/ort_run.js, installing it
# when missing, and prints the node_modules directory to put in NODE_PATH:
#   NODE_PATH=$(tests/onnx/ort_env.sh) node tests/onnx/ort_run.js ...
# The package goes to $KILN_ORT_DIR, else ${XDG_CACHE_HOME:-~/.cache}/kiln-ort,
# outside the source tree; `npm install --ignore-scripts` skips its install
# script, which only downloads GPU parts. Exit status 1, with the reason on
# stderr, when node or npm are missing or the install fails (callers skip
# what needs ONNX Runtime and say so).
set -uo pipefail
version=1.31.1
dir=${KILN_ORT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln-ort}
mods=$dir/node_modules
have() {
  [ -f "$mods/onnxruntime-node/package.json" ] &&
    grep -q "\"version\": \"$version\"" "$mods/onnxruntime-node/package.json" &&
    NODE_PATH=$mods node -e "require('onnxruntime-node')" 2> /dev/null
}
command -v node > /dev/null || { echo "ort_env.sh: node is not installed" >&2; exit 1; }
if ! have; then
  command -v npm > /dev/null || { echo "ort_env.sh: npm is not installed" >&2; exit 1; }
  mkdir -p "$dir" || exit 1
  # Tests run in parallel: one installs, the others wait for it.
  exec 9> "$dir/.lock"
  flock 9
  if ! have; then
    echo "ort_env.sh: installing onnxruntime-node@$version into $dir" >&2
    log=$dir/npm-install.log
    if ! (cd "$dir" && timeout 900 npm install --ignore-scripts --no-audit --no-fund \
            --no-save "onnxruntime-node@$version") > "$log" 2>&1; then
      echo "ort_env.sh: npm install onnxruntime-node@$version failed (log: $log):" >&2
      tail -5 "$log" >&2
      exit 1
    fi
    have || { echo "ort_env.sh: onnxruntime-node was installed but does not load" >&2; exit 1; }
  fi
fi
echo "$mods"
