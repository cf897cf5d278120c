"""SOCI compatibility: ocikit builds every golden zTOC byte for byte (fixtures/soci-vectors)."""

import hashlib
import json
import os

import pytest
from ztoc_helpers import soci_vectors_dir

from ocikit.errors import InvalidContentError
from ocikit.ztoc.build import build_ztoc
from ocikit.ztoc.toc import FileMetadata
from ocikit.ztoc.ztoc import Ztoc, _to_flatbuffer, parse_ztoc

VECTORS = soci_vectors_dir()


def _vectors():
    path = os.path.join(VECTORS, "manifest.json")
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        return json.load(fh)


@pytest.fixture(scope="module", autouse=True)
def _need_vectors():
    if not _vectors():
        pytest.skip("shared SOCI vectors are not present")


def _read(name):
    with open(os.path.join(VECTORS, name), "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_builds_the_golden_ztoc_byte_for_byte(vector):
    with open(os.path.join(VECTORS, vector["input"]), "rb") as layer:
        ztoc = build_ztoc(layer, vector["span"], "soci-oracle")
    assert ztoc.to_bytes() == _read(vector["name"] + ".ztoc")


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_parsing_a_golden_ztoc_and_writing_it_again_is_lossless(vector):
    golden = _read(vector["name"] + ".ztoc")
    ztoc = parse_ztoc(golden)
    assert ztoc.build_tool_identifier == "soci-oracle" and ztoc.version == "0.9"
    assert ztoc.span_size == vector["span"]
    assert ztoc.compressed_archive_size == len(_read(vector["input"]))
    assert ztoc.to_bytes() == golden


def test_socis_own_marshaler_unit_vector():
    # soci-snapshotter ztoc/ztoc_test.go TestWriteZtoc: digest and size are fixed there.
    entries = [FileMetadata("", "", 0, 0, mod_time="0001-01-01T00:00:00Z") for _ in range(2)]
    ztoc = Ztoc(entries, "gzip", 2_000_000, 2_500_000, [], 0, checkpoints=bytes(1 << 16),
                build_tool_identifier="AWS SOCI CLI")
    data = _to_flatbuffer(ztoc, max_span_id=3)
    assert len(data) == 65928
    assert hashlib.sha256(data).hexdigest() == "eba28fdf50b1b57543f57dd051b2468c1d4f57b64d2006c75aa4de1d03e6c7ec"


def test_multi_member_vector_has_checkpoints_beyond_the_first_member():
    ztoc = parse_ztoc(_read("multi-large.ztoc"))
    spans = ztoc.spans()
    assert spans.span_count > 1  # pre-v0.14 builders put every file in span 0 (soci issue #1834)
    assert len({spans.span_of(e.offset) for e in ztoc.entries if e.size}) > 1


@pytest.mark.parametrize("damage", ["truncate", "flip-root", "garbage"])
def test_corrupted_ztoc_is_a_clear_error(damage):
    golden = bytearray(_read("meta.ztoc"))
    if damage == "truncate":
        data = bytes(golden[: len(golden) // 2])
    elif damage == "flip-root":
        golden[0] ^= 0x7F
        data = bytes(golden)
    else:
        data = os.urandom(4096)
    with pytest.raises(InvalidContentError):
        parse_ztoc(data)


def test_span_digest_count_must_match_the_checkpoints():
    ztoc = parse_ztoc(_read("text-l6-s4096.ztoc"))
    ztoc.span_digests = ztoc.span_digests[:-1]
    with pytest.raises(InvalidContentError):
        parse_ztoc(ztoc.to_bytes())


def test_entries_with_xattrs_and_odd_names_read_back_as_written():
    """The row reader (one struct per vtable) against entries that use every field, pax included."""
    golden = parse_ztoc(_read("meta.ztoc"))
    golden.entries[0].pax = {"SCHILY.xattr.user.k": "v", "LIBARCHIVE.creationtime": "1"}
    golden.entries[-1].linkname = "t\udcff"  # a non-UTF-8 byte, kept by surrogateescape
    again = parse_ztoc(golden.to_bytes())
    assert again.entries == golden.entries and again.to_bytes() == golden.to_bytes()


def test_every_single_byte_damage_is_a_zTOC_or_a_clear_error():
    """Changing any byte of a real zTOC gives a zTOC or InvalidContentError, never another exception."""
    golden = _read("meta.ztoc")
    for at in range(len(golden)):
        damaged = bytearray(golden)
        damaged[at] ^= 0xA5
        try:
            parse_ztoc(bytes(damaged))
        except InvalidContentError:
            pass
