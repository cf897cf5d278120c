"""push-view writes image-shaped views: containerd, skopeo and umoci take them as images, and the
tree stored at ``--mount-path`` runs where a runtime mounts it, with no ocikit on the node.

Real peers: docker-registry (session fixture), containerd on a private socket and state
directory (ocikit.testing.containerd), skopeo, umoci, GNU tar. The view is the real spack view
fixture (xz, zlib, bzip2, zstd, gcc-runtime) built at /opt/._view/<hash>.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest
from environment import require_binary
from pull_support import push_view as push_layout_view
from pushview_support import REAL_ROOT, VIEW_PATH, extract_layers, layout_manifest, unpack_fixture

import ocikit
from ocikit.content.base import read_all
from ocikit.errors import RelocationError
from ocikit.push.api import push_view
from ocikit.spack.artifact import placeholder_for
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Platform
from ocikit.spec.view_config import VIEW_KEY

FORBIDDEN = (REAL_ROOT.encode(), b"/opt/._view/", b"__ocikit_root_placeholder__")


@pytest.fixture(scope="module")
def view_dir(tmp_path_factory):
    return unpack_fixture(str(tmp_path_factory.mktemp("image")))


@pytest.fixture(scope="module")
def mount_path():
    """P: short (the fixture's root has 44 bytes of room) and private to this run."""
    parent = tempfile.mkdtemp(prefix="ocv-", dir="/tmp")
    yield os.path.join(parent, "view")
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def pushed(view_dir, mount_path, registry_server):
    reference = f"{registry_server.host}/views/image:v1"
    result = push_view(view_dir, reference, root=REAL_ROOT, view_path=VIEW_PATH, mount_path=mount_path,
                       cache_dir="", compat=False)
    return reference, result


def _manifest_and_config(reference: str) -> tuple[dict, dict]:
    store, ref = ocikit.open_store(reference, create=False)
    manifest = ocikit.get_manifest(reference)
    config = json.loads(read_all(store, manifest.config))
    return json.loads(manifest.raw), config


def _files_naming(root: str, needles: tuple[bytes, ...]) -> list[str]:
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path) and any(n in open(path, "rb").read() for n in needles):
                found.append(os.path.relpath(path, root))
    return found


