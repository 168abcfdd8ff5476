#!/bin/sh
# Installs libkdens into a temporary prefix, builds one C and one C++ program
# against it through pkg-config (shared and static) and the example programs,
# runs them, then checks that uninstall removes every installed file.  With
# MPI=1 the MPI transport too: its header without MPI's flags, and a program
# of two processes through pkg-config kdens-mpi under mpirun.  With ONNX=1
# the ONNX exchange too: its header without protobuf-c's flags, and a program
# through pkg-config kdens-onnx that exports and imports a model.
set -u
BUILD=${BUILD:-build}
CC=${CC:-cc}
CXX=${CXX:-c++}
SANFLAGS=${SANFLAGS:-}
MPI=${MPI:-}
ONNX=${ONNX:-}
root=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kdens-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
check() { # name, command...
    name=$1
    shift
    if "$@" >"$tmp/log" 2>&1; then
        passed=$((passed + 1))
        echo "ok - $name"
    else
        failed=$((failed + 1))
        echo "not ok - $name"
        sed 's/^/    /' "$tmp/log"
    fi
}

prefix="$tmp/prefix"
check "make install" make -s -C "$root" install PREFIX="$prefix" BUILD="$BUILD" \
    SANITIZE="${SANITIZE:-}" MPI="$MPI" ONNX="$ONNX"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
check "pkg-config finds kdens" pkg-config --exists kdens
check "the man page is installed" test -f "$prefix/share/man/man1/kdens.1"
check "installed kdens tool runs" "$prefix/bin/kdens" arch test --input 28x28x1 --classes 10
cflags=$(pkg-config --cflags kdens)
libs=$(pkg-config --libs kdens)
static_libs=$(pkg-config --static --libs kdens)
check "C consumer builds (shared)" $CC -std=c11 -Wall -Wextra -Werror $SANFLAGS $cflags \
    -o "$tmp/c_shared" "$root/tests/consumer/consumer.c" $libs
check "C consumer runs (shared)" env LD_LIBRARY_PATH="$prefix/lib" "$tmp/c_shared"
check "C++ consumer builds (shared)" $CXX -std=c++11 -Wall -Wextra -Werror $SANFLAGS $cflags \
    -o "$tmp/cpp_shared" "$root/tests/consumer/consumer.cpp" $libs
check "C++ consumer runs (shared)" env LD_LIBRARY_PATH="$prefix/lib" "$tmp/cpp_shared"
check "C consumer builds (static)" $CC -std=c11 $SANFLAGS $cflags -o "$tmp/c_static" \
    "$root/tests/consumer/consumer.c" -Wl,-Bstatic -lkdens -Wl,-Bdynamic \
    $(echo "$static_libs" | sed 's/-lkdens//')
check "C consumer runs (static)" "$tmp/c_static"
check "header compiles as C++ with -pedantic" $CXX -std=c++11 -pedantic -Werror -fsyntax-only \
    -x c++ "$prefix/include/kdens.h"
check "header compiles as C11 with -pedantic" $CC -std=c11 -pedantic -Werror -fsyntax-only \
    -x c "$prefix/include/kdens.h"
check "the experiment header compiles as C++ with -pedantic" $CXX -std=c++11 -pedantic -Werror \
    -fsyntax-only -x c++ "$prefix/include/kdens_experiment.h"
check "the experiment header compiles as C11 with -pedantic" $CC -std=c11 -pedantic -Werror \
    -fsyntax-only -x c "$prefix/include/kdens_experiment.h"
if [ "$MPI" = 1 ]; then
    check "pkg-config finds kdens-mpi" pkg-config --exists kdens-mpi
    check "the MPI header compiles as C11 with -pedantic, without MPI's flags" $CC -std=c11 \
        -pedantic -Werror -fsyntax-only -I"$prefix/include" -x c "$prefix/include/kdens_mpi.h"
    check "the MPI header compiles as C++ with -pedantic, without MPI's flags" $CXX \
        -std=c++11 -pedantic -Werror -fsyntax-only -I"$prefix/include" -x c++ \
        "$prefix/include/kdens_mpi.h"
    check "MPI consumer builds (shared)" $CC -std=c11 -Wall -Wextra -Werror $SANFLAGS \
        $(pkg-config --cflags kdens-mpi) -o "$tmp/c_mpi" "$root/tests/consumer/consumer_mpi.c" \
        $(pkg-config --libs kdens-mpi)
    as_root=""
    [ "$(id -u)" = 0 ] && as_root=--allow-run-as-root
    check "MPI consumer runs under mpirun -np 2" sh -c \
        "LD_LIBRARY_PATH='$prefix/lib' \
         LSAN_OPTIONS=suppressions='$root/tests/mpi/lsan.supp' \
         ASAN_OPTIONS=\"\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}fast_unwind_on_malloc=0\" \
         timeout 120 mpirun --oversubscribe $as_root -np 2 '$tmp/c_mpi' >'$tmp/mpi.out' &&
         grep -qx 'rank 0 of 2: ok' '$tmp/mpi.out' && grep -qx 'rank 1 of 2: ok' '$tmp/mpi.out'"
