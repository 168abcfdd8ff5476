# The shell tests' harness (sourced): a scratch folder $tmp removed on exit,
# TAP-like "ok - NAME" / "not ok - NAME" lines, a failure's output indented
# under it, and the summary line.
#   harness_start NAME   before the checks
#   check NAME CMD...    passes when CMD exits 0
#   expect_exit NAME CODE CMD...   passes when CMD exits with CODE
#   harness_end          prints "NAME: P passed, F failed"; status 1 on a failure
# A check's output stays in $tmp/out until the next check.
harness_start() {
    harness_name=$1
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/kdens-$1-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    passed=0
    failed=0
}
ok() { passed=$((passed + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "not ok - $1"; sed 's/^/    /' "$tmp/out"; }
check() {
    name=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then ok "$name"; else bad "$name"; fi
}
expect_exit() {
    name=$1 code=$2
    shift 2
    "$@" >"$tmp/out" 2>&1
    rc=$?
    if [ "$rc" -eq "$code" ]; then ok "$name"; else bad "$name (exit $rc, wanted $code)"; fi
}
harness_end() {
    echo "$harness_name: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
