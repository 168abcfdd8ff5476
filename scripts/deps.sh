#!/bin/sh
# Installs the Debian packages libkdens needs, only those missing
# (binutils' nm and objdump come with gcc).
# Runs apt-get as root, or through sudo.
set -eu
PACKAGES="gcc g++ make libopenblas-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev libcmocka-dev \
pkg-config dataset-fashion-mnist"
# `deps.sh fuzz` adds what `make fuzz` needs (clang with libFuzzer),
# `deps.sh portable` what `make check-portable` needs (qemu's user-mode
# emulator, to run the build as processors this machine is not).
# `deps.sh aarch64` (or AARCH64=1) what `make check-aarch64` needs: the
# cross compiler, qemu's user-mode emulator, and the C library's and
# cmocka's development files of the arm64 architecture (Debian multiarch:
# the arm64 architecture is added to dpkg first).
# `deps.sh check` adds what `make check` needs beyond the build: cmocka is
# in the base list, abigail-tools (abidw, abidiff) compares the ABI.
# A clang build (CC=clang) needs clang; one with MPI=1 (the MPI transport,
# its tests under mpirun) Open MPI's headers and library and its launcher.
case "${CC:-}" in *clang*) PACKAGES="$PACKAGES clang" ;; esac
[ "${MPI:-}" = 1 ] && PACKAGES="$PACKAGES libopenmpi-dev openmpi-bin"
# One with ONNX=1 (the ONNX exchange) protoc-c, protobuf-c and Debian's
# onnx.proto to build it, and for its tests ONNX's checker (python3-onnx),
# Debian's PyTorch (python3-torch, python3-torchvision: the models whose
# exports tests/onnx/test_torch imports) and node with npm, which then
# installs ONNX Runtime (onnxruntime-node) into
# $BUILD/onnx-node: npm's registry, not Debian's.  --ignore-scripts: the
# package's install script downloads extra files (GPU providers) from a
# host outside the registries; the CPU runtime inside the package needs
# none of them.
[ "${ONNX:-}" = 1 ] && PACKAGES="$PACKAGES protobuf-c-compiler libprotobuf-c-dev libonnx-dev \
python3-onnx python3-torch python3-torchvision nodejs npm"
AARCH64_PACKAGES="gcc-aarch64-linux-gnu qemu-user-static libc6-dev:arm64 libcmocka-dev:arm64"
[ "${AARCH64:-}" = 1 ] && PACKAGES="$PACKAGES $AARCH64_PACKAGES"
case "${1:-}" in
aarch64) PACKAGES="$PACKAGES $AARCH64_PACKAGES" ;;
fuzz) PACKAGES="$PACKAGES clang libclang-rt-14-dev" ;;
portable) PACKAGES="$PACKAGES qemu-user-static" ;;
check) PACKAGES="$PACKAGES abigail-tools" ;;
esac
# ONNX Runtime for node, once per build folder (after the Debian packages).
install_ort() {
    [ "${ONNX:-}" = 1 ] || return 0
    dir=${BUILD:-build}/onnx-node
    [ -d "$dir/node_modules/onnxruntime-node" ] && return 0
    echo "deps: installing onnxruntime-node into $dir (npm)"
    mkdir -p "$dir"
    # without the registry the tests skip ONNX Runtime (with a message), so no failure here
    npm install --prefix "$dir" --ignore-scripts --no-audit --no-fund onnxruntime-node ||
        echo "deps: onnxruntime-node could not be installed; the ONNX tests will skip ONNX Runtime" >&2
}
missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        # nodejs from another source (NodeSource) brings its own npm
        if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
        if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    install_ort
    exit 0
fi
echo "deps: installing$missing"
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "deps: missing packages:$missing; run as root or install sudo" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
case "$missing" in
*:arm64*)
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        echo "deps: adding the arm64 architecture (dpkg --add-architecture arm64)"
        $SUDO dpkg --add-architecture arm64
    fi
    ;;
esac
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
install_ort