def _runs_at(tree: str) -> None:
    """The view at ``tree`` works with an empty environment: xz runs on liblzma from ``tree``."""
    version = subprocess.run(["env", "-i", f"{tree}/bin/xz", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "5.4.1" in version.stdout, version.stderr
    libraries = subprocess.run(["env", "-i", "LD_TRACE_LOADED_OBJECTS=1", f"{tree}/bin/xz"],
                               capture_output=True, text=True).stdout
    (line,) = [entry for entry in libraries.splitlines() if "liblzma" in entry]
    assert f"=> {tree}/" in re.sub("/+", "/", line), libraries  # padded absolute RPATHs read as ///tree/lib
    prefix = [entry for entry in open(f"{tree}/lib/pkgconfig/liblzma.pc").read().splitlines()
              if entry.startswith("prefix=")]
    assert prefix == [f"prefix={tree}"]


def test_config_is_an_image_config_and_the_manifest_still_a_view(pushed, mount_path):
    reference, result = pushed
    manifest, config = _manifest_and_config(reference)
    assert manifest["artifactType"] == mt.OCIKIT_VIEW_ARTIFACT  # ORAS tools still see a view
    assert manifest["config"]["mediaType"] == mt.OCI_CONFIG
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["rootfs"]["type"] == "layers"
    assert config["rootfs"]["diff_ids"] == [layer["annotations"][mt.ORAS_ANNOTATION_DIGEST]
                                            for layer in manifest["layers"]]
    relocation = config[VIEW_KEY]["relocation"]
    assert relocation["mountPath"] == mount_path and relocation["root"] == REAL_ROOT
    assert "lib/pkgconfig/liblzma.pc" in relocation["files"]


def test_containerd_pulls_mounts_and_runs_it_at_the_mount_path(pushed, mount_path, containerd):
    reference, _ = pushed
    pulled = containerd.ctr("images", "pull", "--plain-http", reference)
    assert pulled.returncode == 0, pulled.stderr
    os.makedirs(mount_path, exist_ok=True)
    mounted = containerd.ctr("images", "mount", "--snapshotter", containerd.snapshotter, reference, mount_path)
    assert mounted.returncode == 0, mounted.stderr
    try:
        assert os.path.isfile(os.path.join(mount_path, "bin", "xz"))
        _runs_at(mount_path)
        assert _files_naming(mount_path, FORBIDDEN) == []  # neither the build root nor a placeholder
    finally:
        containerd.ctr("images", "unmount", "--rm", mount_path)
    assert not os.listdir(mount_path)


def test_skopeo_inspects_it_as_an_image(pushed):
    require_binary("skopeo")
    reference, result = pushed
    inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{reference}"],
                               capture_output=True, text=True, timeout=120)
    assert inspected.returncode == 0, inspected.stderr  # not "unsupported image-specific operation on artifact"
    info = json.loads(inspected.stdout)
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Layers"] == [layer.descriptor.digest for layer in result.layers]


def test_umoci_unpacks_it(view_dir, mount_path, tmp_path):
    # umoci 0.4 reads gzip layers only (zstd came in 0.5): push this one with gzip
    require_binary("umoci")
    push_view(view_dir, f"oci:{tmp_path / 'layout'}:v1", root=REAL_ROOT, view_path=VIEW_PATH,
              mount_path=mount_path, compression="gzip", cache_dir="", compat=False)
    unpacked = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:v1",
                               str(tmp_path / "bundle")], capture_output=True, text=True, timeout=300)
    assert unpacked.returncode == 0, unpacked.stderr
    rootfs = tmp_path / "bundle" / "rootfs"
    assert f"prefix={mount_path}\n" in (rootfs / "lib" / "pkgconfig" / "zlib.pc").read_text()
    assert _files_naming(str(rootfs), FORBIDDEN) == []


def test_ocikit_pulls_it_into_a_longer_path_where_it_runs(pushed, mount_path):
    reference, _ = pushed
    # longer than P, no longer than the build root: binary strings kept the build root's room
    parent = tempfile.mkdtemp(prefix="ocv-longer-", dir="/tmp")
    try:
        dest = os.path.join(parent, "a", "view")
        assert len(mount_path) < len(dest) <= len(REAL_ROOT)
        result = ocikit.pull(reference, dest)
        assert result.relocated_to == dest
        _runs_at(dest)
        assert _files_naming(dest, (mount_path.encode(), *FORBIDDEN)) == []
    finally:
        shutil.rmtree(parent)


def test_pull_without_relocation_leaves_the_tree_at_its_mount_path(pushed, mount_path, tmp_path):
    reference, _ = pushed
    ocikit.pull(reference, str(tmp_path / "as-stored"), policy=ocikit.PullPolicy(relocate=False))
    pc = (tmp_path / "as-stored" / "lib" / "pkgconfig" / "liblzma.pc").read_text()
    assert f"prefix={mount_path}\n" in pc  # what the image holds, not the build root


def test_a_mount_path_with_less_room_than_the_build_root_is_refused(view_dir, tmp_path):
    # bin/xz's LOCALEDIR string has the root's 44 bytes plus 24 of spack's padding slashes: 68
    too_long = "/srv/" + "v" * 68
    with pytest.raises(RelocationError, match=r"--mount-path /srv/v+ does not fit.*bin/(lzmainfo|xz):"):
        push_view(view_dir, f"oci:{tmp_path / 'layout'}:v1", root=REAL_ROOT, mount_path=too_long,
                  cache_dir="", compat=False)
    index = tmp_path / "layout" / "index.json"
    assert not index.exists() or json.loads(index.read_text())["manifests"] == []  # no manifest was pushed


