"""pull --include: a subtree fetched on demand through zTOC range reads, then handled like a pull."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from compat_support import VIEW_HASH, spack_view_fixture  # noqa: F401
from ztoc_helpers import SPAN, gnu_tar, gzip_file, make_tree, push_image

import ocikit
from ocikit.content.base import fetch_manifest
from ocikit.content.open import open_store
from ocikit.errors import UnsupportedError
from ocikit.pull.policy import PullPolicy
from ocikit.pull.ready import read_marker
from ocikit.spec import mediatypes as mt
from ocikit.ztoc.api import build_ztocs, list_ztocs

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")


@pytest.fixture(scope="module")
def big_image(tmp_path_factory, registry_server):
    work = tmp_path_factory.mktemp("include")
    root = str(work / "tree")
    os.mkdir(root)
    make_tree(root)
    os.makedirs(os.path.join(root, "share", "bulk"))
    for i in range(8):  # bulk the layer up so a subset is a small part of it
        with open(os.path.join(root, "share", "bulk", f"blob{i}.bin"), "wb") as fh:
            fh.write(os.urandom(256 << 10))
    layer = gzip_file(gnu_tar(root, str(work / "layer.tar")), str(work / "layer.gz"))
    ref = f"{registry_server.host}/pull/include:v1"
    store, _ = open_store(ref)
    manifest = push_image(store, [(layer, mt.OCI_LAYER_GZIP)])
    build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    return ref, root, manifest, store


def test_include_fetches_only_the_subset_and_marks_it(big_image, tmp_path):
    ref, root, manifest, store = big_image
    dest = str(tmp_path / "subset")
    result = ocikit.pull(ref, dest, PullPolicy(include=("bin/*",)))
    layer_size = fetch_manifest(store, manifest).layers[0].size
    ztoc_bytes = sum(r.ztoc.size for r in list_ztocs(ref))  # fetched too, and reported
    assert result.digest == manifest.digest and 0 < result.downloaded - ztoc_bytes < layer_size / 4
    written = {os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs}
    written = {p for p in written if not p.startswith(".ocikit")}
    assert written and all(p.startswith("bin/") for p in written)
    for path in written:
        with open(os.path.join(dest, path), "rb") as got, open(os.path.join(root, path), "rb") as want:
            assert got.read() == want.read()
    assert read_marker(dest)["include"] == ["bin/*"]
    # Pulling the same subset again does nothing; the full artifact is a different pull.
    assert ocikit.pull(ref, dest, PullPolicy(include=("bin/*",))).unchanged
    full = ocikit.pull(ref, dest)
    assert not full.unchanged and "include" not in read_marker(dest)
    assert os.path.isfile(os.path.join(dest, "share", "bulk", "blob7.bin"))


def test_include_from_the_cli(big_image, tmp_path):
    ref, _, _, _ = big_image
    dest = str(tmp_path / "cli-subset")
    out = subprocess.run(
        [OCIKIT, "pull", ref, dest, "--include", "share/bulk/blob3.bin", "--json"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    ztoc_bytes = sum(r.ztoc.size for r in list_ztocs(ref))
    assert document["files"] == 1 and 0 < document["downloaded"] - ztoc_bytes < 3 * (256 << 10)
    assert os.path.getsize(os.path.join(dest, "share", "bulk", "blob3.bin")) == 256 << 10


def test_include_and_cache_are_refused_together(big_image, tmp_path):
    ref, _, _, _ = big_image
    with pytest.raises(UnsupportedError):
        ocikit.pull(ref, str(tmp_path / "x"), PullPolicy(include=("bin/*",)), cache=str(tmp_path / "cache"))


def test_include_of_a_view_relocates_what_it_wrote(registry, spack_view_fixture, request):  # noqa: F811
    root = f"/opt/._view/{VIEW_HASH}"
    ref = f"{registry}/pull/include-view:v1"
    ocikit.push_view(spack_view_fixture["view"], ref, root=root, view_path="/opt/view", compat=False, cache_dir="")
    short = tempfile.mkdtemp(prefix="oci", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(short, ignore_errors=True))
    dest = os.path.join(short, "v")
    result = ocikit.pull(ref, dest, PullPolicy(include=("bin/xz", "lib/liblzma*", "lib/pkgconfig/liblzma.pc")))
    assert result.relocated_to == dest
    with open(os.path.join(dest, "lib", "pkgconfig", "liblzma.pc")) as fh:
        assert f"prefix={dest}\n" in fh.readlines()
    run = subprocess.run([os.path.join(dest, "bin", "xz"), "--version"], capture_output=True, text=True, env={})
    assert run.returncode == 0 and "5.4.1" in run.stdout
    assert not os.path.exists(os.path.join(dest, "bin", "bzip2"))
