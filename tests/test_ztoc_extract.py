"""extract_matching (what ``pull --include`` calls): subsets, layers, whiteouts, and unsafe input."""

import gzip
import os
import subprocess

import pytest
from ztoc_helpers import SPAN, gnu_tar, gzip_file, make_tree, push_image, tar_with, write

from ocikit.content.base import fetch_manifest
from ocikit.content.layout import LayoutStore
from ocikit.errors import NotFoundError, UnsafeContentError
from ocikit.spec import mediatypes as mt
from ocikit.ztoc.api import build_ztocs, get_file
from ocikit.ztoc.extract import extract_matching, matches


@pytest.fixture(scope="module")
def tree_layer(tmp_path_factory):
    work = tmp_path_factory.mktemp("ex")
    root = str(work / "tree")
    os.mkdir(root)
    make_tree(root)
    return root, gzip_file(gnu_tar(root, str(work / "layer.tar")), str(work / "layer.gz"))


@pytest.fixture
def indexed(tmp_path, tree_layer):
    root, layer = tree_layer
    store = LayoutStore(str(tmp_path / "layout"))
    manifest = push_image(store, [(layer, mt.OCI_LAYER_GZIP)])
    build_ztocs(f"oci:{tmp_path / 'layout'}:v1", span_size=SPAN, min_layer_size=0)
    return store, manifest, root


def test_subtree_equals_the_source_and_costs_little(indexed, tmp_path):
    store, manifest, root = indexed
    dest = tmp_path / "dest"
    report = extract_matching(store, manifest, ["many", "/share/doc/*"], str(dest))
    assert subprocess.run(["diff", "-r", os.path.join(root, "many"), str(dest / "many")]).returncode == 0
    assert sorted(os.listdir(dest / "share/doc")) == ["README", "README.hard"]
    assert os.stat(dest / "share/doc/README").st_ino == os.stat(dest / "share/doc/README.hard").st_ino
    assert not (dest / "lib").exists() and not (dest / "bin").exists()
    assert report.files == 201 and report.hardlinks == 1
    layer_size = sum(layer.size for layer in fetch_manifest(store, manifest).layers)
    range_bytes = report.stats.bytes_fetched - report.index_bytes  # the total counts the zTOC blob too
    assert 0 < report.index_bytes and range_bytes < layer_size / 4  # the big library's spans were never read
    assert not [p for p in os.listdir(dest) if "ocikit" in p]


def test_symlinks_modes_and_link_parents(indexed, tmp_path):
    store, manifest, root = indexed
    dest = tmp_path / "dest"
    extract_matching(store, manifest, ["lib*", "etc/*"], str(dest))
    assert os.readlink(dest / "lib64") == "lib" and os.readlink(dest / "lib/libbig.so") == "libbig.so.1"
    assert open(dest / "lib/libbig.so.1", "rb").read() == open(os.path.join(root, "lib/libbig.so.1"), "rb").read()
    assert os.stat(dest / "etc/secret.conf").st_mode & 0o777 == 0o600


def test_glob_matching_rules():
    assert matches("usr/lib/libz.so", ["usr/lib"])  # a directory brings its subtree
    assert matches("usr/lib/libz.so", ["usr/*/*.so"])
    assert not matches("usr/lib64/x", ["usr/lib"])
    assert not matches("usr/share/x", ["usr/lib/*"])


def _image_of_tars(tmp_path, tars):
    store = LayoutStore(str(tmp_path / "layout"))
    paths = [(write(str(tmp_path / f"l{i}.gz"), gzip.compress(t)), mt.OCI_LAYER_GZIP) for i, t in enumerate(tars)]
    return store, push_image(store, paths)


def test_whiteouts_and_opaque_directories(tmp_path):
    lower = tar_with([("a/x", b"lower x", {}), ("a/y", b"lower y", {}), ("b/z", b"lower z", {})])
    upper = tar_with([("a/.wh.x", b"", {}), ("b/.wh..wh..opq", b"", {}), ("b/new", b"upper", {})])
    store, manifest = _image_of_tars(tmp_path, [lower, upper])
    ref = f"oci:{tmp_path / 'layout'}:v1"
    with pytest.raises(NotFoundError):
        get_file(ref, "a/x", str(tmp_path / "x"))
    with pytest.raises(NotFoundError):
        get_file(ref, "b/z", str(tmp_path / "z"))
    result = get_file(ref, "a/y", str(tmp_path / "y"))  # no zTOCs attached: both layers indexed in memory
    assert open(tmp_path / "y", "rb").read() == b"lower y" and len(result.built_ztocs) == 2
    dest = tmp_path / "dest"
    extract_matching(store, manifest, ["a", "b"], str(dest))
    assert sorted(os.listdir(dest / "a")) == ["y"] and sorted(os.listdir(dest / "b")) == ["new"]


@pytest.mark.parametrize(
    "entries, rule",
    [
        ([("../evil", b"x", {})], "path traversal"),
        ([("a/link", None, {"type": b"2", "linkname": "/etc/passwd"})], "outside"),
        ([("a/link", None, {"type": b"2", "linkname": "../../etc"})], "outside"),
    ],
)
def test_unsafe_entries_are_refused(tmp_path, entries, rule):
    store, manifest = _image_of_tars(tmp_path, [tar_with([("a/ok", b"ok", {})] + entries)])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeContentError, match=rule):
        extract_matching(store, manifest, ["*"], str(dest))
    assert not os.path.exists(tmp_path / "evil") and not os.path.lexists(tmp_path / "etc")


def test_symlinked_parent_in_the_destination_is_not_followed(indexed, tmp_path):
    store, manifest, _ = indexed
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    os.symlink(str(outside), dest / "many")  # planted before extraction
    with pytest.raises(UnsafeContentError):
        extract_matching(store, manifest, ["many"], str(dest))
    assert os.listdir(outside) == []
