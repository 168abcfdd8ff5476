#!/bin/sh
# The sizes make lib-infer prints (docs/benchmarks.md records them): the
# inference-only library's code and data (binutils' size: text + data +
# bss), the archive as installed without debug information, and a program
# linked with it -- examples/classify.c, stripped, against the dynamic libc.
# Usage: infer-size.sh LIBRARY PROGRAM  (CROSS_PREFIX: the target's binutils)
set -eu
lib=$1 prog=$2
p=${CROSS_PREFIX:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
kib() { awk -v b="$1" 'BEGIN { printf "%.0f KiB", b / 1024 }'; }
bytes() { wc -c < "$1" | tr -d ' '; }
cp "$lib" "$tmp/lib.a"
"${p}strip" --strip-debug "$tmp/lib.a"
cp "$prog" "$tmp/prog"
"${p}strip" "$tmp/prog"
code=$("${p}size" -t "$lib" | awk 'END { print $4 }')
target=$("${p}objdump" -f "$prog" | sed -n 's/.*file format //p' | head -n 1)
echo "== $(basename "$lib") ($target): $(kib "$code") of code and data, \
$(kib "$(bytes "$tmp/lib.a")") as a file without debug information ($(kib "$(bytes "$lib")") with it)"
echo "== $(basename "$prog") linked with it (-lkdens_infer -lm): $(kib "$(bytes "$tmp/prog")") \
stripped ($(kib "$("${p}size" "$prog" | awk 'END { print $4 }')") of code and data)"
