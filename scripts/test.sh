#!/usr/bin/env bash
# Run ocikit's test suite on a fresh Debian (bookworm) machine: install the real peers the
# tests talk to (docker-registry, skopeo, umoci, containerd, fuse3, libmagic, gcc, g++, GNU tar, zstd, pigz, pkg-config, tic), create a
# virtualenv with the project and its test extras, then run pytest.
# Extra arguments go to pytest (e.g. ./scripts/test.sh -k referrers).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  docker-registry skopeo umoci containerd fuse3 libmagic1 file
  gcc g++ libc6-dev binutils patchelf
  tar gzip pigz zstd curl ca-certificates
  pkg-config ncurses-bin xz-utils bzip2
  python3 python3-venv python3-dev
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# Static checks first: they take seconds and name the line.
.venv/bin/ruff check .
.venv/bin/mypy

# Everything above is installed, so a missing peer is a set-up bug: tests fail instead of skipping.
export CI=1
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$status"
