"""push_view against a real docker-registry 2.8: repushes, sharing, and oras-py pulling single mode."""

import os
import time

import pytest
from pushview_support import (
    REAL_ROOT,
    VIEW_PATH,
    make_other_environment,
    resolved_link,
    tree_listing,
    unpack_fixture,
)

from ocikit.content.base import fetch_manifest
from ocikit.content.open import open_store
from ocikit.push.api import push_view
from ocikit.spec import mediatypes as mt

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def view_dir(tmp_path_factory):
    view = unpack_fixture(str(tmp_path_factory.mktemp("regview")))
    time.sleep(2.2)  # past the cache's racy window (see test_pushview_push.py)
    return view


def push_fixture(view_dir, reference, **kwargs):
    return push_view(view_dir, reference, root=REAL_ROOT, view_path=VIEW_PATH, **kwargs)


def test_push_repush_and_share_between_environments(registry, view_dir, tmp_path):
    cache = str(tmp_path / "cache")
    first = push_fixture(view_dir, f"{registry}/views/spack:a", cache_dir=cache)
    store, _ = open_store(f"{registry}/views/spack")
    manifest = fetch_manifest(store, "a")
    assert manifest.digest == first.digest and manifest.artifact_type == mt.OCIKIT_VIEW_ARTIFACT
    assert [layer.title for layer in manifest.layers][:5] == [
        "bzip2-1.0.8-vlb22pw.tar.zst",
        "gcc-runtime-12.2.0-ho4btyq.tar.zst",
        "xz-5.4.1-5dutzbx.tar.zst",
        "zlib-1.2.13-n6pnftv.tar.zst",
        "zstd-1.5.4-s7jxyn3.tar.zst",
    ]
    assert all(store.exists(layer) for layer in manifest.layers)

    again = push_fixture(view_dir, f"{registry}/views/spack:a", cache_dir=cache)
    assert again.digest == first.digest and again.uploaded_bytes == 0

    other = make_other_environment(view_dir, str(tmp_path / "envb"), "b" * 32, drop="xz", touch=1_900_000_000)
    second = push_view(other, f"{registry}/views/spack:b", root="/opt/._view/" + "b" * 32, view_path=VIEW_PATH,
                       cache_dir=cache)
    first_digests = {layer.title: layer.descriptor.digest for layer in first.layers}
    for layer in second.layers[:-1]:
        assert layer.descriptor.digest == first_digests[layer.title] and layer.status == "exists"
    assert "xz-5.4.1-5dutzbx.tar.zst" not in {layer.title for layer in second.layers}
    assert second.uploaded_bytes == second.layers[-1].uploaded_bytes + second.config_descriptor.size
    assert fetch_manifest(store, "b").digest == second.digest


def test_a_fresh_machine_repush_uses_the_artifact_at_the_tag(registry, view_dir):
    first = push_fixture(view_dir, f"{registry}/views/fresh:v1", cache_dir="")
    again = push_fixture(view_dir, f"{registry}/views/fresh:v1", cache_dir="")
    assert again.digest == first.digest and again.uploaded_bytes == 0


def test_single_layer_is_pulled_by_the_oras_python_client(registry, view_dir, tmp_path):
    import oras.client

    result = push_fixture(view_dir, f"{registry}/views/single:v1", layers="single", cache_dir="")
    assert result.layers[0].descriptor.annotations[mt.ORAS_ANNOTATION_UNPACK] == "true"
    client = oras.client.OrasClient(hostname=registry, insecure=True)
    out = tmp_path / "pulled"
    client.pull(target=f"{registry}/views/single:v1", outdir=str(out))
    pulled = str(out / "view")
    original, copy = tree_listing(view_dir), tree_listing(pulled)
    assert sorted(original) == sorted(copy)
    for rel, entry in original.items():
        if entry[0] == "symlink":
            assert resolved_link(pulled, rel) == resolved_link(view_dir, rel), rel
        elif entry[0] == "file":
            assert copy[rel] == entry, rel  # content, mode and mtime as they were
    assert os.path.isdir(pulled)