def test_an_ocikit_0_1_artifact_still_pulls_and_runs(view_dir, tmp_path):
    """ocikit 0.1 stored the root as a same-length placeholder and wrote the view document
    itself as the config (application/vnd.ocikit.view.config.v1+json, schemaVersion 1)."""
    old_tree = str(tmp_path / "old")
    shutil.copytree(view_dir, old_tree, symlinks=True)
    placeholder = placeholder_for(REAL_ROOT)
    listed = _store_with_placeholder(old_tree, placeholder)
    archive = tmp_path / "layer.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(old_tree)):
            tar.add(os.path.join(old_tree, name), arcname=name)
    config = {
        "schemaVersion": 1, "name": "view", "kind": "spack", "viewPath": VIEW_PATH, "realRoot": REAL_ROOT,
        "relocation": {"root": REAL_ROOT, "viewPath": VIEW_PATH, "placeholder": placeholder,
                       "files": listed, "relativeRpaths": True},
    }
    push_layout_view(str(tmp_path / "layout"), [archive.read_bytes()], config)
    parent = tempfile.mkdtemp(prefix="ocv-old-", dir="/tmp")
    try:
        dest = os.path.join(parent, "view")
        result = ocikit.pull(f"oci:{tmp_path / 'layout'}:v1", dest)
        assert result.kind == "view" and result.relocated_to == dest
        _runs_at(dest)
        assert _files_naming(dest, FORBIDDEN) == []
    finally:
        shutil.rmtree(parent)


def _store_with_placeholder(tree: str, placeholder: str) -> list[str]:
    """What ocikit 0.1's push did to the files: root → placeholder (same length), links made relative."""
    listed = []
    for folder, _, names in os.walk(tree):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                target = os.readlink(path)
                if target.startswith(REAL_ROOT + "/"):
                    os.unlink(path)
                    os.symlink(os.path.relpath(tree + target[len(REAL_ROOT):], folder), path)
                continue
            data = open(path, "rb").read()
            if REAL_ROOT.encode() in data:
                with open(path, "wb") as fh:
                    fh.write(data.replace(REAL_ROOT.encode(), placeholder.encode()))
                listed.append(os.path.relpath(path, tree))
    return sorted(listed)


def test_the_image_volume_example_mounts_the_view_where_it_was_pushed_for():
    text = open(os.path.join(os.path.dirname(__file__), "..", "examples", "kubernetes", "image-volume.yaml")).read()
    (command,) = re.findall(r"ocikit push-view [^\n]*", text)
    helped = subprocess.run([sys.executable, "-m", "ocikit_cli.main", "push-view", "--help"],
                            capture_output=True, text=True, check=True).stdout
    for option in re.findall(r"(--[\w-]+)", command):
        assert option in helped, option
    (pushed_for,) = re.findall(r"--mount-path (\S+)", command)
    assert re.search(r"volumes:\n\s+- name: view\n\s+image:\n\s+#[^\n]*\n\s+reference: \S+@sha256:", text)
    assert re.findall(r"\{ name: view, mountPath: (\S+) \}", text) == [pushed_for]
    assert re.findall(r'command: \["([^"]+)"', text)[0].startswith(pushed_for + "/bin/")


def _elf_header(machine: int, bits: int = 64, little: bool = True) -> bytes:
    order = "little" if little else "big"
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if little else 2, 1]) + bytes(9)
    return ident + (3).to_bytes(2, order) + machine.to_bytes(2, order) + bytes(44)


