#!/bin/sh
# The ABI of the shared library against the recorded baseline (make check).
# abidiff exits with bit 2 (4) for any change of the public types or
# functions and bit 3 (8) for an incompatible one; both fail here, so that
# every change of the ABI is a deliberate, committed `make abi-update`.
set -u
lib=$1
baseline=$2
if [ ! -f "$baseline" ]; then
    echo "check-abi: no baseline $baseline (make abi-update records it)"
    exit 1
fi
report=$(abidiff --headers-dir2 include --drop-private-types --no-added-syms "$baseline" "$lib")
rc=$?
if [ $rc -ne 0 ]; then
    echo "$report"
    if [ $((rc & 8)) -ne 0 ]; then
        echo "check-abi: $lib breaks the ABI recorded in $baseline"
    elif [ $((rc & 4)) -ne 0 ]; then
        echo "check-abi: the ABI of $lib differs from $baseline; if intended, run make abi-update"
    else
        echo "check-abi: abidiff failed (status $rc)"
    fi
    exit 1
fi
echo "check-abi: $lib matches $baseline"
