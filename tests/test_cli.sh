#!/bin/sh
# The kdens tool: its --help equals docs/cli.md, `kdens arch` builds every
# built-in architecture and ends with 'params: N', errors give exit codes.
set -u
BUILD=${BUILD:-build}
KDENS="$BUILD/kdens"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kdens-cli-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "not ok - $1"; }
check() { name=$1; shift; if "$@" >"$tmp/out" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$tmp/out"; fi; }

# --help texts, compared with the blocks of docs/cli.md
sed -n '/^usage: kdens <command>/,/^  help/p' docs/cli.md >"$tmp/main.doc"
sed -n '/^usage: kdens arch NAME/,/--list          list/p' docs/cli.md >"$tmp/arch.doc"
"$KDENS" --help >"$tmp/main.out"
"$KDENS" arch --help >"$tmp/arch.out"
check "kdens --help matches docs/cli.md" cmp "$tmp/main.doc" "$tmp/main.out"
check "kdens arch --help matches docs/cli.md" cmp "$tmp/arch.doc" "$tmp/arch.out"

check "test network has 31530 parameters" sh -c \
    "'$KDENS' arch test --input 28x28x1 --classes 10 | tail -n 1 | grep -qx 'params: 31530'"
for arch in $("$KDENS" arch --list); do
    check "arch $arch builds" sh -c \
        "'$KDENS' arch $arch --input 40x40x3 --classes 5 | tail -n 1 | grep -q '^params: [0-9][0-9]*$'"
done
check "a spec file builds" "$KDENS" arch --spec docs/examples/residual.spec --input 28x28x1 \
    --classes 10
check "version" sh -c "'$KDENS' version | grep -q '^kdens [0-9]*\.[0-9]*\.[0-9]*$'"

expect_exit() { # name, code, command...
    name=$1 code=$2
    shift 2
    "$@" >"$tmp/out" 2>&1
    rc=$?
    if [ "$rc" -eq "$code" ]; then ok "$name"; else bad "$name (exit $rc, wanted $code)"; fi
}
expect_exit "unknown architecture exits 1" 1 "$KDENS" arch nope --input 8x8x1 --classes 2
grep -q "unknown architecture 'nope'" "$tmp/out" && ok "and names it" || bad "and names it"
expect_exit "input too small exits 1" 1 "$KDENS" arch densenet121 --input 16x16x3 --classes 2
expect_exit "bad --input exits 2" 2 "$KDENS" arch test --input 28x28 --classes 10
expect_exit "missing --classes exits 2" 2 "$KDENS" arch test --input 28x28x1
expect_exit "unknown command exits 2" 2 "$KDENS" frobnicate
expect_exit "missing spec file exits 1" 1 "$KDENS" arch --spec /nonexistent.spec --input 8x8x1 \
    --classes 2
echo "cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
