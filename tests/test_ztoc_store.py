"""zTOCs in an OCI layout: SOCI index shape, skip rules, get-file over range reads, bad input."""

import json
import os

import pytest
from ztoc_helpers import (
    SPAN,
    gnu_tar,
    gzip_file,
    make_tree,
    multi_member_gzip,
    push_image,
    zstd_frames,
)

from ocikit.content.base import fetch_manifest, read_all
from ocikit.content.layout import LayoutStore
from ocikit.errors import DigestMismatchError, InvalidContentError, NotFoundError, UnsupportedError
from ocikit.spec import mediatypes as mt
from ocikit.ztoc.api import build_ztocs, get_file, list_ztocs, ztoc_info
from ocikit.ztoc.extract import fetch_file
from ocikit.ztoc.soci import load_ztoc


class CountingStore(LayoutStore):
    """The real layout store, recording every range read (the bytes fetched are the test's subject)."""

    def __init__(self, root):
        super().__init__(root)
        self.ranges = []

    def fetch_range(self, desc, offset, length):
        data = super().fetch_range(desc, offset, length)
        self.ranges.append((desc.digest, offset, len(data)))
        return data


@pytest.fixture(scope="module")
def tree_and_layers(tmp_path_factory):
    work = tmp_path_factory.mktemp("img")
    root = str(work / "tree")
    os.mkdir(root)
    make_tree(root)
    tar = gnu_tar(root, str(work / "layer.tar"))
    return root, {
        "gzip": (gzip_file(tar, str(work / "layer.gz")), mt.OCI_LAYER_GZIP),
        "members": (multi_member_gzip(tar, str(work / "layer.multi.gz")), mt.OCI_LAYER_GZIP),
        "tar": (tar, mt.OCI_LAYER_TAR),
        "zstd": (zstd_frames(tar, str(work / "layer.zst"))[0], mt.OCI_LAYER_ZSTD),
    }


@pytest.fixture
def image(tmp_path, tree_and_layers):
    """A one-layer gzip image in a fresh layout, indexed with 64 KiB spans."""
    root, layers = tree_and_layers
    ref = f"oci:{tmp_path / 'layout'}:v1"
    store = CountingStore(str(tmp_path / "layout"))
    manifest = push_image(store, [layers["gzip"]])
    build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    return ref, store, manifest, root


def test_soci_index_manifest_shape(image):
    ref, store, manifest, _ = image
    (referrer,) = store.referrers(manifest)
    index = fetch_manifest(store, referrer)
    doc = json.loads(index.raw)
    assert "artifactType" not in doc  # SOCI v1: consumers key on config.mediaType
    assert doc["config"] == {"mediaType": mt.SOCI_INDEX_V1, "digest": mt.EMPTY_DIGEST, "size": 2}
    assert doc["subject"]["digest"] == manifest.digest
    (ztoc_desc,) = index.layers
    layer = fetch_manifest(store, manifest).layers[0]
    assert ztoc_desc.media_type == "application/octet-stream"
    assert ztoc_desc.annotations[mt.SOCI_ANNOTATION_LAYER_DIGEST] == layer.digest
    assert ztoc_desc.annotations[mt.SOCI_ANNOTATION_LAYER_MEDIATYPE] == layer.media_type
    assert ztoc_desc.annotations[mt.SOCI_ANNOTATION_SPAN_SIZE] == str(SPAN)
    assert doc["annotations"][mt.SOCI_ANNOTATION_BUILD_TOOL].startswith("ocikit")
    assert read_all(store, index.config) == b"{}"
    ztoc = load_ztoc(store, ztoc_desc)
    assert ztoc.compressed_archive_size == layer.size and ztoc.version == "0.9"


def test_existing_ztocs_are_skipped_unless_forced(image):
    ref, store, manifest, _ = image
    again = build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    assert [o.status for o in again.layers] == ["exists"] and again.indexes == []
    forced = build_ztocs(ref, span_size=SPAN, min_layer_size=0, force=True)
    assert [o.status for o in forced.layers] == ["built"] and len(forced.indexes) == 1
    other_span = build_ztocs(ref, span_size=2 * SPAN, min_layer_size=0)
    assert [o.status for o in other_span.layers] == ["built"]
    records = list_ztocs(ref)
    assert [r.span_size for r in records] == [2 * SPAN]  # the rebuild with another span replaced the index


