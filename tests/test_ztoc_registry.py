"""zTOCs against a real docker-registry 2.8: attach through the referrers tag fallback, get-file over HTTP ranges."""

import os

import pytest
from ztoc_helpers import SPAN, gnu_tar, gzip_file, make_tree, push_image, zstd_frames

from ocikit.content.base import fetch_manifest
from ocikit.content.open import open_store
from ocikit.registry.referrers import fallback_tag
from ocikit.spec import mediatypes as mt
from ocikit.ztoc.api import build_ztocs, get_file, list_ztocs
from ocikit.ztoc.extract import extract_matching, fetch_file
from ocikit.ztoc.soci import load_ztoc

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    work = tmp_path_factory.mktemp("reg")
    root = str(work / "tree")
    os.mkdir(root)
    make_tree(root)
    tar = gnu_tar(root, str(work / "layer.tar"))
    return root, [
        (gzip_file(tar, str(work / "layer.gz")), mt.OCI_LAYER_GZIP),
        (zstd_frames(tar, str(work / "layer.zst"))[0], mt.OCI_LAYER_ZSTD),
    ]


def test_build_attach_and_get_file_over_http(registry, layers, tmp_path):
    root, layer_files = layers
    ref = f"{registry}/ztoc/app:v1"
    store, _ = open_store(ref)
    manifest = push_image(store, layer_files)
    report = build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    assert [o.status for o in report.layers] == ["built", "built"] and len(report.indexes) == 2
    assert fallback_tag(manifest.digest) in store.tags()  # 2.8 has no referrers API: the tag schema
    records = list_ztocs(ref)
    assert sorted(r.kind for r in records) == ["soci", "zstd"]
    again = build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    assert [o.status for o in again.layers] == ["exists", "exists"]

    ranges = []
    real = store.fetch_range

    def counting(desc, offset, length):
        data = real(desc, offset, length)
        ranges.append(len(data))
        return data

    store.fetch_range = counting  # the real RegistryStore, observed
    out = tmp_path / "tool"
    result = fetch_file(store, manifest, "bin/tool", str(out))
    assert out.read_bytes() == open(os.path.join(root, "bin/tool"), "rb").read()
    top = fetch_manifest(store, manifest).layers[-1]  # the zstd layer wins (upper layer)
    ztoc = load_ztoc(store, next(r for r in records if r.layer_digest == top.digest).ztoc)
    spans = ztoc.spans()
    entry = next(e for e in ztoc.entries if e.name == "./bin/tool")
    covering = range(spans.span_of(entry.offset), spans.span_of(entry.end - 1) + 1)
    budget = sum(spans.compressed_range(i)[1] - spans.compressed_range(i)[0] for i in covering)
    assert sum(ranges) <= budget < top.size / 2
    assert sum(ranges) + result.index_bytes == result.bytes_fetched  # the zTOC blobs are counted too

    via_ref = get_file(ref, "/lib64/libbig.so", str(tmp_path / "lib"))
    assert via_ref.resolved == "lib/libbig.so.1"
    assert (tmp_path / "lib").read_bytes() == open(os.path.join(root, "lib/libbig.so.1"), "rb").read()

    report = extract_matching(store, manifest, ["many"], str(tmp_path / "dest"))
    assert report.files == 200 and len(os.listdir(tmp_path / "dest" / "many")) == 200
