#!/bin/sh
# The inference-only library's promise, checked on the archive and on a
# program linked with it (make check-infer, make check-aarch64):
#  - every symbol that the objects of libkdens_infer.a leave undefined is
#    defined by libc (with what its linker script libc.so names: the
#    dynamic loader's __tls_get_addr, libc_nonshared.a), libm or the
#    compiler's own runtime (libgcc: the processor-feature checks behind
#    target_clones on x86-64, the outline atomics on aarch64) -- not by
#    libpng, libjpeg, zlib or OpenBLAS;
#  - PROGRAM, linked with -lkdens_infer -lm and nothing else, needs no
#    shared library but libc and libm (and the dynamic loader).
# Usage: check-infer.sh LIBRARY PROGRAM  (CC: the compiler; CROSS_PREFIX:
# the target's binutils)
set -eu
lib=$1 prog=$2
cc=${CC:-cc}
p=${CROSS_PREFIX:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
libc=$($cc -print-file-name=libc.so.6)
libm=$($cc -print-file-name=libm.so.6)
# libc.so is a linker script: libc.so.6, libc_nonshared.a, the dynamic loader
script=$($cc -print-file-name=libc.so)
extra=$(tr ' ()' '\n\n\n' < "$script" | grep -E '^/.*(libc_nonshared\.a|ld-linux.*\.so.*)$' || true)
libgcc=$($cc -print-libgcc-file-name)
for f in "$libc" "$libm" "$libgcc"; do
    [ -f "$f" ] || { echo "check-infer: $f not found" >&2; exit 1; }
done
# names only: 'name@@GLIBC_2.2.5' -> 'name'
"${p}nm" --defined-only -P "$lib" 2>/dev/null | awk 'NF >= 2 && $2 != "U" { print $1 }' |
    sort -u > "$tmp/own"
"${p}nm" --undefined-only -P "$lib" 2>/dev/null | awk 'NF >= 2 { print $1 }' | sort -u |
    comm -23 - "$tmp/own" | grep -v '^_GLOBAL_OFFSET_TABLE_$' > "$tmp/needed" || true
{
    "${p}nm" -D --defined-only -P "$libc" "$libm" 2>/dev/null
    for f in $extra; do
        case $f in
        *.a) "${p}nm" --defined-only -P "$f" 2>/dev/null ;;
        *) "${p}nm" -D --defined-only -P "$f" 2>/dev/null ;;
        esac
    done
} | awk 'NF >= 2 { sub(/@.*/, "", $1); print $1 }' | sort -u > "$tmp/libc"
"${p}nm" --defined-only -P "$libgcc" 2>/dev/null | awk 'NF >= 2 { print $1 }' | sort -u \
    > "$tmp/libgcc"
comm -23 "$tmp/needed" "$tmp/libc" > "$tmp/not_libc"
comm -23 "$tmp/not_libc" "$tmp/libgcc" > "$tmp/missing"
failed=0
echo "check-infer: $(basename "$lib") needs $(wc -l < "$tmp/needed" | tr -d ' ') symbols from \
outside: $(($(wc -l < "$tmp/needed") - $(wc -l < "$tmp/not_libc"))) from libc and libm, \
$(($(wc -l < "$tmp/not_libc") - $(wc -l < "$tmp/missing"))) from libgcc \
($(tr '\n' ' ' < "$tmp/not_libc" | sed 's/ $//')), $(wc -l < "$tmp/missing" | tr -d ' ') elsewhere"
comm -12 "$tmp/needed" "$tmp/libc" | tr '\n' ' ' | fold -s -w 100 | sed 's/^/    /'
echo
if [ -s "$tmp/missing" ]; then
    echo "check-infer: FAILED: $(basename "$lib") needs symbols that libc, libm and libgcc lack:" >&2
    sed 's/^/  /' "$tmp/missing" >&2
    failed=1
fi
needed=$("${p}readelf" -d "$prog" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "check-infer: $(basename "$prog") (linked with -lkdens_infer -lm) needs: ${needed% }"
for so in $needed; do
    case $so in
    libc.so.* | libm.so.* | ld-linux*.so.*) ;;
    *) echo "check-infer: FAILED: $(basename "$prog") needs $so" >&2; failed=1 ;;
    esac
done
exit $failed
