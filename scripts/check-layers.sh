#!/bin/sh
# The layering of lib/ (docs/design.md), checked by make check:
#  1. every module includes only its own headers and those of the modules
#     below it -- the engine (core .. distill) nothing of lib/experiment/
#     and not kdens_experiment.h;
#  2. the engine's objects, linked alone into a shared library with -z defs
#     (the argument), resolve every symbol without the experiment layer;
#  3. that library defines every function kdens.h declares and none of
#     kdens_experiment.h's or kdens_mpi.h's;
#  4. MPI stays in its transport: lib/mpi/ uses the public headers only (no
#     lib/ module), nothing else of lib/ and no public header but
#     kdens_mpi.h's implementation includes mpi.h or kdens_mpi.h, and
#     kdens_mpi.h itself does not include mpi.h; with a second argument
#     (make MPI=1: libkdens_mpi.so), that library exports exactly the
#     functions of kdens_mpi.h.
#  5. protobuf-c stays in the ONNX exchange: lib/onnx/ may read the
#     internal headers of core, tensor and nn (it walks the layer DAG) but
#     nothing else of lib/ includes protobuf-c, onnx.pb-c.h or kdens_onnx.h,
#     no public header includes protobuf-c, and the engine's library does
#     not link it; with ONNX_SO (make ONNX=1: libkdens_onnx.so), that library
#     exports exactly the functions of kdens_onnx.h.
# MPI_SO and ONNX_SO (environment) name the optional libraries when built.
set -eu
engine_so=$1
mpi_so=${MPI_SO:-}
onnx_so=${ONNX_SO:-}
below() {
    case $1 in
    core) echo "" ;;
    tensor | data) echo "core" ;;
    nn) echo "core tensor" ;;
    train) echo "core tensor nn data" ;;
    ensemble) echo "core tensor nn data train" ;;
    distill) echo "core tensor nn data train ensemble" ;;
    experiment) echo "core tensor nn data train ensemble distill" ;;
    mpi) echo "" ;; # a transport over the public API, like a user's
    onnx) echo "core tensor nn" ;; # reads the model's structures, calls the public API
    infer) echo "core data" ;; # stand-ins of the inference-only library (lib/data's codecs)
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
        if [ "$module" != onnx ] &&
            grep -Eq '#[[:space:]]*include[[:space:]]*[<"](protobuf-c/|onnx\.pb-c\.h|kdens_onnx\.h)' "$file"; then
            echo "check-layers: $file includes protobuf-c or ONNX (only lib/onnx/ may)"
            failed=1
        fi
        if [ "$module" != experiment ] && [ "$module" != mpi ] && [ "$module" != onnx ] &&
            grep -q '#include "kdens_experiment.h"' "$file"; then
            echo "check-layers: $file (engine) includes kdens_experiment.h"
            failed=1
        fi
        if [ "$module" != mpi ] && grep -Eq '#[[:space:]]*include[[:space:]]*[<"](mpi|kdens_mpi)\.h' "$file"; then
            echo "check-layers: $file includes MPI (only lib/mpi/ may)"
            failed=1
        fi
    done
done
if grep -q '#include.*kdens_experiment.h' include/kdens.h; then
    echo "check-layers: include/kdens.h includes kdens_experiment.h"
    failed=1
fi
for header in include/kdens.h include/kdens_experiment.h include/kdens_mpi.h include/kdens_onnx.h; do
    if grep -Eq '#[[:space:]]*include[[:space:]]*[<"](mpi|kdens_mpi)\.h' "$header"; then
        echo "check-layers: $header includes MPI"
        failed=1
    fi
    if grep -Eq '#[[:space:]]*include[[:space:]]*[<"](protobuf-c/|onnx\.pb-c\.h)' "$header"; then
        echo "check-layers: $header includes protobuf-c"
        failed=1
    fi
done
if objdump -p "$engine_so" | grep -q 'NEEDED.*protobuf'; then
    echo "check-layers: $engine_so links protobuf-c"
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
for header in kdens_experiment.h kdens_mpi.h kdens_onnx.h; do
    for name in $(api_names include/$header); do
        if echo "$defined" | grep -qx "$name"; then
            echo "check-layers: $name ($header) is defined in the engine"
            failed=1
        fi
    done
done
if [ -n "$mpi_so" ]; then
    exported=$(nm -D --defined-only "$mpi_so" | awk '$2 != "A" {sub(/@.*/, "", $3); print $3}' |
        sort -u)
    declared=$(api_names include/kdens_mpi.h)
    if [ "$exported" != "$declared" ]; then
        echo "check-layers: $mpi_so exports:" $exported
        echo "check-layers: kdens_mpi.h declares:" $declared
        failed=1
    fi
fi
if [ -n "$onnx_so" ]; then
    onnx_exported=$(nm -D --defined-only "$onnx_so" | awk '$2 != "A" {sub(/@.*/, "", $3); print $3}' |
        sort -u)
    onnx_declared=$(api_names include/kdens_onnx.h)
    if [ "$onnx_exported" != "$onnx_declared" ]; then
        echo "check-layers: $onnx_so exports:" $onnx_exported
        echo "check-layers: kdens_onnx.h declares:" $onnx_declared
        failed=1
    fi
fi
[ $failed = 0 ] && echo "check-layers: the engine stands alone ($(echo "$defined" | grep -c '^kdens_') functions)"
[ $failed = 0 ] && [ -n "$mpi_so" ] &&
    echo "check-layers: $mpi_so exports kdens_mpi.h's $(echo "$declared" | wc -l) functions"
[ $failed = 0 ] && [ -n "$onnx_so" ] &&
    echo "check-layers: $onnx_so exports kdens_onnx.h's $(echo "$onnx_declared" | wc -l) functions"
exit $failed
