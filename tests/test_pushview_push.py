"""push_view end to end on the real spack view fixture, into OCI layouts."""

import hashlib
import json
import os
import subprocess
import time

import jsonschema
import pytest
from pushview_support import (
    REAL_ROOT,
    VIEW_PATH,
    decompress,
    extract_layers,
    layout_blob,
    layout_manifest,
    make_other_environment,
    resolved_link,
    tree_listing,
    unpack_fixture,
)

from ocikit.push.api import push_view
from ocikit.relocate import relocate_tree
from ocikit.spec import mediatypes as mt
from ocikit.spec.view_config import VIEW_KEY

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "..", "schemas", "ocikit.view.config.v2.schema.json")
OTHER_HASH = "a" * 32


@pytest.fixture(scope="module")
def view_dir(tmp_path_factory):
    return unpack_fixture(str(tmp_path_factory.mktemp("push")))


@pytest.fixture(scope="module")
def pushed(view_dir, tmp_path_factory):
    # Files changed less than 2 s before a push are never trusted from the cache by their
    # metadata alone (the "racy" window); let the freshly unpacked fixture age past it.
    newest = max(os.lstat(os.path.join(d, n)).st_ctime for d, ds, fs in os.walk(view_dir) for n in ds + fs)
    time.sleep(max(0.0, newest + 2.2 - time.time()))
    base = tmp_path_factory.mktemp("pushed")
    layout, cache = str(base / "layout"), str(base / "cache")
    first = push_view(view_dir, f"oci:{layout}:v1", root=REAL_ROOT, view_path=VIEW_PATH, cache_dir=cache)
    return layout, cache, first


def push_fixture(view_dir, reference, **kwargs):
    return push_view(view_dir, reference, root=REAL_ROOT, view_path=VIEW_PATH, **kwargs)


def files_containing(root, needle):
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path) and needle in open(path, "rb").read():
                found.append(os.path.relpath(path, root))
    return sorted(found)


def test_one_layer_per_package_with_oras_annotations(pushed):
    layout, _, result = pushed
    manifest = layout_manifest(layout, "v1")
    assert manifest["artifactType"] == mt.OCIKIT_VIEW_ARTIFACT
    assert manifest["config"]["mediaType"] == mt.OCI_CONFIG  # image-shaped: runtimes mount it
    titles = [layer["annotations"][mt.ANNOTATION_TITLE] for layer in manifest["layers"]]
    assert titles == [
        "bzip2-1.0.8-vlb22pw.tar.zst",
        "gcc-runtime-12.2.0-ho4btyq.tar.zst",
        "xz-5.4.1-5dutzbx.tar.zst",
        "zlib-1.2.13-n6pnftv.tar.zst",
        "zstd-1.5.4-s7jxyn3.tar.zst",
        "view-view.tar.zst",
    ]
    for layer in manifest["layers"]:
        assert layer["mediaType"] == mt.OCI_LAYER_ZSTD
        tar = decompress(layout_blob(layout, layer["digest"]), layer["mediaType"])
        assert layer["annotations"][mt.ORAS_ANNOTATION_DIGEST] == "sha256:" + hashlib.sha256(tar).hexdigest()
        assert mt.ORAS_ANNOTATION_UNPACK not in layer["annotations"]
    assert result.digest == "sha256:" + hashlib.sha256(layout_blob(layout, result.digest)).hexdigest()


def test_config_validates_and_describes_the_view(pushed, view_dir):
    layout, _, result = pushed
    manifest = layout_manifest(layout, "v1")
    config = json.loads(layout_blob(layout, manifest["config"]["digest"]))
    jsonschema.validate(config, json.load(open(SCHEMA_PATH)))
    assert config == result.config
    assert (config["architecture"], config["os"]) == ("amd64", "linux")  # the fixture's ELF files
    assert config["rootfs"] == {"type": "layers", "diff_ids": [r.diff_id for r in result.layers]}
    assert config["created"] == manifest["annotations"][mt.ANNOTATION_CREATED]
    config = config[VIEW_KEY]
    assert (config["viewPath"], config["realRoot"], config["storeRoot"]) == (VIEW_PATH, REAL_ROOT, "/opt/software")
    zlib = next(p for p in config["packages"] if p["name"] == "zlib")
    assert zlib["hash"] == "n6pnftvwnruwxqkvmdrqfkgz46j2g6td" and zlib["version"] == "1.2.13"
    assert zlib["layers"] == [manifest["layers"][3]["digest"]]
    assert [layer["diffId"] for layer in config["layers"]] == [
        layer["annotations"][mt.ORAS_ANNOTATION_DIGEST] for layer in manifest["layers"]
    ]
    relocation = config["relocation"]
    assert relocation["root"] == REAL_ROOT and relocation["viewPath"] == VIEW_PATH
    assert relocation["mountPath"] == VIEW_PATH and relocation["placeholder"] == ""  # default: --view-path
    assert relocation["storeRoot"] == "/opt/software"
    # With relative RPATHs (the default) only files holding the root outside their RPATH remain.
    assert relocation["relativeRpaths"] is True
    assert set(relocation["files"]) < set(files_containing(view_dir, REAL_ROOT.encode()))
    assert {"lib/pkgconfig/zlib.pc", "bin/xz"} <= set(relocation["files"])
    assert config["totals"]["files"] == 169 and config["totals"]["symlinks"] == 126