else
    check "nothing of MPI installed without MPI=1" sh -c \
        "test -z \"\$(find '$prefix' -name '*mpi*')\""
fi
if [ "$ONNX" = 1 ]; then
    check "pkg-config finds kdens-onnx" pkg-config --exists kdens-onnx
    check "the ONNX header compiles as C11 with -pedantic, without protobuf-c's flags" $CC \
        -std=c11 -pedantic -Werror -fsyntax-only -I"$prefix/include" -x c \
        "$prefix/include/kdens_onnx.h"
    check "the ONNX header compiles as C++ with -pedantic" $CXX -std=c++11 -pedantic -Werror \
        -fsyntax-only -I"$prefix/include" -x c++ "$prefix/include/kdens_onnx.h"
    check "ONNX consumer builds (shared)" $CC -std=c11 -Wall -Wextra -Werror $SANFLAGS \
        $(pkg-config --cflags kdens-onnx) -o "$tmp/c_onnx" "$root/tests/consumer/consumer_onnx.c" \
        $(pkg-config --libs kdens-onnx) -lm
    check "ONNX consumer exports and imports a model" sh -c \
        "LD_LIBRARY_PATH='$prefix/lib' '$tmp/c_onnx' '$tmp/consumer.onnx' | grep -qx ok"
    check "example onnx_teachers.c builds from the installed copy (kdens-onnx)" $CC -std=c11 \
        -Wall -Wextra -Werror $SANFLAGS $(pkg-config --cflags kdens-onnx) -o "$tmp/onnx_teachers" \
        "$root/examples/onnx_teachers.c" $(pkg-config --libs kdens-onnx) -lm
else
    check "nothing of ONNX installed without ONNX=1" sh -c \
        "test -z \"\$(find '$prefix' -name '*onnx*')\""
fi
# the example programs, built from the installed copy as a user would
for ex in classify fuse custom_driver; do
    check "example $ex.c builds from the installed copy" $CC -std=c11 -Wall -Wextra -Werror \
        $SANFLAGS $cflags -o "$tmp/$ex" "$root/examples/$ex.c" $libs
done
mkdir -p "$tmp/run"
check "custom_driver: teachers, fusion, student on a slice of Fashion-MNIST" sh -c \
    "cd '$tmp/run' && LD_LIBRARY_PATH='$prefix/lib' '$tmp/custom_driver' 2 1 300 >out.txt &&
     grep -q '^student (mimic_all' out.txt && test -f student.kdm"
echo iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg== |
    base64 -d >"$tmp/run/one.png"
check "classify prints the top 3 classes" sh -c \
    "LD_LIBRARY_PATH='$prefix/lib' '$tmp/classify' '$tmp/run/student.kdm' '$tmp/run/one.png' |
     grep -Eq '^$tmp/run/one.png: .+ [01][.][0-9]{3}, .+ [01][.][0-9]{3}, .+ [01][.][0-9]{3}\$'"
check "classify reports an unreadable image" sh -c \
    "! LD_LIBRARY_PATH='$prefix/lib' '$tmp/classify' '$tmp/run/student.kdm' /nonexistent.png"
check "classify builds against the installed inference-only library alone" $CC -std=c11 \
    -Wall -Wextra -Werror $SANFLAGS -I"$prefix/include" -o "$tmp/classify_infer" \
    "$root/examples/classify.c" -L"$prefix/lib" -Wl,-Bstatic -lkdens_infer -Wl,-Bdynamic -lm
check "classify with libkdens_infer refuses a PNG, naming the full library" sh -c \
    "if '$tmp/classify_infer' '$tmp/run/student.kdm' '$tmp/run/one.png' >'$tmp/png.txt' 2>&1;
     then exit 1; fi; grep -q 'needs the full library' '$tmp/png.txt'"
check "fuse votes on saved predictions" sh -c \
    "cd '$tmp/run' && '$prefix/bin/kdens' ensemble --dataset fmnist --model teacher_0.kdm \
     --model teacher_1.kdm --save pred.kdp --out ens.csv >/dev/null 2>&1 &&
     LD_LIBRARY_PATH='$prefix/lib' '$tmp/fuse' pred.kdp borda | grep -q '^borda,  2 members'"
check "make uninstall" make -s -C "$root" uninstall PREFIX="$prefix" BUILD="$BUILD"
check "nothing left after uninstall" sh -c "test -z \"\$(find '$prefix' -type f -o -type l)\""
echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
