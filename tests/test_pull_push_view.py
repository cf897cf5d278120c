"""End to end with push-view: the real spack view is pushed, pulled into a fresh directory
(verified, relocated, marked ready) and its programs run from there."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
from compat_support import VIEW_HASH, spack_view_fixture  # noqa: F401

import ocikit
from ocikit.errors import RelocationError
from ocikit.pull.ready import read_marker

ROOT = f"/opt/._view/{VIEW_HASH}"


def _files(root: str) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if not rel.startswith(".ocikit"):
                out.add(rel)
    return out


@pytest.mark.parametrize("layers", ["packages", "single"])
def test_pushed_view_pulls_relocated_and_runs(tmp_path, request, registry, spack_view_fixture, layers):  # noqa: F811
    reference = f"{registry}/pull/spack-view-{layers}:v1"
    pushed = ocikit.push_view(
        spack_view_fixture["view"], reference, layers=layers, root=ROOT, view_path="/opt/view", compat=False,
        cache_dir="",
    )
    # A destination longer than the recorded root cannot take binary strings: refused, nothing left.
    too_long = str(tmp_path / "pods" / ("p" * 40) / "view")
    with pytest.raises(RelocationError, match="do not fit"):
        ocikit.pull(reference, too_long)
    assert not os.path.exists(too_long) and read_marker(too_long) is None
    short = tempfile.mkdtemp(prefix="ocv", dir="/tmp")  # shorter than /opt/._view/<hash>
    request.addfinalizer(lambda: shutil.rmtree(short, ignore_errors=True))
    dest = os.path.join(short, "view")
    result = ocikit.pull(reference, dest)
    assert result.digest == pushed.digest and result.kind == "view" and result.relocated_to == dest
    assert read_marker(dest)["digest"] == pushed.digest
    assert _files(dest) == _files(spack_view_fixture["view"])
    for dirpath, _, filenames in os.walk(dest):
        if "/.spack" in dirpath or dirpath.endswith(".ocikit"):
            continue  # spack's metadata stays unrelocated by design
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                data = fh.read()
            assert ROOT.encode() not in data and b"__ocikit_root" not in data, name
    # The programs run with no environment help at all (no PATH, no LD_LIBRARY_PATH).
    version = subprocess.run([os.path.join(dest, "bin", "xz"), "--version"], capture_output=True, text=True, env={})
    assert version.returncode == 0 and "5.4.1" in version.stdout
    bzip2 = subprocess.run([os.path.join(dest, "bin", "bzip2"), "--help"], capture_output=True, text=True, env={})
    assert bzip2.returncode == 0 and "1.0.8" in bzip2.stderr
    zstd = subprocess.run([os.path.join(dest, "bin", "zstd"), "--version"], capture_output=True, text=True, env={})
    assert zstd.returncode == 0 and "v1.5.4" in zstd.stdout
    # readelf shows no RPATH/RUNPATH entry that points at the old root (or anywhere under /opt).
    for folder in ("bin", "lib"):
        for name in os.listdir(os.path.join(dest, folder)):
            path = os.path.join(dest, folder, name)
            if not os.path.isfile(path) or os.path.islink(path) or open(path, "rb").read(4) != b"\x7fELF":
                continue
            dynamic = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
            paths = [line for line in dynamic.splitlines() if "rpath" in line.lower() or "runpath" in line.lower()]
            assert not any("/opt/" in line for line in paths), (name, paths)
    with open(os.path.join(dest, "lib", "pkgconfig", "zlib.pc")) as fh:
        assert fh.readline().strip() == f"prefix={dest}"
    assert ocikit.pull(reference, dest).unchanged