def test_min_layer_size_compares_the_compressed_size(tmp_path, tree_and_layers):
    _, layers = tree_and_layers
    store = LayoutStore(str(tmp_path / "l"))
    push_image(store, [layers["gzip"]])
    size = os.path.getsize(layers["gzip"][0])
    report = build_ztocs(f"oci:{tmp_path / 'l'}:v1", span_size=SPAN, min_layer_size=size + 1)
    assert report.layers[0].status == "skipped" and "minimum layer size" in report.layers[0].reason
    assert report.indexes == [] and list_ztocs(f"oci:{tmp_path / 'l'}:v1") == []
    report = build_ztocs(f"oci:{tmp_path / 'l'}:v1", span_size=SPAN, min_layer_size=size)
    assert report.layers[0].status == "built"


def test_get_file_fetches_only_the_covering_spans(image, tmp_path):
    ref, store, manifest, root = image
    out = str(tmp_path / "tool")
    result = fetch_file(store, manifest, "bin/tool", out)  # the store-level call, on the counting store
    with open(os.path.join(root, "bin/tool"), "rb") as fh:
        assert open(out, "rb").read() == fh.read()
    assert os.stat(out).st_mode & 0o7777 == 0o755
    layer = fetch_manifest(store, manifest).layers[0]
    ztoc = load_ztoc(store, list_ztocs(ref)[0].ztoc)
    spans = ztoc.spans()
    entry = next(e for e in ztoc.entries if e.name == "./bin/tool")
    covering = range(spans.span_of(entry.offset), spans.span_of(entry.end - 1) + 1)
    budget = sum(spans.compressed_range(i)[1] - spans.compressed_range(i)[0] for i in covering)
    fetched = sum(n for digest, _, n in store.ranges if digest == layer.digest)
    assert fetched <= budget and result.index_bytes == list_ztocs(ref)[0].ztoc.size
    assert fetched + result.index_bytes == result.bytes_fetched  # range reads and the zTOC blob, nothing hidden
    assert fetched < layer.size / 3
    assert result.spans == list(covering)


def test_symlinks_and_hard_links_are_followed_inside_the_image(image, tmp_path):
    ref, _, _, root = image
    lib = get_file(ref, "/lib64/libbig.so", str(tmp_path / "lib"))  # dir symlink, then file symlink
    assert lib.resolved == "lib/libbig.so.1"
    assert open(tmp_path / "lib", "rb").read() == open(os.path.join(root, "lib/libbig.so.1"), "rb").read()
    hard = get_file(ref, "./share/doc/README", str(tmp_path / "readme"))  # GNU tar stores the 2nd name as link
    assert open(tmp_path / "readme").read() == "read me\n" * 100 and hard.size == 800
    secret = get_file(ref, "etc/secret.conf", str(tmp_path / "secret"))
    assert secret.mode == 0o600 and os.stat(tmp_path / "secret").st_mode & 0o777 == 0o600


def test_path_not_in_the_toc(image, tmp_path):
    ref = image[0]
    with pytest.raises(NotFoundError):
        get_file(ref, "bin/nope", str(tmp_path / "nope"))
    with pytest.raises(UnsupportedError, match="dir"):
        get_file(ref, "bin", str(tmp_path / "nope"))
    assert os.listdir(tmp_path) == ["layout"]  # neither output nor temporary file


