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
# The library of a sanitizer build (tests/run.sh --sanitize) needs the
# sanitizers' runtime in the programs that link it: the same compiler and flags.
cc=cc san=()
if grep -q '^KILN_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
  cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
  san=(-fsanitize=address,undefined)
fi

# The installed files: header, versioned shared library, static library, tool.
for f in include/kiln/kiln.h lib/libkiln.a lib/libkiln.so bin/kiln lib/cmake/Kiln/KilnConfig.cmake; do
  [ -e "$T/prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
soname=$(readelf -d "$T/prefix/lib/libkiln.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ -e "$T/prefix/lib/$soname" ] || { echo "soname $soname is not installed"; exit 1; }

run() { # a tiny run: the model builds, compiles and takes 3 steps
  "$@" --steps 3 --epochs 1 >"$T/out" 2>&1 || { cat "$T/out"; exit 1; }
}

"$cc" "${san[@]}" -std=c11 -O1 "$ex" -o "$T/pc_shared" $(pkg-config --cflags --libs kiln) -Wl,-rpath,"$T/prefix/lib"
# (ldd's output is read whole: with pipefail, `ldd | grep -q` fails when grep
# stops reading first and ldd gets SIGPIPE.)
ldd "$T/pc_shared" >"$T/ldd.out"
grep -q "$T/prefix/lib/libkiln.so" "$T/ldd.out" || { echo "not linked to the installed libkiln.so"; exit 1; }
run "$T/pc_shared"

"$cc" "${san[@]}" -std=c11 -O1 "$ex" -o "$T/pc_static" $(pkg-config --static --cflags kiln) \
   -Wl,-Bstatic -lkiln -Wl,-Bdynamic $(pkg-config --static --libs kiln | sed 's/-lkiln\b//')
ldd "$T/pc_static" >"$T/ldd.out"
if grep -q libkiln "$T/ldd.out"; then echo "static build links libkiln.so"; exit 1; fi
run "$T/pc_static"

cmake -S "$src/tests/install" -B "$T/consumer" -DCMAKE_PREFIX_PATH="$T/prefix" \
      -DKILN_EXAMPLE="$ex" -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="${san[*]}" >/dev/null
cmake --build "$T/consumer" -j2 >/dev/null
run "$T/consumer/mnist_mlp_shared"
run "$T/consumer/mnist_mlp_static"
echo "ok: pkg-config (shared, static) and find_package(Kiln) builds of mnist_mlp.c run"
