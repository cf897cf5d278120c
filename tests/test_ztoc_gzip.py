"""Gzip checkpoints: every span decodes, from its checkpoint alone, to what GNU gzip outputs there."""

import hashlib
import os
import subprocess

import pytest
from ztoc_helpers import SPAN, gnu_tar, gzip_file, make_tree, multi_member_gzip, require

from ocikit.errors import InvalidContentError
from ocikit.ztoc.build import build_ztoc
from ocikit.ztoc.gzip_index import GzipSpans


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    work = tmp_path_factory.mktemp("gz")
    root = str(work / "tree")
    os.mkdir(root)
    make_tree(root)
    tar = gnu_tar(root, str(work / "layer.tar"))
    require("pigz")
    return {
        "tar": tar,
        "gzip": gzip_file(tar, str(work / "layer.gz")),
        "gzip-1": gzip_file(tar, str(work / "layer1.gz"), level=1),
        "pigz": gzip_file(tar, str(work / "layer.pigz.gz"), tool="pigz"),
        "members": multi_member_gzip(tar, str(work / "layer.multi.gz"), parts=4),
    }


def gunzip(path: str) -> bytes:
    return subprocess.run(["gzip", "-dc", path], capture_output=True, check=True).stdout


@pytest.mark.parametrize("kind", ["gzip", "gzip-1", "pigz", "members"])
def test_each_span_decodes_from_its_checkpoint(layers, kind):
    blob = open(layers[kind], "rb").read()
    plain = gunzip(layers[kind])  # GNU gzip is the oracle for the uncompressed stream
    with open(layers[kind], "rb") as fh:
        ztoc = build_ztoc(fh, SPAN)
    spans = ztoc.spans()
    assert isinstance(spans, GzipSpans) and spans.span_count == len(ztoc.span_digests) > 10
    starts = [spans.uncompressed_start(i) for i in range(spans.span_count)] + [len(plain)]
    for i in range(spans.span_count):
        a, b = spans.compressed_range(i)
        assert ztoc.span_digests[i] == "sha256:" + hashlib.sha256(blob[a:b]).hexdigest()
        if i + 1 < spans.span_count:
            assert starts[i + 1] - starts[i] > SPAN  # SOCI's rule: strictly more than the span size
        window = spans.window(i)
        expected_window = (bytes(32768) + plain[: starts[i]])[-32768:]
        assert window == expected_window
        decoder = spans.decoder(i)
        out = b"".join(decoder.feed(blob[a:b]))
        decoder.close()
        assert out == plain[starts[i] : starts[i + 1]], f"span {i}"


def test_multi_member_checkpoints_reach_every_member(layers):
    with open(layers["members"], "rb") as fh:
        ztoc = build_ztoc(fh, SPAN)
    total = len(gunzip(layers["members"]))
    spans = ztoc.spans()
    last_start = spans.uncompressed_start(spans.span_count - 1)
    assert last_start > total * 3 // 4  # checkpoints continue into the last of the four members
    assert ztoc.compressed_archive_size == os.path.getsize(layers["members"])


def test_one_pass_toc_matches_the_uncompressed_tar(layers):
    with open(layers["gzip"], "rb") as fh:
        from_gzip = build_ztoc(fh, SPAN)
    with open(layers["tar"], "rb") as fh:
        from_tar = build_ztoc(fh, SPAN)
    assert from_tar.compression == "uncompressed" and from_gzip.compression == "gzip"
    def shape(ztoc):
        return [(e.name, e.offset, e.size) for e in ztoc.entries]

    assert shape(from_gzip) == shape(from_tar)
    assert from_gzip.uncompressed_archive_size == from_tar.uncompressed_archive_size


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_gzip_is_a_clear_error(layers, damage):
    blob = bytearray(open(layers["gzip"], "rb").read())
    if damage == "flip":
        for i in range(len(blob) // 2, len(blob) // 2 + 64):
            blob[i] ^= 0x55
    else:
        del blob[len(blob) // 2 :]
    import io

    with pytest.raises(InvalidContentError):
        build_ztoc(io.BytesIO(bytes(blob)), SPAN)


def test_gzip_of_something_that_is_not_tar(tmp_path):
    import gzip
    import io

    with pytest.raises(InvalidContentError, match="not a tar"):
        build_ztoc(io.BytesIO(gzip.compress(os.urandom(10000))), SPAN)


def test_builds_from_a_pipe_without_seeking_or_temporary_files(layers):
    proc = subprocess.Popen(["cat", layers["pigz"]], stdout=subprocess.PIPE)
    try:
        from_pipe = build_ztoc(proc.stdout, SPAN)  # a pipe cannot seek: one pass is the only option
    finally:
        proc.stdout.close()
        proc.wait()
    with open(layers["pigz"], "rb") as fh:
        from_file = build_ztoc(fh, SPAN)
    assert from_pipe.to_bytes() == from_file.to_bytes()
