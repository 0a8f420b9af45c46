#!/usr/bin/env bash
# Installs Kiln into a temporary prefix and builds examples/mnist_mlp.c
# against it three ways: pkg-config (shared), pkg-config --static, and
# find_package(Kiln) from a CMake project. Each binary must run.
set -euo pipefail
kiln=$1 build=$2 src=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cmake --install "$build" --prefix "$T/prefix" >/dev/null
export PKG_CONFIG_PATH=$T/prefix/lib/pkgconfig
ex=$src/examples/mnist_mlp.c
[ -f "$ex" ] || { echo "missing $ex"; exit 1; }
test "$(pkg-config --modversion kiln)" = "$("$kiln" --version | cut -d' ' -f2)"

# The installed files: header, versioned shared library, static library, tool.
for f in include/kiln/kiln.h lib/libkiln.a lib/libkiln.so bin/kiln lib/cmake/Kiln/KilnConfig.cmake; do
  [ -e "$T/prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
soname=$(readelf -d "$T/prefix/lib/libkiln.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ -e "$T/prefix/lib/$soname" ] || { echo "soname $soname is not installed"; exit 1; }

run() { # a tiny run: the model builds, compiles and takes 3 steps
  "$@" --steps 3 --epochs 1 >"$T/out" 2>&1 || { cat "$T/out"; exit 1; }
}

cc -std=c11 -O1 "$ex" -o "$T/pc_shared" $(pkg-config --cflags --libs kiln) -Wl,-rpath,"$T/prefix/lib"
ldd "$T/pc_shared" | grep -q "$T/prefix/lib/libkiln.so" || { echo "not linked to the installed libkiln.so"; exit 1; }
run "$T/pc_shared"

cc -std=c11 -O1 "$ex" -o "$T/pc_static" $(pkg-config --static --cflags kiln) \
   -Wl,-Bstatic -lkiln -Wl,-Bdynamic $(pkg-config --static --libs kiln | sed 's/-lkiln\b//')
if ldd "$T/pc_static" | grep -q libkiln; then echo "static build links libkiln.so"; exit 1; fi
run "$T/pc_static"

cmake -S "$src/tests/install" -B "$T/consumer" -DCMAKE_PREFIX_PATH="$T/prefix" \
      -DKILN_EXAMPLE="$ex" >/dev/null
cmake --build "$T/consumer" -j2 >/dev/null
run "$T/consumer/mnist_mlp_shared"
run "$T/consumer/mnist_mlp_static"
echo "ok: pkg-config (shared, static) and find_package(Kiln) builds of mnist_mlp.c run"
