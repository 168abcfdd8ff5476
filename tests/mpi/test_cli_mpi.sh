#!/bin/sh
# The kdens tool built with MPI=1 (make check-mpi): alone it runs without
# MPI; started by mpirun it joins the job, has a communicator with more than
# one rank, and a failure on the ranks ends them all with a non-zero status.
set -u
BUILD=${BUILD:-build}
KDENS="$BUILD/kdens"
MPIRUN=${MPIRUN:-mpirun}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kdens-cli-mpi-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "not ok - $1"; sed 's/^/    /' "$tmp/out"; }
check() { name=$1; shift; if "$@" >"$tmp/out" 2>&1; then ok "$name"; else bad "$name"; fi; }

check "alone: MPI built in, no ranks" sh -c \
    "'$KDENS' version | sed -n 2p | grep -Eq '^mpi: yes \\(.+\\)\$'"
check "mpirun -np 1: no communicator" sh -c \
    "timeout 120 $MPIRUN -np 1 '$KDENS' version | sed -n 2p | grep -Eq '^mpi: yes \\([^)]+\\)\$'"
check "mpirun -np 2: rank 0 of 2 and rank 1 of 2" sh -c \
    "timeout 120 $MPIRUN -np 2 '$KDENS' version >'$tmp/v' &&
     grep -q ', rank 0 of 2\$' '$tmp/v' && grep -q ', rank 1 of 2\$' '$tmp/v'"
# every rank fails: MPI_Abort ends the job with a non-zero status, at once
timeout 120 $MPIRUN -np 2 "$KDENS" arch nope --input 8x8x1 --classes 2 >"$tmp/out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
    ok "a failing command under mpirun -np 2 exits non-zero ($rc)"
else
    bad "a failing command under mpirun -np 2 exits non-zero (exit $rc)"
fi
echo "cli-mpi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
