#!/bin/sh
# The layering of lib/ (docs/design.md), checked by make check:
#  1. every module includes only its own headers and those of the modules
#     below it -- the engine (core .. distill) nothing of lib/experiment/
#     and not kdens_experiment.h;
#  2. the engine's objects, linked alone into a shared library with -z defs
#     (the argument), resolve every symbol without the experiment layer;
#  3. that library defines every function kdens.h declares and none of
#     kdens_experiment.h's.
set -eu
engine_so=$1
below() {
    case $1 in
    core) echo "" ;;
    tensor | data) echo "core" ;;
    nn) echo "core tensor" ;;
    train) echo "core tensor nn data" ;;
    ensemble) echo "core tensor nn data train" ;;
    distill) echo "core tensor nn data train ensemble" ;;
    experiment) echo "core tensor nn data train ensemble distill" ;;
    *) echo "?" ;;
    esac
}
failed=0
for dir in lib/*/; do
    module=$(basename "$dir")
    allowed=$(below "$module")
    if [ "$allowed" = "?" ]; then
        echo "check-layers: lib/$module is not in the module map (scripts/check-layers.sh)"
        failed=1
        continue
    fi
    for file in $(find "$dir" -name '*.[ch]'); do
        for used in $(sed -n 's|^#include "\.\./\([a-z_]*\)/.*|\1|p' "$file" | sort -u); do
            case " $allowed " in
            *" $used "*) ;;
            *)
                echo "check-layers: $file ($module) includes lib/$used/, which is not below it"
                failed=1
                ;;
            esac
        done
        if [ "$module" != experiment ] && grep -q '#include "kdens_experiment.h"' "$file"; then
            echo "check-layers: $file (engine) includes kdens_experiment.h"
            failed=1
        fi
    done
done
if grep -q '#include.*kdens_experiment.h' include/kdens.h; then
    echo "check-layers: include/kdens.h includes kdens_experiment.h"
    failed=1
fi

api_names() {
    sed -n 's/^KDENS_API[^(]*[ *]\(kdens_[a-z0-9_]*\)(.*/\1/p' "$1" | sort -u
}
defined=$(nm -D --defined-only "$engine_so" | awk '{print $3}' | sort -u)
for name in $(api_names include/kdens.h); do
    echo "$defined" | grep -qx "$name" || {
        echo "check-layers: $name (kdens.h) is not defined by the engine's objects"
        failed=1
    }
done
for name in $(api_names include/kdens_experiment.h); do
    if echo "$defined" | grep -qx "$name"; then
        echo "check-layers: $name (kdens_experiment.h) is defined in the engine"
        failed=1
    fi
done
[ $failed = 0 ] && echo "check-layers: the engine stands alone ($(echo "$defined" | grep -c '^kdens_') functions)"
exit $failed
