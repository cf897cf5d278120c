"""Interop with skopeo: it reads what ocikit writes (registry and layout), ocikit reads what it writes."""

import json
import os
import subprocess

import pytest
from environment import require_binary

import ocikit
from ocikit.content.base import fetch_manifest
from ocikit.content.layout import LayoutStore
from ocikit.content.open import open_store
from ocikit.testing.images import make_image


@pytest.fixture(autouse=True)
def _skopeo():
    require_binary("skopeo")


def skopeo(*args):
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _layers():
    return [{"etc/hello": b"hello\n"}, {"usr/bin/tool": os.urandom(50_000)}]


def test_skopeo_inspects_what_ocikit_pushed(registry):
    store, _ = open_store(f"{registry}/interop/pushed")
    manifest = make_image(store, _layers(), tag="v1")
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry}/interop/pushed:v1"))
    assert info["Digest"] == manifest.digest
    assert len(info["Layers"]) == 2
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry}/interop/pushed:v1")
    assert raw.encode() == fetch_manifest(store, manifest).raw


def test_skopeo_reads_and_copies_an_ocikit_layout(registry, tmp_path):
    layout = LayoutStore(str(tmp_path / "layout"))
    manifest = make_image(layout, _layers(), tag="v1")
    info = json.loads(skopeo("inspect", f"oci:{tmp_path / 'layout'}:v1"))
    assert info["Digest"] == manifest.digest
    skopeo(
        "copy", "--preserve-digests", "--dest-tls-verify=false",
        f"oci:{tmp_path / 'layout'}:v1", f"docker://{registry}/interop/from-layout:v1",
    )
    assert ocikit.resolve(f"{registry}/interop/from-layout:v1").digest == manifest.digest


def test_ocikit_reads_what_skopeo_wrote(registry, tmp_path):
    store, _ = open_store(f"{registry}/interop/source")
    manifest = make_image(store, _layers(), tag="v1")
    skopeo(
        "copy", "--preserve-digests", "--src-tls-verify=false",
        f"docker://{registry}/interop/source:v1", f"oci:{tmp_path / 'skopeo-layout'}:v1",
    )
    layout = f"oci:{tmp_path / 'skopeo-layout'}:v1"
    assert ocikit.resolve(layout).digest == manifest.digest
    result = ocikit.copy(layout, f"{registry}/interop/round-trip:v1")
    assert result.root.digest == manifest.digest
    assert ocikit.list_tags(f"oci:{tmp_path / 'skopeo-layout'}") == ["v1"]


def test_umoci_lists_and_unpacks_an_ocikit_layout(tmp_path):
    require_binary("umoci")
    layout_dir = tmp_path / "umoci-layout"
    layout = LayoutStore(str(layout_dir))
    make_image(layout, [{"etc/hello": b"hello from ocikit\n"}], tag="v1")
    listed = subprocess.run(["umoci", "ls", "--layout", str(layout_dir)], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["v1"]
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout_dir}:v1", str(bundle)],
        capture_output=True, text=True, check=True,
    )
    assert (bundle / "rootfs" / "etc" / "hello").read_bytes() == b"hello from ocikit\n"
