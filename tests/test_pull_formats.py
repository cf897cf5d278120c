"""What pull produces for each kind of artifact and archive format, checked against the
source tree GNU tar packed (content, modes, times, symlinks, hardlinks)."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess

import pytest
from pull_support import MTIME, TarBuilder, push_layers, push_tar, push_view, tree_snapshot

import ocikit
from ocikit.content.base import push_bytes, push_manifest
from ocikit.content.layout import LayoutStore
from ocikit.errors import InvalidContentError, NotFoundError
from ocikit.pull.policy import PullPolicy
from ocikit.pull.ready import read_marker
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Platform
from ocikit.spec.manifest import build_index, canonical_json


@pytest.fixture
def source_tree(tmp_path):
    """A small tree with the things real trees have: nesting, modes, symlinks, hardlinks, long names."""
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "lib" / "python3" / ("deep" * 30)).mkdir(parents=True)
    (src / "share" / "ro").mkdir(parents=True)
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(src / "bin" / "tool", 0o755)
    (src / "lib" / "libx.so.1").write_bytes(os.urandom(70000))
    os.symlink("libx.so.1", src / "lib" / "libx.so")
    os.link(src / "lib" / "libx.so.1", src / "lib" / "libx-hardlink.so.1")
    (src / "lib" / "python3" / ("deep" * 30) / ("long-name-" * 20)).write_text("long")
    (src / "share" / "ro" / "data.txt").write_text("read only dir content")
    (src / "big.bin").write_bytes(os.urandom(9 << 20))  # above the streamed-file threshold
    (src / "empty").write_bytes(b"")
    os.chmod(src / "share" / "ro", 0o555)
    for dirpath, dirs, files in os.walk(src):
        for name in dirs + files:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)
    yield str(src)
    os.chmod(src / "share" / "ro", 0o755)


@pytest.mark.parametrize(
    "compression, tar_format, writers",
    [("zstd", "gnu", 0), ("zstd", "posix", 3), ("gzip", "gnu", 3), ("gzip", "posix", 0), ("none", "gnu", 1), ("none", "posix", 0)],
)
def test_roundtrip_gnu_tar(tmp_path, source_tree, compression, tar_format, writers):
    tar = subprocess.run(
        ["tar", "-C", source_tree, f"--format={tar_format}", "--sort=name", "-cf", "-", "."],
        check=True,
        capture_output=True,
    ).stdout
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_tar(layout, tar, compression)
    result = ocikit.pull(f"oci:{layout}:v1", dest, writer_threads=writers)
    snapshot = tree_snapshot(dest)
    assert snapshot.pop(".ocikit/ready.json") and snapshot.pop(".ocikit/owned.json") and snapshot.pop(".ocikit")
    assert snapshot == tree_snapshot(source_tree)
    assert os.stat(os.path.join(dest, "lib/libx.so.1")).st_ino == os.stat(os.path.join(dest, "lib/libx-hardlink.so.1")).st_ino
    assert stat.S_IMODE(os.stat(os.path.join(dest, "share/ro")).st_mode) == 0o555
    assert os.stat(os.path.join(dest, "share/ro")).st_mtime == MTIME  # set after its children
    assert result.files == 6 and result.symlinks == 1 and not result.unchanged
    assert read_marker(dest)["digest"] == result.digest
    os.chmod(os.path.join(dest, "share/ro"), 0o755)


def test_multi_member_gzip(tmp_path):
    tar = TarBuilder().file("a", b"first half " * 1000).file("b", b"second half " * 1000).bytes()
    blob = gzip.compress(tar[:5120], mtime=0) + gzip.compress(tar[5120:], mtime=0)
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    store = LayoutStore(layout)
    from ocikit.digest import digest_bytes
    from ocikit.spec.descriptor import Descriptor
    from ocikit.spec.manifest import build_manifest

    layer = Descriptor(mt.OCI_LAYER_GZIP, digest_bytes(blob), len(blob), {mt.ORAS_ANNOTATION_DIGEST: digest_bytes(tar)})
    store.push(layer, blob)
    config = push_bytes(store, mt.OCI_CONFIG, b"{}")
    push_manifest(store, build_manifest([layer], config=config), tag="v1")
    ocikit.pull(f"oci:{layout}:v1", dest)
    assert open(os.path.join(dest, "b"), "rb").read() == b"second half " * 1000


class _CountingStore:
    """A real layout store that counts blob reads (to prove what a pull did not fetch)."""

    def __init__(self, store: LayoutStore) -> None:
        self.store = store
        self.fetched: list[str] = []

    def fetch(self, desc):
        self.fetched.append(desc.digest)
        return self.store.fetch(desc)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_repull_same_digest_is_a_noop_and_new_digest_replaces(tmp_path):
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_tar(layout, TarBuilder().file("data", b"one").file("only-in-v1", b"x").bytes())
    first = ocikit.pull(f"oci:{layout}:v1", dest)
    counting = _CountingStore(LayoutStore(layout))
    again = ocikit.pull(f"oci:{layout}:v1", dest, store=counting)
    assert again.unchanged and again.digest == first.digest
    assert counting.fetched == [first.digest]  # the manifest only: no config, no layer
    # pinned digest + matching marker: not even the store is consulted
    pinned = ocikit.pull(f"oci:{layout}@{first.digest}", dest, store=None)
    assert pinned.unchanged

    push_tar(layout, TarBuilder().file("data", b"two").bytes())
    second = ocikit.pull(f"oci:{layout}:v1", dest)
    assert second.digest != first.digest and not second.unchanged
    assert open(os.path.join(dest, "data")).read() == "two"
    assert not os.path.exists(os.path.join(dest, "only-in-v1"))
    assert read_marker(dest)["digest"] == second.digest
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".dest")) == [".dest.ocikit-lock"]


def test_image_layers_whiteouts_and_opaque_dirs(tmp_path):
    lower = (
        TarBuilder()
        .dir("etc").file("etc/keep", b"keep").file("etc/remove-me", b"gone")
        .dir("opaque").file("opaque/old1", b"1").file("opaque/old2", b"2")
        .dir("becomes-file").file("becomes-file/inner", b"i")
        .file("becomes-dir", b"f")
        .file("shared/original", b"linked content")
        .bytes()
    )
    upper = (
        TarBuilder()
        .file("etc/.wh.remove-me", b"")
        .dir("opaque").file("opaque/.wh..wh..opq", b"").file("opaque/new", b"n")
        .file("becomes-file", b"now a file")
        .dir("becomes-dir").file("becomes-dir/child", b"c")
        .hardlink("shared/link-to-lower", "shared/original")
        .file("etc/keep", b"updated")
        .bytes()
    )
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    from ocikit.digest import digest_bytes

    config = canonical_json({"rootfs": {"type": "layers", "diff_ids": [digest_bytes(lower), digest_bytes(upper)]}})
    push_layers(layout, [(lower, "gzip", {}), (upper, "zstd", {})], config=(mt.OCI_CONFIG, config), annotate_diff_id=False)
    result = ocikit.pull(f"oci:{layout}:v1", dest)
    assert result.kind == "image"
    tree = {k: v for k, v in tree_snapshot(dest).items() if not k.startswith(".ocikit")}
    assert sorted(tree) == sorted(
        ["etc", "etc/keep", "opaque", "opaque/new", "becomes-file", "becomes-dir", "becomes-dir/child",
         "shared", "shared/original", "shared/link-to-lower"]
    )
    assert open(os.path.join(dest, "etc/keep")).read() == "updated"
    assert open(os.path.join(dest, "becomes-file")).read() == "now a file"
    assert os.stat(os.path.join(dest, "shared/original")).st_ino == os.stat(os.path.join(dest, "shared/link-to-lower")).st_ino
    assert not any(".wh." in name for name in tree)


def test_rootfs_flag_applies_whiteouts_to_any_artifact(tmp_path):
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    lower = TarBuilder().file("a", b"a").file("b", b"b").bytes()
    upper = TarBuilder().file(".wh.a", b"").bytes()
    push_layers(layout, [(lower, "zstd", {mt.ANNOTATION_TITLE: "l"}), (upper, "zstd", {mt.ANNOTATION_TITLE: "u"})])
    ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(rootfs=True))
    assert sorted(os.listdir(dest)) == [".ocikit", "b"]


def test_oras_files_and_directories(tmp_path):
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    dir_tar = TarBuilder().dir("docs").file("docs/a.md", b"# a").dir("docs/sub").file("docs/sub/b.md", b"# b").bytes()
    pyoras_tar = TarBuilder().dir("data").file("data/x.csv", b"1,2").bytes()
    push_layers(
        layout,
        [
            (b"just a file\n", "file", {mt.ANNOTATION_TITLE: "notes.txt"}),
            (dir_tar, "gzip", {mt.ANNOTATION_TITLE: "docs", mt.ORAS_ANNOTATION_UNPACK: "true"}),
            (pyoras_tar, "gzip", {mt.ANNOTATION_TITLE: "data"}),  # oras-py: tar+gzip, no unpack annotation
            (b"untitled", "file", {}),  # oras pull skips layers without a title
            (b"\x1f\x8b but stored as a file", "file", {mt.ANNOTATION_TITLE: "sub/raw.gz"}),
        ],
        annotate_diff_id=False,
    )
    result = ocikit.pull(f"oci:{layout}:v1", dest)
    assert result.kind == "oras"
    tree = {k for k in tree_snapshot(dest) if not k.startswith(".ocikit")}
    assert tree == {"notes.txt", "docs", "docs/a.md", "docs/sub", "docs/sub/b.md", "data", "data/x.csv", "sub", "sub/raw.gz"}
    assert open(os.path.join(dest, "notes.txt")).read() == "just a file\n"
    assert open(os.path.join(dest, "sub/raw.gz"), "rb").read() == b"\x1f\x8b but stored as a file"


def test_oras_title_escape_is_refused(tmp_path):
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_layers(layout, [(b"evil", "file", {mt.ANNOTATION_TITLE: "../evil"})], annotate_diff_id=False)
    with pytest.raises(ocikit.errors.UnsafeContentError) as info:
        ocikit.pull(f"oci:{layout}:v1", dest)
    assert info.value.rule == "path traversal"
    assert not os.path.exists(tmp_path / "evil")


def test_view_layers_merge_and_directories_settle_last(tmp_path):
    """push-view's packages mode: package layers hold files, the last layer the directories."""
    zlib = TarBuilder().file("lib/libz.so.1", b"z" * 1000).symlink("lib/libz.so", "libz.so.1").file("include/zlib.h", b"h").bytes()
    bzip2 = TarBuilder().file("lib/libbz2.so", b"b" * 1000).file("bin/bzip2", b"elf", 0o755).bytes()
    view = TarBuilder().dir("bin", 0o555).dir("include").dir("lib").dir(".spack").file(".spack/env.json", b"{}").bytes()
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_view(layout, [zlib, bzip2, view], {"schemaVersion": 1, "relocation": {"root": dest, "placeholder": "", "files": []}})
    result = ocikit.pull(f"oci:{layout}:v1", dest)
    assert result.kind == "view" and result.layers == 3 and result.relocated_to == ""
    assert sorted(os.listdir(dest)) == [".ocikit", ".spack", "bin", "include", "lib"]
    assert stat.S_IMODE(os.stat(os.path.join(dest, "bin")).st_mode) == 0o555
    assert os.readlink(os.path.join(dest, "lib/libz.so")) == "libz.so.1"
    os.chmod(os.path.join(dest, "bin"), 0o755)


