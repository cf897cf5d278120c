"""Collecting layer lists from OCI layouts: tags, digests, the cache, and clear errors."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from similarity_images import make_layer, push_image, push_index

import ocikit
from ocikit.content.base import push_bytes, push_manifest
from ocikit.content.layout import LayoutStore
from ocikit.errors import InvalidContentError, InvalidReferenceError, NotFoundError, UnsupportedError
from ocikit.similarity.cache import ManifestCache, default_cache_dir
from ocikit.similarity.collect import collect_images, read_reference_file
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor, Platform
from ocikit.spec.manifest import build_index, build_manifest


@pytest.fixture
def layout(tmp_path) -> tuple[str, LayoutStore, dict]:
    root = str(tmp_path / "layout")
    store = LayoutStore(root)
    layers = {name: make_layer(store, name) for name in ("base", "x", "y")}
    manifests = {
        "one": push_image(store, [layers["base"], layers["x"]], tag="one"),
        "two": push_image(store, [layers["base"], layers["y"]], tag="two"),
    }
    return root, store, {"layers": layers, "manifests": manifests}


def test_tags_digests_and_repository_expansion(layout) -> None:
    root, _, built = layout
    by_tag = collect_images([f"oci:{root}:one", f"oci:{root}:two"])
    assert [image.digest for image in by_tag] == [built["manifests"]["one"].digest, built["manifests"]["two"].digest]
    assert by_tag[0].layers == (built["layers"]["base"].desc.digest, built["layers"]["x"].desc.digest)
    assert by_tag[0].sizes == (built["layers"]["base"].desc.size, built["layers"]["x"].desc.size)
    pinned = collect_images([f"oci:{root}@{built['manifests']['two'].digest}"])
    assert pinned[0].layers == by_tag[1].layers
    expanded = collect_images(repositories=[f"oci:{root}"])
    assert [image.name for image in expanded] == [f"oci:{root}:one", f"oci:{root}:two"]


def test_duplicates_are_compared_once(layout) -> None:
    root, _, _ = layout
    images = collect_images([f"oci:{root}:one", f"oci:{root}:one"], repositories=[f"oci:{root}"])
    assert [image.name for image in images] == [f"oci:{root}:one", f"oci:{root}:two"]


def test_diff_ids_come_from_the_config(layout) -> None:
    root, _, built = layout
    image = collect_images([f"oci:{root}:one"], by="diff-id")[0]
    assert image.diff_ids == (built["layers"]["base"].diff_id, built["layers"]["x"].diff_id)


def test_reference_file(tmp_path, layout) -> None:
    root, _, _ = layout
    path = tmp_path / "refs.txt"
    path.write_text(f"# my images\noci:{root}:one\n\n   oci:{root}:two  \n")
    assert read_reference_file(str(path)) == [f"oci:{root}:one", f"oci:{root}:two"]
    with pytest.raises(ocikit.OcikitError, match="cannot read reference list"):
        read_reference_file(str(tmp_path / "missing.txt"))


def test_errors_name_the_image(layout) -> None:
    root, _, _ = layout
    with pytest.raises(NotFoundError, match=r":nope.*not found"):
        collect_images([f"oci:{root}:one", f"oci:{root}:nope"])
    with pytest.raises(InvalidReferenceError, match="without tag"):
        collect_images(repositories=[f"oci:{root}:one"])
    with pytest.raises(NotFoundError, match="no images"):
        collect_images([])
    with pytest.raises(UnsupportedError, match="unknown similarity mode"):
        collect_images([f"oci:{root}:one"], by="history")


def test_artifact_without_diff_ids_is_refused_in_diff_id_mode(layout) -> None:
    root, store, _ = layout
    empty = push_bytes(store, mt.OCI_EMPTY, mt.EMPTY_JSON)
    layer = push_bytes(store, mt.OCI_LAYER_TAR, b"payload")
    push_manifest(store, build_manifest([layer], config=empty, artifact_type="application/x.view"), tag="artifact")
    assert collect_images([f"oci:{root}:artifact"])[0].layers == (layer.digest,)  # fine by digest
    with pytest.raises(InvalidContentError, match="no rootfs.diff_ids.*use by digest"):
        collect_images([f"oci:{root}:artifact"], by="diff-id")


def test_config_with_wrong_number_of_diff_ids(layout) -> None:
    root, store, built = layout
    config = push_bytes(store, mt.OCI_CONFIG, json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode())
    raw = build_manifest([built["layers"]["x"].desc], config=config)
    push_manifest(store, raw, tag="short")
    with pytest.raises(InvalidContentError, match="0 diff_ids for 1 layers"):
        collect_images([f"oci:{root}:short"], by="diff-id")


def test_index_platform_choice_and_nested_index(layout) -> None:
    root, store, built = layout
    index = push_index(
        store, {"linux/amd64": built["manifests"]["one"], "linux/arm64": built["manifests"]["two"]}, "multi"
    )
    image = collect_images([f"oci:{root}:multi"], platform="linux/arm64")[0]
    assert (image.digest, image.index_digest, image.platform) == (
        built["manifests"]["two"].digest,
        index.digest,
        "linux/arm64",
    )
    entry = Descriptor(index.media_type, index.digest, index.size, platform=Platform.parse("linux/amd64"))
    push_manifest(store, build_index([entry]), tag="nested")
    with pytest.raises(UnsupportedError, match="nested index"):
        collect_images([f"oci:{root}:nested"], platform="linux/amd64")


def test_layouts_are_not_copied_into_the_cache(layout, tmp_path) -> None:
    root, _, _ = layout
    cache = tmp_path / "cache"
    collect_images([f"oci:{root}:one"], cache_dir=str(cache))
    assert not cache.exists()


def test_cache_verifies_what_it_returns(tmp_path) -> None:
    cache = ManifestCache(str(tmp_path))
    raw = b'{"schemaVersion":2}'
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert cache.get(digest) is None
    cache.put(digest, raw)
    assert cache.get(digest) == raw
    path = tmp_path / "sha256" / digest[7:]
    path.write_bytes(b'{"schemaVersion":3}')  # tampered or torn: never trusted, dropped
    assert cache.get(digest) is None
    assert not path.exists()
    assert os.listdir(tmp_path / "sha256") == []  # no temporaries left


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == os.path.join(str(tmp_path), "ocikit", "manifests")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "ocikit", "manifests")


def test_ocikit_similarity_is_callable_whichever_import_came_first(layout) -> None:
    import subprocess
    import sys

    root, _, _ = layout
    # Importing a submodule first binds the *package* to ocikit.similarity; it must still be callable.
    code = (
        "import ocikit.similarity.plot, ocikit\n"
        f"result = ocikit.similarity(['oci:{root}:one', 'oci:{root}:two'])\n"
        "print(type(result).__name__, result.matrix.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "SimilarityResult (2, 2)"


def test_progress_counts_manifests(layout) -> None:
    from ocikit.progress import CountingProgress

    root, _, _ = layout
    progress = CountingProgress()
    collect_images(repositories=[f"oci:{root}"], progress=progress)
    assert progress.started == {"similarity:manifests": ("manifests", 2)}
    assert progress.done == {"similarity:manifests": 2}
