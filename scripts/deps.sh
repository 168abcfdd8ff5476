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
# `deps.sh check` adds what `make check` needs beyond the build: cmocka is
# in the base list, abigail-tools (abidw, abidiff) compares the ABI.
# A clang build (CC=clang) needs clang; one with MPI=1 (the MPI transport,
# its tests under mpirun) Open MPI's headers and library and its launcher.
case "${CC:-}" in *clang*) PACKAGES="$PACKAGES clang" ;; esac
[ "${MPI:-}" = 1 ] && PACKAGES="$PACKAGES libopenmpi-dev openmpi-bin"
case "${1:-}" in
fuzz) PACKAGES="$PACKAGES clang libclang-rt-14-dev" ;;
portable) PACKAGES="$PACKAGES qemu-user-static" ;;
check) PACKAGES="$PACKAGES abigail-tools" ;;
esac
missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
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
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