def test_view_single_layer_in_oras_layout_is_unpacked_without_its_title(tmp_path):
    tar = TarBuilder().dir("myview").file("myview/bin/tool", b"t").bytes()
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_layers(
        layout,
        [(tar, "zstd", {mt.ANNOTATION_TITLE: "myview", mt.ORAS_ANNOTATION_UNPACK: "true"})],
        artifact_type=mt.OCIKIT_VIEW_ARTIFACT,
        config=(mt.OCIKIT_VIEW_CONFIG, b"{}"),
    )
    ocikit.pull(f"oci:{layout}:v1", dest)
    assert open(os.path.join(dest, "bin/tool")).read() == "t"


def test_overlapping_view_layers_are_refused(tmp_path):
    a = TarBuilder().file("lib/same", b"from a").bytes()
    b = TarBuilder().file("lib/same", b"from b").bytes()
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_view(layout, [a, b])
    with pytest.raises(InvalidContentError, match="more than one layer"):
        ocikit.pull(f"oci:{layout}:v1", dest)
    assert not os.path.exists(dest)


def test_duplicate_entries_in_one_layer_last_wins(tmp_path):
    tar = TarBuilder().file("x", b"first").file("y", b"y").file("x", b"second").file("y", b"").symlink("y", "x").bytes()
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_view(layout, [tar])
    ocikit.pull(f"oci:{layout}:v1", dest)
    assert open(os.path.join(dest, "x")).read() == "second"
    assert os.readlink(os.path.join(dest, "y")) == "x"


