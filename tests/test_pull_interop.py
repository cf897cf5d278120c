"""What other tools push, ocikit pulls: oras-py directories and files, skopeo-copied images."""

from __future__ import annotations

import os
import subprocess

import pytest
from environment import require_binary
from pull_support import TarBuilder, push_layers, tree_snapshot

import ocikit
from ocikit.digest import digest_bytes
from ocikit.spec import mediatypes as mt
from ocikit.spec.manifest import canonical_json


def test_pull_what_oras_py_pushed(tmp_path, registry, monkeypatch):
    oras_client = pytest.importorskip("oras.client")
    work = tmp_path / "work"
    (work / "dataset" / "nested").mkdir(parents=True)
    (work / "dataset" / "a.csv").write_text("1,2\n")
    (work / "dataset" / "nested" / "b.bin").write_bytes(os.urandom(3000))
    (work / "README.txt").write_text("read me\n")
    monkeypatch.chdir(work)  # oras-py only pushes paths below the working directory
    client = oras_client.OrasClient(hostname=registry, insecure=True)
    client.push(files=["dataset", "README.txt"], target=f"{registry}/interop/oras-py:v1")
    dest = tmp_path / "dest"
    result = ocikit.pull(f"{registry}/interop/oras-py:v1", str(dest))
    assert result.kind == "oras"
    pulled = {k: v for k, v in tree_snapshot(str(dest)).items() if not k.startswith(".ocikit")}
    source = tree_snapshot(str(work))
    assert {k: v[:3] for k, v in pulled.items() if v[0] == "file"} == {k: v[:3] for k, v in source.items() if v[0] == "file"}
    assert sorted(pulled) == sorted(source)


def test_oras_py_pulls_what_ocikit_pulls_too(tmp_path, registry):
    """Both clients agree on an ORAS directory artifact made the Go-oras way (unpack annotation)."""
    oras_client = pytest.importorskip("oras.client")
    tar = TarBuilder().dir("tree").file("tree/x", b"x").file("tree/y/z", b"z").bytes()
    layout = str(tmp_path / "layout")
    push_layers(layout, [(tar, "gzip", {mt.ANNOTATION_TITLE: "tree", mt.ORAS_ANNOTATION_UNPACK: "true"})])
    ocikit.copy(f"oci:{layout}:v1", f"{registry}/interop/go-style:v1")
    ocikit.pull(f"{registry}/interop/go-style:v1", str(tmp_path / "ours"))
    client = oras_client.OrasClient(hostname=registry, insecure=True)
    client.pull(target=f"{registry}/interop/go-style:v1", outdir=str(tmp_path / "theirs"))
    ours = {k: v[:3] for k, v in tree_snapshot(str(tmp_path / "ours")).items() if not k.startswith(".ocikit")}
    theirs = {k: v[:3] for k, v in tree_snapshot(str(tmp_path / "theirs")).items()}
    assert {k: v[2] for k, v in ours.items() if v[0] == "file"} == {k: v[2] for k, v in theirs.items() if v[0] == "file"}


@pytest.fixture
def skopeo():
    require_binary("skopeo")

    def run(*args: str) -> str:
        result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def _image_layout(path: str) -> None:
    lower = TarBuilder().dir("etc").file("etc/os-release", b"ID=test\n").file("etc/stale", b"old").file("usr/bin/app", b"v1", 0o755).bytes()
    upper = TarBuilder().file("etc/.wh.stale", b"").file("usr/bin/app", b"v2", 0o755).symlink("usr/bin/alias", "/usr/bin/app").bytes()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest_bytes(lower), digest_bytes(upper)]},
    }
    push_layers(path, [(lower, "gzip", {}), (upper, "gzip", {})], config=(mt.OCI_CONFIG, canonical_json(config)), annotate_diff_id=False)


@pytest.mark.parametrize("how", [["--format", "oci", "--dest-compress-format", "zstd"], ["--format", "v2s2"]])
def test_pull_images_skopeo_copied(tmp_path, registry, skopeo, how):
    layout = str(tmp_path / "layout")
    _image_layout(layout)
    name = f"{registry}/interop/skopeo-{how[1]}:v1"
    skopeo("copy", "--dest-tls-verify=false", *how, f"oci:{layout}:v1", f"docker://{name}")
    manifest = ocikit.get_manifest(name)
    if how[1] == "oci":
        assert {layer.media_type for layer in manifest.layers} == {mt.OCI_LAYER_ZSTD}
    else:
        assert manifest.media_type == mt.DOCKER_MANIFEST
    dest = tmp_path / "rootfs"
    result = ocikit.pull(name, str(dest))
    assert result.kind == "image" and result.layers == 2
    assert sorted(os.listdir(dest / "etc")) == ["os-release"]
    assert (dest / "usr/bin/app").read_bytes() == b"v2"
    assert os.readlink(dest / "usr/bin/alias") == "/usr/bin/app"  # rootfs-relative, kept as is
