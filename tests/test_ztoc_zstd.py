"""Seekable zstd: the seek table interoperates with the zstd CLI, frame tables agree, zTOCs validate."""

import io
import json
import os
import subprocess

import jsonschema
import pytest
from ztoc_helpers import SPAN, gnu_tar, make_tree, require, sha256, zstd_cli, zstd_frames

from ocikit.errors import InvalidContentError, UnsupportedError
from ocikit.formats.zstd_seekable import SeekTableWriter, parse_seek_table, read_seek_table, scan_frames
from ocikit.ztoc.build import build_ztoc
from ocikit.ztoc.ztoc import parse_ztoc

SCHEMA = os.path.join(os.path.dirname(__file__), "..", "schemas", "ocikit.ztoc.zstd.v1.schema.json")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("zst")
    root = str(work / "tree")
    os.mkdir(root)
    make_tree(root)
    tar = gnu_tar(root, str(work / "layer.tar"))
    framed, frames = zstd_frames(tar, str(work / "framed.zst"))
    return {"tar": tar, "framed": framed, "frames": frames, "dir": work}


def test_plain_zstd_decoders_skip_the_seek_table(work):
    require("zstd")
    out = subprocess.run(["zstd", "-dc", work["framed"]], capture_output=True, check=True).stdout
    assert out == open(work["tar"], "rb").read()


def test_seek_table_and_header_scan_agree_with_the_writer(work):
    blob = open(work["framed"], "rb").read()
    from_table = read_seek_table(lambda off, n: blob[off : off + n], len(blob))
    from_headers = scan_frames(io.BytesIO(blob))
    assert from_table == from_headers
    sizes = [len(f) for f in work["frames"]]  # the compressor's own frame lengths are the oracle
    assert [f.compressed_size for f in from_table] == sizes
    assert [f.compressed_offset for f in from_table] == [sum(sizes[:i]) for i in range(len(sizes))]
    assert from_table[-1].uncompressed_offset + from_table[-1].uncompressed_size == os.path.getsize(work["tar"])


def test_no_seek_table_means_none(work):
    blob = b"".join(work["frames"])
    assert read_seek_table(lambda off, n: blob[off : off + n], len(blob)) is None


def test_seek_table_writer_limits():
    writer = SeekTableWriter()
    with pytest.raises(ValueError):
        writer.add_frame(10, 0x40000001)
    with pytest.raises(ValueError):
        writer.add_frame(10, 10, checksum=5)  # checksums off: none may be given
    checked = SeekTableWriter(checksums=True)
    checked.add_frame(10, 20, checksum=0xDEADBEEF)
    assert parse_seek_table(checked.to_bytes()) == [(10, 20)]


def test_ztoc_of_a_framed_layer(work):
    with open(work["framed"], "rb") as fh:
        ztoc = build_ztoc(fh, SPAN)
    assert ztoc.compression == "zstd" and len(ztoc.frames) == len(work["frames"])
    assert ztoc.span_digests == [sha256(f) for f in work["frames"]]
    with open(work["tar"], "rb") as fh:
        plain = build_ztoc(fh, SPAN)
    assert [(e.name, e.offset, e.size) for e in ztoc.entries] == [(e.name, e.offset, e.size) for e in plain.entries]
    document = json.loads(ztoc.to_bytes())
    with open(SCHEMA) as fh:
        jsonschema.validate(document, json.load(fh))
    again = parse_ztoc(ztoc.to_bytes())
    assert again.frames == ztoc.frames and again.entries == ztoc.entries


def test_each_frame_decodes_alone(work):
    blob = open(work["framed"], "rb").read()
    plain = open(work["tar"], "rb").read()
    with open(work["framed"], "rb") as fh:
        spans = build_ztoc(fh, SPAN).spans()
    for i in (0, spans.span_count // 2, spans.span_count - 1):
        a, b = spans.compressed_range(i)
        start = spans.uncompressed_start(i)
        out = b"".join(spans.decoder(i).feed(blob[a:b]))
        assert out == plain[start : start + len(out)] and out


def test_single_frame_layer_is_not_seekable(work):
    single = zstd_cli(work["tar"], str(work["dir"] / "single.zst"))
    with open(single, "rb") as fh, pytest.raises(UnsupportedError, match="not seekable"):
        build_ztoc(fh, SPAN)


def test_a_seek_table_that_lies_is_refused(work):
    frames = work["frames"]
    table = SeekTableWriter()
    for frame in frames:
        table.add_frame(len(frame), 1234)  # wrong decompressed sizes
    blob = b"".join(frames) + table.to_bytes()
    with pytest.raises(InvalidContentError, match="seek table"):
        build_ztoc(io.BytesIO(blob), SPAN)


def test_corrupted_zstd_ztoc_document():
    with pytest.raises(InvalidContentError):
        parse_ztoc(b'{"mediaType": "application/vnd.ocikit.ztoc.zstd.v1+json", "version": "1", "frames": 3}')