def test_index_selects_the_platform(tmp_path):
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    amd = push_tar(layout, TarBuilder().file("arch", b"amd64").bytes(), tag="amd")
    arm = push_tar(layout, TarBuilder().file("arch", b"arm64").bytes(), tag="arm")
    store = LayoutStore(layout)
    entries = [amd.replace(platform=Platform("linux", "amd64")), arm.replace(platform=Platform("linux", "arm64", "v8"))]
    index = push_manifest(store, build_index(entries), tag="multi")
    host = Platform.host()
    result = ocikit.pull(f"oci:{layout}:multi", dest)
    assert open(os.path.join(dest, "arch")).read() == host.architecture
    marker = read_marker(dest)
    assert marker["referenceDigest"] == index.digest and marker["digest"] != index.digest
    other = "arm64" if host.architecture != "arm64" else "amd64"
    dest2 = str(tmp_path / "dest2")
    ocikit.pull(f"oci:{layout}:multi", dest2, PullPolicy(platform=f"linux/{other}"))
    assert open(os.path.join(dest2, "arch")).read() == other
    with pytest.raises(NotFoundError, match="no manifest for platform linux/s390x"):
        ocikit.pull(f"oci:{layout}:multi", str(tmp_path / "dest3"), PullPolicy(platform="linux/s390x"))
    # the index digest a marker records is enough for a no-op
    assert ocikit.pull(f"oci:{layout}@{index.digest}", dest).unchanged and result.digest == marker["digest"]