def test_layers_restore_the_view(view_dir, tmp_path):
    layout = str(tmp_path / "exact")
    result = push_fixture(view_dir, f"oci:{layout}:v1", cache_dir="", compat=False, relative_rpaths=False)
    manifest = layout_manifest(layout, "v1")
    out = str(tmp_path / "restored")
    extract_layers(layout, manifest, out)
    relocation = result.view["relocation"]
    assert files_containing(out, REAL_ROOT.encode()) == []  # root-independent layers: stored at the mount path
    assert relocation["mountPath"] == VIEW_PATH
    # relocating the mount path back to the real root, as a pull there would, gives the view back
    relocate_tree(out, VIEW_PATH, REAL_ROOT, files=relocation["files"], relative_rpaths=False)
    original, restored = tree_listing(view_dir), tree_listing(out)
    assert sorted(original) == sorted(restored)
    for rel, entry in original.items():
        if entry[0] == "file" and rel in relocation["files"]:  # same size, root back (RPATH repeats dropped)
            assert os.path.getsize(os.path.join(out, rel)) == os.path.getsize(os.path.join(view_dir, rel)), rel
            assert REAL_ROOT.encode() in open(os.path.join(out, rel), "rb").read(), rel
        elif entry[0] == "file":
            assert restored[rel][:2] == entry[:2] and restored[rel][3] == entry[3], rel
        elif entry[0] == "symlink":
            assert resolved_link(out, rel) == resolved_link(view_dir, rel), rel
    # package files carry the install tree's mtimes, the view's own entries their real ones
    manifest_json = json.load(open(os.path.join(view_dir, ".spack", "zlib", "install_manifest.json")))
    prefix = "/opt/software/linux-x86_64/zlib-1.2.13-n6pnftvwnruwxqkvmdrqfkgz46j2g6td"
    assert restored["include/zlib.h"][2] == int(manifest_json[prefix + "/include/zlib.h"]["time"])


def test_second_push_uploads_nothing(pushed, view_dir):
    layout, cache, first = pushed
    assert first.uploaded_bytes > 0
    again = push_fixture(view_dir, f"oci:{layout}:v1", cache_dir=cache)
    assert again.digest == first.digest
    assert again.uploaded_bytes == 0
    assert {layer.status for layer in again.layers} == {"cached"}
    # without the local cache, the view already at the tag tells which layers exist
    fresh = push_fixture(view_dir, f"oci:{layout}:v1", cache_dir="")
    assert fresh.digest == first.digest and fresh.uploaded_bytes == 0
    assert {layer.status for layer in fresh.layers} == {"exists"}


