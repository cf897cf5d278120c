"""The streaming tar scanner against GNU tar archives, with Python's tarfile as the oracle."""

import datetime
import io
import os
import tarfile

import pytest
from ztoc_helpers import LONG_NAME, gnu_tar, make_tree, tar_with

from ocikit.errors import InvalidContentError, UnsupportedError
from ocikit.formats.tar.reader import TarScanner
from ocikit.ztoc.gotime import unix_to_rfc3339
from ocikit.ztoc.toc import TocCollector

TYPES = {tarfile.REGTYPE: "reg", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tree"))
    make_tree(root)
    return root


def _epoch(text: str) -> float:
    # an independent reading of Go's RFC 3339 text: whole seconds plus the fraction digits
    head, _, frac = text.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(head + "+00:00").timestamp()
    return whole + (int(frac) / 10 ** len(frac) if frac else 0.0)


class Scanned:
    def __init__(self, entries, archive_size):
        self.entries, self.archive_size = entries, archive_size


def scan(data: bytes, piece: int = 1 << 20) -> Scanned:
    toc = TocCollector()
    scanner = TarScanner(toc)
    for i in range(0, len(data), piece):
        scanner.feed(memoryview(data)[i : i + piece])
    scanner.close()
    return Scanned(toc.entries, scanner.archive_size)


@pytest.mark.parametrize("fmt", ["gnu", "pax", "ustar"])
def test_entries_match_tarfile(tree, tmp_path, fmt):
    if fmt == "ustar":  # ustar cannot hold the long name
        os.rename(os.path.join(tree, LONG_NAME), os.path.join(tree, "long.txt"))
    try:
        data = open(gnu_tar(tree, str(tmp_path / "t.tar"), fmt), "rb").read()
    finally:
        if fmt == "ustar":
            os.rename(os.path.join(tree, "long.txt"), os.path.join(tree, LONG_NAME))
    entries = scan(data).entries
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert [e.name.rstrip("/") for e in entries] == [m.name.rstrip("/") if m.name != "." else "." for m in members]
    for entry, member in zip(entries, members):
        assert entry.type == TYPES[member.type]
        assert entry.offset == member.offset_data
        assert entry.size == member.size
        assert entry.mode == member.mode
        assert entry.linkname == member.linkname
        assert abs(_epoch(entry.mod_time) - member.mtime) < 1e-6
    regular = [e for e in entries if e.type == "reg"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for e in regular[:20]:
            assert data[e.offset : e.end] == tar.extractfile(e.name).read()


def test_archive_size_ends_after_the_two_zero_blocks(tree, tmp_path):
    data = open(gnu_tar(tree, str(tmp_path / "t.tar")), "rb").read()
    scanner = scan(data)
    last = scanner.entries[-1]
    data_end = last.offset + (-(-last.size // 512) * 512 if last.type == "reg" else 0)
    assert scanner.archive_size == data_end + 1024
    assert len(data) % 10240 == 0 and len(data) >= scanner.archive_size  # GNU tar pads the record


def test_any_chunking_gives_the_same_toc(tree, tmp_path):
    data = open(gnu_tar(os.path.join(tree, "many"), str(tmp_path / "t.tar")), "rb").read()
    whole = [(e.name, e.offset, e.size) for e in scan(data, len(data)).entries]
    assert len(whole) == 201
    for piece in (1, 7, 511, 513, 4096):
        assert [(e.name, e.offset, e.size) for e in scan(data, piece).entries] == whole


def test_pax_records_are_kept_whole_and_sorted_times_keep_fractions():
    data = tar_with([
        ("x/a.txt", b"hello", {"mtime": 1_700_000_000.25, "pax_headers": {"SCHILY.xattr.user.k": "v", "comment": "c"}}),
    ])
    (entry,) = scan(data).entries
    assert entry.pax["SCHILY.xattr.user.k"] == "v" and entry.pax["comment"] == "c"
    assert entry.xattrs() == {"user.k": "v"}
    assert entry.mod_time == "2023-11-14T22:13:20.25Z"
    assert data[entry.offset : entry.end] == b"hello"


def test_not_a_tar_is_a_clear_error():
    with pytest.raises(InvalidContentError, match="not a tar"):
        scan(os.urandom(4096))


def test_truncated_tar_is_a_clear_error(tree, tmp_path):
    data = open(gnu_tar(tree, str(tmp_path / "t.tar")), "rb").read()
    with pytest.raises(InvalidContentError, match="truncated"):
        scan(data[:100_000 + 17])


def test_unsupported_entry_types_are_refused_like_soci():
    import tarfile as tf

    buffer = io.BytesIO()
    with tf.open(fileobj=buffer, mode="w", format=tf.GNU_FORMAT) as tar:
        info = tf.TarInfo("pipe")
        info.type = b"V"  # a volume label: SOCI has no type for it
        tar.addfile(info)
    with pytest.raises(UnsupportedError, match="unsupported tar entry"):
        scan(buffer.getvalue())


def test_a_pax_global_header_describes_no_file_and_renames_nothing():
    """Go (and so containerd and SOCI's reader) apply a global header to nothing; neither does the TOC."""
    import tarfile as tf

    buffer = io.BytesIO()
    with tf.open(fileobj=buffer, mode="w", format=tf.PAX_FORMAT, pax_headers={"path": "evil", "comment": "x"}) as tar:
        tar.addfile(tf.TarInfo("a"), io.BytesIO(b""))
    assert [e.name for e in scan(buffer.getvalue()).entries] == ["a"]


@pytest.mark.parametrize(
    "seconds, nanos, text",
    [
        (0, 0, "1970-01-01T00:00:00Z"),
        (1_700_000_000, 250_000_000, "2023-11-14T22:13:20.25Z"),
        (-1, -500_000_000, "1969-12-31T23:59:58.5Z"),
        (-62135596800, 0, "0001-01-01T00:00:00Z"),
        (253402300800, 0, ""),  # year 10000: Go's MarshalText fails and SOCI stores ""
    ],
)
def test_go_time_text(seconds, nanos, text):
    assert unix_to_rfc3339(seconds, nanos) == text