def test_pull_into_a_mount_point_works_in_place(tmp_path):
    mount = tmp_path / "emptydir"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        layout = str(tmp_path / "layout")
        push_tar(layout, TarBuilder().file("v", b"1").file("old-only", b"o").bytes())
        first = ocikit.pull(f"oci:{layout}:v1", str(mount))
        assert os.path.ismount(mount) and open(mount / "v").read() == "1"
        push_tar(layout, TarBuilder().file("v", b"2").bytes())
        second = ocikit.pull(f"oci:{layout}:v1", str(mount))
        assert second.digest != first.digest and open(mount / "v").read() == "2"
        assert sorted(os.listdir(mount)) == [".ocikit", "v"]
        assert sorted(os.listdir(mount / ".ocikit")) == ["owned.json", "ready.json"]  # the lock is beside the mount
        assert read_marker(str(mount))["digest"] == second.digest
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_ready_file_elsewhere(tmp_path):
    layout, dest, ready = str(tmp_path / "layout"), str(tmp_path / "dest"), str(tmp_path / "signals" / "done.json")
    push_tar(layout, TarBuilder().file("a").bytes())
    result = ocikit.pull(f"oci:{layout}:v1", dest, ready_file=ready)
    assert ocikit.wait_ready(dest, timeout=0, ready_file=ready)["digest"] == result.digest
    assert read_marker(dest)["digest"] == result.digest


def _view_with_placeholder(tmp_path, root="/opt/views/app-env"):
    from ocikit.spec.manifest import canonical_json  # noqa: F401  (documents the config shape)

    placeholder = "/__ocikit_root_placeholder__"[: len(root)]
    script = f"#!{placeholder}/bin/python3\nimport sys\n".encode()
    pc = f"prefix={placeholder}\nlibdir=${{prefix}}/lib\n".encode()
    tar = (
        TarBuilder()
        .file("bin/python3", b"\x7fELF-not-really", 0o755)
        .file("bin/tool", script, 0o755)
        .file("lib/pkgconfig/app.pc", pc)
        .file("share/untouched.txt", b"no prefix here")
        .bytes()
    )
    config = {
        "schemaVersion": 1,
        "relocation": {
            "root": root,
            "viewPath": root,
            "placeholder": placeholder,
            "files": ["bin/tool", "lib/pkgconfig/app.pc"],
            "relativeRpaths": True,
        },
    }
    layout = str(tmp_path / "layout")
    push_view(layout, [tar], config)
    return layout, placeholder


