#!/usr/bin/env bash
# install_example.sh CMAKE BUILD_DIR SOURCE_DIR: installs the built sprint to a temporary
# prefix and builds examples/sprint_example.c against the INSTALLED library three ways:
# pkg-config (shared), pkg-config --static (libsprint.a), and find_package(sprint); runs each.
# Also checks that the library never prints to stdout or exits (its undefined symbols).
set -euo pipefail
cmake=$1 build=$2 src=$3
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
"$cmake" --install "$build" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/ | head -1); libdir=${libdir%/}
for f in include/sprint/sim.h include/sprint/functional.h include/sprint/config_keys.def bin/sprint; do
  [ -e "$prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
for f in libsprint.a libsprint.so pkgconfig/sprint.pc cmake/sprint/sprintConfig.cmake; do
  [ -e "$libdir/$f" ] || { echo "FAIL: $libdir/$f not installed"; exit 1; }
done
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc=${CC:-cc}
# 1. shared, flags from pkg-config only
$cc -std=c11 -Wall -Werror "$src/examples/sprint_example.c" $(pkg-config --cflags --libs sprint) -lm -o "$prefix/ex_shared"
LD_LIBRARY_PATH="$libdir" "$prefix/ex_shared" > "$prefix/out_shared"
# grep reads all of ldd's output (no -q): with pipefail an early grep exit could SIGPIPE ldd
LD_LIBRARY_PATH="$libdir" ldd "$prefix/ex_shared" | grep "$libdir/libsprint.so" >/dev/null || { echo "FAIL: ex_shared not linked to the installed libsprint.so"; exit 1; }
# 2. static: the archive plus the private dependencies pkg-config --static lists
$cc -std=c11 -Wall -Werror "$src/examples/sprint_example.c" $(pkg-config --cflags sprint) "$libdir/libsprint.a" \
    $(pkg-config --static --libs sprint | sed 's/-lsprint//') -lm -o "$prefix/ex_static"
"$prefix/ex_static" > "$prefix/out_static"
if ldd "$prefix/ex_static" | grep libsprint >/dev/null; then echo "FAIL: ex_static uses a shared libsprint"; exit 1; fi
cmp "$prefix/out_shared" "$prefix/out_static" || { echo "FAIL: shared and static results differ"; exit 1; }
# 3. CMake package
"$cmake" -S "$src/examples" -B "$prefix/build-ex" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
"$cmake" --build "$prefix/build-ex" >/dev/null
LD_LIBRARY_PATH="$libdir" "$prefix/build-ex/sprint_example" > "$prefix/out_cmake"
cmp "$prefix/out_shared" "$prefix/out_cmake" || { echo "FAIL: find_package build differs"; exit 1; }
grep -q "speedup" "$prefix/out_shared" || { echo "FAIL: example printed no result"; cat "$prefix/out_shared"; exit 1; }
cat "$prefix/out_shared"
# 4. library code never prints to stdout or exits (stderr only in sp_assert_fail, the bug path)
bad=$(nm -u "$libdir/libsprint.a" 2>/dev/null | awk '{print $2}' | grep -xE 'exit|_exit|_Exit|printf|puts|putchar|vprintf|perror|stdout' | sort -u || true)
[ -z "$bad" ] || { echo "FAIL: libsprint.a references $bad"; exit 1; }
errs=$(nm -A "$libdir/libsprint.a" 2>/dev/null | grep ' U stderr$' | cut -d: -f2 | sort -u)
[ "$errs" = "common.c.o" ] || { echo "FAIL: stderr used outside sp_assert_fail: $errs"; exit 1; }
echo "install_example: OK"