def test_same_tree_same_digest_and_pinned_created(view_dir, tmp_path, monkeypatch):
    one = push_fixture(view_dir, f"oci:{tmp_path / 'one'}:t", cache_dir="")
    two = push_fixture(view_dir, f"oci:{tmp_path / 'two'}:t", cache_dir="")
    assert one.digest == two.digest
    manifest = layout_manifest(str(tmp_path / "one"), "t")
    assert manifest["annotations"][mt.ANNOTATION_CREATED] == one.view["created"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    labelled = push_fixture(view_dir, f"oci:{tmp_path / 'three'}:t", cache_dir="", labels={"team": "hpc"})
    annotations = layout_manifest(str(tmp_path / "three"), "t")["annotations"]
    assert annotations == {mt.ANNOTATION_CREATED: "1970-01-01T00:00:00Z", "team": "hpc"}
    assert labelled.layers[0].descriptor.digest == one.layers[0].descriptor.digest


def test_two_environments_share_their_common_packages(pushed, view_dir, tmp_path):
    layout, cache, first = pushed
    other = make_other_environment(view_dir, str(tmp_path / "envb"), OTHER_HASH, drop="zstd", touch=1_900_000_000)
    second = push_view(other, f"oci:{layout}:envb", root=f"/opt/._view/{OTHER_HASH}", view_path=VIEW_PATH,
                       cache_dir=cache)
    by_title = {layer.title: layer for layer in first.layers}
    shared = [layer for layer in second.layers if layer.role == "package"]
    assert [layer.title for layer in shared] == [t for t in by_title if t.startswith(("bzip2", "gcc", "xz", "zlib"))]
    for layer in shared:
        assert layer.descriptor.digest == by_title[layer.title].descriptor.digest, layer.title
        assert layer.status == "exists"
    view_layer = second.layers[-1]
    assert view_layer.role == "view" and view_layer.status == "uploaded"
    assert second.uploaded_bytes == view_layer.uploaded_bytes + second.config_descriptor.size


def test_single_layer_keeps_files_as_they_are(view_dir, tmp_path):
    layout = str(tmp_path / "single")
    result = push_fixture(view_dir, f"oci:{layout}:s", layers="single", cache_dir="")
    [layer] = layout_manifest(layout, "s")["layers"]
    assert layer["mediaType"] == mt.OCI_LAYER_GZIP
    assert layer["annotations"][mt.ANNOTATION_TITLE] == "view"
    assert layer["annotations"][mt.ORAS_ANNOTATION_UNPACK] == "true"
    assert result.view["relocation"]["placeholder"] == ""
    assert len(result.view["relocation"]["files"]) == 15
    extract_layers(layout, layout_manifest(layout, "s"), str(tmp_path / "out"))
    assert files_containing(str(tmp_path / "out" / "view"), REAL_ROOT.encode()) == result.view["relocation"]["files"]


def test_metadata_fingerprint_never_hides_a_change(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"one")
    cache, layout = str(tmp_path / "cache"), f"oci:{tmp_path / 'layout'}:t"
    first = push_view(str(tree), layout, cache_dir=cache)
    again = push_view(str(tree), layout, cache_dir=cache)
    # just written: inside the racy window, so the layer is hashed again rather than trusted
    assert [layer.status for layer in again.layers] == ["exists"] and again.digest == first.digest
    st = os.stat(tree / "f")
    (tree / "f").write_bytes(b"two")  # same size, mtime put back: only ctime tells
    os.utime(tree / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = push_view(str(tree), layout, cache_dir=cache)
    assert changed.digest != first.digest and changed.layers[0].status == "uploaded"


def test_relative_rpaths_make_binaries_run_from_anywhere(view_dir, tmp_path):
    layout = str(tmp_path / "rpaths")
    result = push_fixture(view_dir, f"oci:{layout}:r", relative_rpaths=True, cache_dir="")
    relocation = result.view["relocation"]
    assert relocation["relativeRpaths"] is True
    # the .pc files still name the root; most ELF files no longer do
    assert set(relocation["files"]) < set(files_containing(view_dir, REAL_ROOT.encode()))
    assert {f for f in relocation["files"] if f.endswith(".pc")} == {
        "lib/pkgconfig/bzip2.pc", "lib/pkgconfig/liblzma.pc", "lib/pkgconfig/libzstd.pc", "lib/pkgconfig/zlib.pc"}
    out = tmp_path / "elsewhere"
    extract_layers(layout, layout_manifest(layout, "r"), str(out))
    # no relocation applied at all: $ORIGIN-relative RPATHs find the view's own libraries
    run = subprocess.run([str(out / "bin" / "xz"), "--version"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and "5.4.1" in run.stdout
    ldd = subprocess.run(["ldd", str(out / "bin" / "xz")], capture_output=True, text=True).stdout
    assert str(out / "bin" / ".." / "lib" / "liblzma.so.5") in ldd or str(out / "lib" / "liblzma.so.5") in ldd


def test_compat_metadata_is_attached_as_a_referrer(view_dir, tmp_path):
    from ocikit.content.open import open_store

    layout = f"oci:{tmp_path / 'c'}"
    result = push_fixture(view_dir, f"{layout}:t", cache_dir="")
    store, _ = open_store(layout)
    [referrer] = store.referrers(result.manifest)
    assert referrer.digest == result.compat.digest
    assert referrer.artifact_type == mt.IMAGE_COMPAT_ARTIFACT
    # README: the newest GLIBC_ version any ELF file of the view needs is 2.36 (libstdc++)
    assert referrer.annotations["org.supercontainers.glibc"].startswith("2.36")
    # An unchanged re-push, even seconds later, yields the same referrer rather than another one.
    time.sleep(1.1)
    again = push_fixture(view_dir, f"{layout}:t", cache_dir="")
    assert again.compat.digest == result.compat.digest
    assert [r.digest for r in store.referrers(result.manifest)] == [result.compat.digest]
    skipped = push_fixture(view_dir, f"oci:{tmp_path / 'n'}:t", cache_dir="", compat=False)
    assert skipped.compat is None and open_store(f"oci:{tmp_path / 'n'}")[0].referrers(skipped.manifest) == []


def test_absolute_rpaths_record_every_file_that_embeds_the_root(view_dir, tmp_path):
    result = push_fixture(view_dir, f"oci:{tmp_path / 'abs'}:v1", cache_dir="", compat=False, relative_rpaths=False)
    relocation = result.view["relocation"]
    # README: 11 ELF files and 4 .pc files contain the real root
    assert relocation["relativeRpaths"] is False
    assert relocation["files"] == files_containing(view_dir, REAL_ROOT.encode())
    assert len(relocation["files"]) == 15