def test_view_is_relocated_to_dest(tmp_path):
    pytest.importorskip("ocikit.relocate")
    layout, placeholder = _view_with_placeholder(tmp_path)
    dest = str(tmp_path / "pods" / "a-much-longer-destination-path" / "view")
    result = ocikit.pull(f"oci:{layout}:v1", dest)
    assert result.relocated_to == dest and read_marker(dest)["relocatedTo"] == dest
    assert open(os.path.join(dest, "bin/tool")).read().startswith(f"#!{dest}/bin/python3\n")
    assert open(os.path.join(dest, "lib/pkgconfig/app.pc")).read() == f"prefix={dest}\nlibdir=${{prefix}}/lib\n"
    assert stat.S_IMODE(os.stat(os.path.join(dest, "bin/tool")).st_mode) == 0o755
    for dirpath, _, files in os.walk(dest):
        for name in files:
            assert placeholder.encode() not in open(os.path.join(dirpath, name), "rb").read()


def test_view_without_relocation_restores_the_recorded_root(tmp_path):
    pytest.importorskip("ocikit.relocate")
    layout, placeholder = _view_with_placeholder(tmp_path)
    dest = str(tmp_path / "dest")
    result = ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(relocate=False))
    assert result.relocated_to == "/opt/views/app-env"
    assert open(os.path.join(dest, "lib/pkgconfig/app.pc")).read().startswith("prefix=/opt/views/app-env\n")


def test_view_published_from_the_node_cache_is_relocated_per_target(tmp_path):
    pytest.importorskip("ocikit.relocate")
    layout, placeholder = _view_with_placeholder(tmp_path)
    cache = ocikit.NodeCache(str(tmp_path / "cache"))
    entry = cache.ensure(f"oci:{layout}:v1")
    target = str(tmp_path / "kubelet" / "pods" / "uid" / "volumes" / "vol")
    published = cache.publish(entry, target, mode="hardlink", read_only=True, relocate_to="/opt/view")
    assert published.relocated_to == "/opt/view"
    assert open(os.path.join(target, "bin/tool")).read().startswith("#!/opt/view/bin/python3\n")
    # relocation wrote new files: the cached tree still holds the placeholder, and the
    # untouched file is still shared with the cache
    assert placeholder in open(os.path.join(entry.path, "bin/tool")).read()
    assert os.stat(os.path.join(target, "share/untouched.txt")).st_ino == os.stat(os.path.join(entry.path, "share/untouched.txt")).st_ino
    assert os.stat(os.path.join(target, "bin/tool")).st_ino != os.stat(os.path.join(entry.path, "bin/tool")).st_ino


def test_compatibility_referrer_is_checked_before_any_layer(tmp_path):
    pytest.importorskip("ocikit.compat")
    import json as _json

    from ocikit.errors import IncompatibleError
    from ocikit.graph.attach import Blob, attach_referrer

    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    image = push_tar(layout, TarBuilder().file("bin/tool", b"elf").bytes())
    other_arch = "s390x" if Platform.host().architecture != "s390x" else "ppc64le"
    body = {"compatibilities": {"io.ocikit": {"requirements": [{"kind": "arch", "name": other_arch}]}}}
    store = LayoutStore(layout)
    attach_referrer(
        store, image, mt.IMAGE_COMPAT_ARTIFACT, [Blob(mt.IMAGE_COMPAT_SPEC_LAYER, _json.dumps(body).encode())],
        created="2025-01-01T00:00:00Z",
    )
    (layer,) = ocikit.get_manifest(f"oci:{layout}:v1").layers
    fetched = []

    class Recording:
        def fetch(self, desc):
            fetched.append(desc.digest)
            return store.fetch(desc)

        def __getattr__(self, name):
            return getattr(store, name)

    with pytest.raises(IncompatibleError, match=other_arch):
        ocikit.pull(f"oci:{layout}:v1", dest, store=Recording())
    assert layer.digest not in fetched and not os.path.exists(dest)
    assert ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(check_compat=False)).files == 1