def test_span_digest_mismatch_leaves_no_file(image, tmp_path):
    ref, store, manifest, _ = image
    layer = fetch_manifest(store, manifest).layers[0]
    ztoc = load_ztoc(store, list_ztocs(ref)[0].ztoc)
    entry = next(e for e in ztoc.entries if e.name == "./lib/libbig.so.1")
    spans = ztoc.spans()
    a, b = spans.compressed_range(spans.span_of(entry.offset + entry.size // 2))
    path = store.blob_path(layer.digest)
    blob = bytearray(open(path, "rb").read())
    blob[(a + b) // 2] ^= 0x01  # one bit flipped in the middle of a span
    os.chmod(path, 0o644)
    with open(path, "wb") as fh:
        fh.write(blob)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DigestMismatchError, match="span"):
        get_file(ref, "lib/libbig.so.1", str(out_dir / "lib"))
    assert os.listdir(out_dir) == []
    get_file(ref, "bin/tool", str(out_dir / "tool"))  # spans that were not touched still verify


def test_corrupted_ztoc_blob_is_a_clear_error(tmp_path, tree_and_layers):
    _, layers = tree_and_layers
    store = LayoutStore(str(tmp_path / "l"))
    manifest = push_image(store, [layers["gzip"]])
    layer = fetch_manifest(store, manifest).layers[0]
    from ocikit.content.base import push_bytes
    from ocikit.ztoc.soci import attach_index

    garbage = push_bytes(store, "application/octet-stream", os.urandom(5000))  # a valid blob, not a zTOC
    desc = garbage.with_annotations(**{mt.SOCI_ANNOTATION_LAYER_DIGEST: layer.digest,
                                       mt.SOCI_ANNOTATION_SPAN_SIZE: str(SPAN)})
    attach_index(store, manifest, [desc], "test")
    with pytest.raises(InvalidContentError):
        get_file(f"oci:{tmp_path / 'l'}:v1", "bin/tool", str(tmp_path / "tool"))
    assert not os.path.exists(tmp_path / "tool")
    bad = tmp_path / "bad.ztoc"
    bad.write_bytes(os.urandom(300))
    with pytest.raises(InvalidContentError):
        ztoc_info(str(bad))


@pytest.mark.parametrize("kind", ["members", "tar", "zstd"])
def test_other_layer_forms(tmp_path, tree_and_layers, kind):
    root, layers = tree_and_layers
    ref = f"oci:{tmp_path / 'l'}:v1"
    store = LayoutStore(str(tmp_path / "l"))
    push_image(store, [layers[kind]])
    report = build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    assert report.layers[0].status == "built"
    expected = {"members": "gzip", "tar": "uncompressed", "zstd": "zstd"}[kind]
    assert report.layers[0].compression == expected
    (record,) = list_ztocs(ref)
    assert record.kind == ("zstd" if kind == "zstd" else "soci")
    for name in ("lib/libbig.so.1", "bin/tool"):
        result = get_file(ref, name, str(tmp_path / "f"))
        assert open(tmp_path / "f", "rb").read() == open(os.path.join(root, name), "rb").read()
        assert result.bytes_fetched - result.index_bytes < os.path.getsize(layers[kind][0])
    (info,) = ztoc_info(ref)
    assert info.compression == expected


def test_layer_that_is_not_tar_is_reported_not_indexed(tmp_path):
    import gzip

    blob = tmp_path / "blob.gz"
    blob.write_bytes(gzip.compress(os.urandom(50_000)))
    store = LayoutStore(str(tmp_path / "l"))
    push_image(store, [(str(blob), mt.OCI_LAYER_GZIP)])
    report = build_ztocs(f"oci:{tmp_path / 'l'}:v1", span_size=SPAN, min_layer_size=0)
    assert report.layers[0].status == "skipped" and "not a tar" in report.layers[0].reason
    assert report.indexes == []


def test_info_does_not_count_the_next_span_for_a_file_ending_on_a_boundary():
    import io

    from ztoc_helpers import tar_with

    from ocikit.ztoc.api import describe_ztoc
    from ocikit.ztoc.build import build_ztoc

    data = tar_with([("a", b"x" * 3584, {}), ("b", b"y" * 5000, {})])  # a's data is bytes 512..4096
    info = describe_ztoc(build_ztoc(io.BytesIO(data), 4096))
    a, b = info.files
    assert (a["offset"], a["size"]) == (512, 3584)
    assert (a["start_span"], a["end_span"]) == (0, 0)  # soci ztoc info would say end span 1
    assert (b["start_span"], b["end_span"]) == (1, 2)
