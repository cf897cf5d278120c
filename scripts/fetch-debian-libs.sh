#!/bin/sh
# Download real MPI, fabric and GPU-stack libraries from Debian bookworm main and unpack them
# (never install them) under fixtures/downloaded/, for the compat tests.
#
# Why real packages: the scanner must classify libraries exactly as they ship (Open MPI's
# libmpi.so.40, MPICH's libmpich.so.12, libfabric, UCX, PMIx, ROCm's HIP consumers, OpenCL).
# CUDA's runtime is in non-free and is not fetched.
#
# Usage: scripts/fetch-debian-libs.sh [DEST]   (default: fixtures/downloaded/debian)
# Idempotent: a package whose .deb is already present is not downloaded again.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$here/fixtures/downloaded/debian"}

# package -> what it contributes to the tests
PACKAGES="
libopenmpi3        Open MPI 4.1 libmpi.so.40 and its plugins
openmpi-bin        ompi_info and friends, executables linked with libmpi.so.40
libmpich12         MPICH 4.0 libmpich.so.12 (MPICH ABI)
mpich              mpichversion, an executable linked with the MPICH ABI
libfabric1         libfabric.so.1 and its providers
libucx0            UCX libucp.so.0 and its transports
libpmix2           PMIx libpmix.so.2
libhiprand1        a ROCm library that needs libamdhip64.so.5
clinfo             an executable that needs libOpenCL.so.1
"

mkdir -p "$dest/debs" "$dest/root"
cd "$dest/debs"
names=$(printf '%s\n' "$PACKAGES" | awk 'NF {print $1}')
missing=""
for name in $names; do
    ls "${name}"_*.deb >/dev/null 2>&1 || missing="$missing $name"
done
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    if ! apt-get download -q $missing >/dev/null 2>&1; then
        # A fresh container has no package lists yet: fetch them once and retry.
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        # shellcheck disable=SC2086
        apt-get download -q $missing >/dev/null
    fi
fi
for deb in *.deb; do
    marker="$dest/root/.unpacked-$deb"
    [ -e "$marker" ] && continue
    dpkg-deb -x "$deb" "$dest/root"
    : > "$marker"
done
echo "$dest/root"
