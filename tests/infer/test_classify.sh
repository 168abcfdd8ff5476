#!/bin/sh
# examples/classify.c, unchanged, linked with the inference-only library
# (INFER_CLASSIFY, run through RUNNER: qemu-aarch64-static for the aarch64
# build) classifies the reference run's PGM and PPM images as the full
# library's build of it (FULL_CLASSIFY, on this machine) does: the same
# text with EXACT=1 (the same machine and objects), else the same classes
# in the same order with probabilities within 0.002 (printed with 3
# decimals; the models agree within 1e-5).  A PNG image is refused with a
# message that names the full library.  The models: float, and int8
# (kdens_model_quantize_u8) on the same images.
# Usage: REF_DIR=... FULL_CLASSIFY=... INFER_CLASSIFY=... [RUNNER=...] [EXACT=1] sh test_classify.sh
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
check() {
    what=$1
    shift
    if "$@"; then
        echo "ok: $what"
    else
        echo "FAILED: $what" >&2
        failed=1
    fi
}
same_text() { cmp -s "$1" "$2"; }
same_within() {
    awk 'NR == FNR { want[FNR] = $0; n = FNR; next }
        { got = $0; m = FNR
          a = split(want[FNR], w, /[ ,]+/); b = split(got, g, /[ ,]+/)
          if (a != b) exit 1
          for (i = 1; i <= a; i++) {
              if (w[i] ~ /^[0-9.]+$/ && g[i] ~ /^[0-9.]+$/) {
                  d = w[i] - g[i]; if (d < 0) d = -d; if (d > 0.002) exit 1
              } else if (w[i] != g[i]) exit 1 } }
        END { if (m != n) exit 1 }' "$1" "$2"
}
for model in test resnet20 test-int8 resnet20-int8; do # and their int8 versions
    images=$(ls "$REF_DIR"/images/"${model%-int8}"-*.p?m)
    # shellcheck disable=SC2086
    "$FULL_CLASSIFY" "$REF_DIR/$model.kdm" $images > "$tmp/full.txt" 2>&1
    # shellcheck disable=SC2086
    ${RUNNER:-} "$INFER_CLASSIFY" "$REF_DIR/$model.kdm" $images > "$tmp/infer.txt" 2>&1
    echo "-- $model, the inference-only build:"
    sed "s|$REF_DIR/images/||" "$tmp/infer.txt"
    if [ "${EXACT:-}" = 1 ]; then
        check "$model: classify with libkdens_infer prints what it prints with libkdens" \
            same_text "$tmp/full.txt" "$tmp/infer.txt"
    else
        check "$model: classify with libkdens_infer agrees with libkdens (x86-64) within 0.002" \
            same_within "$tmp/full.txt" "$tmp/infer.txt"
    fi
    [ $failed = 0 ] || { echo "libkdens:"; cat "$tmp/full.txt"; }
done
png=$(dirname "$0")/../fuzz/corpus_png/gray8.png
check "a PNG image: classify with libkdens_infer fails, naming the full library" sh -c \
    "! ${RUNNER:-} '$INFER_CLASSIFY' '$REF_DIR/test.kdm' '$png' > '$tmp/png.txt' 2>&1 &&
     grep -q 'needs the full library (libkdens)' '$tmp/png.txt'"
sed 's/^/   /' "$tmp/png.txt"
check "a PNG image: classify with libkdens reads it" \
    sh -c "'$FULL_CLASSIFY' '$REF_DIR/test.kdm' '$png' > /dev/null"
exit $failed
