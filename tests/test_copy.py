"""ocikit copy between registries and OCI layouts (library and CLI)."""

import json
import os
import subprocess
import sys

import pytest

import ocikit
from ocikit.content.base import fetch_manifest, push_manifest
from ocikit.content.layout import LayoutStore
from ocikit.content.memory import MemoryStore
from ocikit.content.open import open_store
from ocikit.errors import VerificationError
from ocikit.graph.attach import attach
from ocikit.graph.copy import copy_graph
from ocikit.spec.descriptor import Platform
from ocikit.spec.manifest import build_index
from ocikit.testing.images import make_image

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")


def _layers(n=3, size=200_000):
    return [{f"layer{i}/data.bin": os.urandom(size), f"layer{i}/note.txt": b"hello %d" % i} for i in range(n)]


def _cli(*args):
    result = subprocess.run([OCIKIT, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_registry_to_layout_to_registry_keeps_digests(registry, tmp_path):
    src, _ = open_store(f"{registry}/copy/src")
    manifest = make_image(src, _layers(), tag="v1")
    layout = f"oci:{tmp_path / 'layout'}:v1"
    first = _cli("copy", "--json", f"{registry}/copy/src:v1", layout)
    assert first["digest"] == manifest.digest and first["blobsCopied"] == 4  # 3 layers + config
    back = _cli("copy", "--json", layout, f"{registry}/copy/back:v2")
    assert back["digest"] == manifest.digest
    assert _cli("resolve", "--json", f"{registry}/copy/back:v2")["digest"] == manifest.digest
    original = fetch_manifest(src, manifest).raw
    returned = fetch_manifest(open_store(f"{registry}/copy/back")[0], "v2").raw
    assert returned == original


def test_second_copy_transfers_nothing(registry, tmp_path):
    src, _ = open_store(f"{registry}/copy/again")
    make_image(src, _layers(2), tag="v1")
    dst = f"oci:{tmp_path / 'again'}:v1"
    ocikit.copy(f"{registry}/copy/again:v1", dst)
    result = ocikit.copy(f"{registry}/copy/again:v1", dst)
    assert result.blobs_copied == 0 and result.bytes_copied == 0


def test_same_registry_copy_mounts_blobs(registry):
    src, _ = open_store(f"{registry}/copy/mount-src")
    make_image(src, _layers(2), tag="v1")
    result = ocikit.copy(f"{registry}/copy/mount-src:v1", f"{registry}/copy/mount-dst:v1")
    assert result.blobs_mounted == 3 and result.blobs_copied == 0


def test_copy_with_referrers_to_layout_and_back(registry, tmp_path):
    src, _ = open_store(f"{registry}/copy/refs")
    manifest = make_image(src, _layers(1), tag="v1")
    sig = attach(src, manifest, "application/vnd.example.sig", annotations={"k": "v"})
    note = attach(src, sig, "application/vnd.example.note")
    layout = f"oci:{tmp_path / 'refs'}:v1"
    result = ocikit.copy(f"{registry}/copy/refs:v1", layout, referrers=True)
    assert set(result.referrers) == {sig.digest, note.digest}
    _, tree = ocikit.discover(layout)
    assert tree[0].descriptor.digest == sig.digest and tree[0].children[0].descriptor.digest == note.digest
    ocikit.copy(layout, f"{registry}/copy/refs-back:v1", referrers=True)
    _, tree = ocikit.discover(f"{registry}/copy/refs-back:v1")
    assert tree[0].descriptor.annotations["k"] == "v"
    assert tree[0].children[0].descriptor.digest == note.digest


def test_multi_platform_index_copies_every_platform(tmp_path, registry):
    src = LayoutStore(str(tmp_path / "multi"))
    amd = make_image(src, _layers(1), architecture="amd64")
    arm = make_image(src, _layers(1), architecture="arm64")
    entries = [amd.replace(platform=Platform("linux", "amd64")), arm.replace(platform=Platform("linux", "arm64"))]
    index = push_manifest(src, build_index(entries), tag="multi")
    result = ocikit.copy(f"oci:{tmp_path / 'multi'}:multi", f"{registry}/copy/multi:multi")
    assert result.root.digest == index.digest and result.manifests == 3
    arm_only = ocikit.get_manifest(f"{registry}/copy/multi:multi", platform="linux/arm64")
    assert arm_only.digest == arm.digest


def test_copy_stops_on_a_corrupt_source_blob(tmp_path):
    src = LayoutStore(str(tmp_path / "corrupt"))
    manifest = make_image(src, _layers(1))
    layer = fetch_manifest(src, manifest).layers[0]
    with open(src.blob_path(layer.digest), "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00corrupted\x00")
    dst = MemoryStore()
    with pytest.raises(VerificationError):
        copy_graph(src, dst, manifest)
    assert not dst.exists(layer) and not dst.exists(manifest)
