#!/usr/bin/env bash
# ocikit's main job on the embedded default — an OCI image layout directory, no server:
#   1. push a spack copy view as one layer per package into oci:demo/layout:v1
#   2. push it again: nothing is uploaded
#   3. pull it into a new directory (verified, relocated to that path, marked ready)
#   4. wait for the ready marker, run a program from the pulled view, list the referrers
# The view is the real spack copy view committed in fixtures/spack-views (GNU tar and zstd unpack it).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/ocikit ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e .
fi
ocikit=.venv/bin/ocikit
rm -rf demo && mkdir -p demo

fixture=fixtures/spack-views/spack-view-a.tar.zst   # committed, see fixtures/README.md
echo "== unpacking the spack view fixture"
mkdir -p demo/src
tar --zstd -xf "$fixture" -C demo/src
root=$(readlink demo/src/opt/view)          # /opt/._view/<hash>: the path baked into the files
view="demo/src${root}"
push_args=(--root "$root" --view-path /opt/view)
program=bin/xz

echo "== push-view $view -> oci:demo/layout:v1"
$ocikit push-view "$view" oci:demo/layout:v1 "${push_args[@]}" -a demo=true
echo "== push again (unchanged view)"
$ocikit push-view "$view" oci:demo/layout:v1 "${push_args[@]}" -a demo=true --json \
  | .venv/bin/python -c 'import json,sys; r=json.load(sys.stdin); print("uploaded", r["uploadedBytes"], "bytes, digest", r["digest"])'

echo "== pull into demo/view"
$ocikit pull oci:demo/layout:v1 demo/view
$ocikit wait demo/view --timeout 10 && echo "demo/view is ready: $(cat demo/view/.ocikit/ready.json)"
echo "== run $program from the pulled view with an empty environment"
env -i "demo/view/$program" --version | head -1
echo "== referrers of the view"
$ocikit discover oci:demo/layout:v1