def test_architecture_comes_from_the_views_elf_headers(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_bytes(_elf_header(183))  # EM_AARCH64
    (tree / "bin" / "tool").chmod(0o755)
    (tree / "lib").mkdir()
    (tree / "lib" / "libbig.so.1").write_bytes(_elf_header(21, little=False))  # EM_PPC64, big-endian
    (tree / "share.txt").write_bytes(b"x" * 100)
    result = push_view(str(tree), f"oci:{tmp_path / 'layout'}:v1", cache_dir="", compat=False)
    # one vote each; ties go to the name sorted first (aarch64), i.e. not to the host
    assert (result.config["architecture"], result.config["variant"], result.config["os"]) == ("arm64", "v8", "linux")
    (tree / "bin" / "tool").write_bytes(b"#!/bin/sh\n" + b"#" * 60)
    (tree / "lib" / "libbig.so.1").unlink()
    plain = push_view(str(tree), f"oci:{tmp_path / 'layout'}:v2", cache_dir="", compat=False)
    assert (plain.config["architecture"], plain.config["os"]) == (Platform.host().architecture, "linux")  # no ELF


def test_single_layer_and_rootfs_pulls_keep_working(view_dir, pushed, mount_path, tmp_path):
    reference, _ = pushed
    # A short DEST: pytest's tmp_path grows with the run number, and binary strings have the
    # room of the build root only.
    rootfs = tempfile.mkdtemp(prefix="ocv-rootfs-", dir="/tmp")
    try:
        as_rootfs = ocikit.pull(reference, rootfs, policy=ocikit.PullPolicy(rootfs=True))
        assert as_rootfs.files == 169 and os.path.isfile(os.path.join(rootfs, "bin", "xz"))
    finally:
        shutil.rmtree(rootfs)
    layout = f"oci:{tmp_path / 'layout'}:single"
    single = push_view(view_dir, layout, root=REAL_ROOT, view_path=VIEW_PATH, layers="single",
                       cache_dir="", compat=False)
    assert single.view["relocation"]["mountPath"] == REAL_ROOT  # single: files as they are
    assert json.loads(open(tmp_path / "layout" / "blobs" / "sha256" / single.digest[7:]).read())[
        "config"]["mediaType"] == mt.OCI_CONFIG
    parent = tempfile.mkdtemp(prefix="ocv-single-", dir="/tmp")
    try:
        dest = os.path.join(parent, "view")
        ocikit.pull(layout, dest)
        _runs_at(dest)
    finally:
        shutil.rmtree(parent)


def test_relocated_text_changes_length_and_the_tar_stays_exact(tmp_path):
    """Text relocated to a shorter mount path gets shorter: headers promise the new sizes, and a
    file above the 4 MiB frame size is cut like any other; GNU tar reads it back exactly."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    root = str(tree)
    big = "".join(f"line {i}: {root}/lib/x{i}.so\n" for i in range(120_000)).encode()  # > 8 MiB
    assert len(big) > 2 * (4 << 20)
    (tree / "etc" / "big.conf").write_bytes(big)
    (tree / "etc" / "small.conf").write_bytes(f"prefix={root}\n".encode())
    os.link(tree / "etc" / "small.conf", tree / "etc" / "small-again.conf")
    layout = str(tmp_path / "layout")
    result = push_view(root, f"oci:{layout}:v1", mount_path="/m", cache_dir="", compat=False)
    assert result.view["relocation"]["files"] == ["etc/big.conf", "etc/small-again.conf", "etc/small.conf"]
    out = tmp_path / "out"
    extract_layers(layout, layout_manifest(layout, "v1"), str(out))
    assert (out / "etc" / "big.conf").read_bytes() == big.replace(root.encode(), b"/m")
    assert (out / "etc" / "small-again.conf").read_text() == "prefix=/m\n"
    tar_sizes = sum(layer.tar_size for layer in result.layers)
    assert result.view["totals"]["tarBytes"] == tar_sizes < sum(p.stat().st_size for p in (tree / "etc").iterdir())


def test_the_node_cache_publishes_it_relocated_or_as_stored(pushed, mount_path, tmp_path):
    reference, _ = pushed
    cache = ocikit.NodeCache(str(tmp_path / "cache"))
    entry = cache.ensure(reference)
    parent = tempfile.mkdtemp(prefix="ocv-pod-", dir="/tmp")
    try:
        pod = os.path.join(parent, "view")
        published = cache.publish(entry, pod, mode="copy", relocate_to=pod)
        assert published.relocated_to == pod
        _runs_at(pod)
    finally:
        shutil.rmtree(parent)
    kept = cache.publish(entry, str(tmp_path / "kept"), mode="copy")  # no relocate_to: as the image holds it
    assert kept.relocated_to == ""
    assert f"prefix={mount_path}\n" in (tmp_path / "kept" / "lib" / "pkgconfig" / "liblzma.pc").read_text()
