"""A full disk while writing an OCI layout: a one-line LocalIOError (exit 1), no partial file.

The disk is real: a 2 MiB tmpfs mounted for the test (the suite runs as root in CI; elsewhere
the tests skip, or fail under CI=1).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys

import pytest
from environment import skip_or_fail

from ocikit.content.layout import LayoutStore
from ocikit.errors import LocalIOError
from ocikit.testing.store_tests import make_artifact

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")


@pytest.fixture
def small_disk(tmp_path):
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], capture_output=True)
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def _assert_no_partial_files(layout) -> None:
    """Every blob is complete (its name is its digest); no temporary file is left behind."""
    for directory, _, files in os.walk(layout):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.dirname(path) == os.path.join(layout, "blobs", "sha256"):
                with open(path, "rb") as fh:
                    assert hashlib.sha256(fh.read()).hexdigest() == name, f"partial blob {path}"
            else:
                assert name in ("oci-layout", "index.json"), f"left behind: {path}"


def test_push_view_into_a_full_disk_is_a_one_line_error(small_disk, tmp_path):
    view = tmp_path / "view"
    (view / "lib").mkdir(parents=True)
    (view / "lib" / "big.so").write_bytes(os.urandom(3 << 20))  # incompressible, larger than the disk
    layout = small_disk / "layout"
    result = subprocess.run(
        [OCIKIT, "push-view", str(view), f"oci:{layout}:v1"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ocikit: error:")
    assert "No space left on device" in result.stderr and f"oci:{layout}" in result.stderr
    _assert_no_partial_files(str(layout))
    with open(layout / "index.json") as fh:
        assert json.load(fh)["manifests"] == []  # nothing was presented as pushed


def test_full_disk_while_writing_index_json_keeps_the_old_index(small_disk):
    store = LayoutStore(str(small_disk / "layout"))
    manifest = make_artifact(store, os.urandom(1000))
    store.tag(manifest, "v1")
    with open(small_disk / "layout" / "index.json", "rb") as fh:
        before = fh.read()
    with contextlib.suppress(OSError), open(small_disk / "filler", "wb", buffering=0) as filler:
        while True:  # take every free page of the tmpfs
            filler.write(bytes(4096))
    with pytest.raises(LocalIOError, match="cannot write index.json .*No space left on device"):
        store.tag(manifest, "v2")
    with open(small_disk / "layout" / "index.json", "rb") as fh:
        assert fh.read() == before
    _assert_no_partial_files(str(small_disk / "layout"))
