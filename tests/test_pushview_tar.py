"""The deterministic tar writer, read back by GNU tar and Python's tarfile."""

import io
import subprocess
import tarfile

import pytest

from ocikit.formats.tar.writer import (
    DIRECTORY,
    END_OF_ARCHIVE,
    FILE,
    HARDLINK,
    SYMLINK,
    TarEntry,
    archive_size,
    header,
    header_size,
    padding,
)

LONG_DIR = "d" * 120
ENTRIES = [
    TarEntry("top", DIRECTORY, 0o40755, 1_700_000_000),
    TarEntry("top/plain.txt", FILE, 0o100644, 1_700_000_001, 5),
    TarEntry("top/exec", FILE, 0o104755, 1_700_000_002, 3),  # setuid bit kept
    TarEntry("x/" * 60 + "split-into-prefix", FILE, 0o100600, 5, 2),  # > 100 bytes, fits prefix/name
    TarEntry(LONG_DIR + "/" + "n" * 101, FILE, 0o100600, 5, 1),  # needs a PAX path
    TarEntry("top/link", SYMLINK, 0o120777, 7, 0, "plain.txt"),
    TarEntry("top/longlink", SYMLINK, 0o120777, 7, 0, "t/" * 70 + "target"),  # PAX linkpath
    TarEntry("top/ünïcödé", FILE, 0o100644, 8, 4),  # UTF-8 stays in ustar
    TarEntry("top/hard", HARDLINK, 0o100644, 1_700_000_001, 0, "top/plain.txt"),
    TarEntry("old", FILE, 0o100644, -86400, 0),  # before 1970: PAX mtime
    TarEntry("future", FILE, 0o100644, 8**11 + 1, 0),  # beyond the octal field: PAX mtime
]


def build(entries):
    out = bytearray()
    for entry in entries:
        out += header(entry)
        if entry.kind == FILE:
            out += bytes([65 + len(out) % 26]) * entry.size + bytes(padding(entry.size))
    return bytes(out + END_OF_ARCHIVE)


def test_sizes_are_predicted_exactly():
    data = build(ENTRIES)
    assert len(data) == archive_size(ENTRIES)
    for entry in ENTRIES:
        assert header_size(entry) == len(header(entry)), entry.name
    assert len(data) % 512 == 0


def test_tarfile_reads_every_field():
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(build(ENTRIES)))}
    assert set(members) == {e.name for e in ENTRIES}
    for entry in ENTRIES:
        member = members[entry.name]
        assert member.mode == entry.mode & 0o7777, entry.name
        assert int(member.mtime) == entry.mtime, entry.name
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", ""), entry.name
        if entry.kind == FILE:
            assert member.isreg() and member.size == entry.size
    assert members["top"].isdir()
    assert members["top/link"].issym() and members["top/link"].linkname == "plain.txt"
    assert members["top/longlink"].linkname == "t/" * 70 + "target"
    assert members["top/hard"].islnk() and members["top/hard"].linkname == "top/plain.txt"


def test_pax_only_where_needed():
    pax_users = {e.name for e in ENTRIES if len(header(e)) > 512}
    assert pax_users == {LONG_DIR + "/" + "n" * 101, "top/longlink", "old", "future"}
    # UTF-8 names that fit are stored in ustar, like GNU tar does
    assert "ünïcödé".encode() in header(ENTRIES[7])[:100]


def test_gnu_tar_lists_and_verifies_checksums(tmp_path):
    archive = tmp_path / "t.tar"
    archive.write_bytes(build(ENTRIES))
    listing = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", str(archive)], capture_output=True, text=True, check=True
    )
    assert listing.stderr == ""  # a bad header checksum makes GNU tar complain here
    assert "top/hard link to top/plain.txt" in listing.stdout
    assert "-rwsr-xr-x 0/0" in listing.stdout
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)
    assert (out / "top" / "hard").stat().st_ino == (out / "top" / "plain.txt").stat().st_ino
    assert (out / "top" / "plain.txt").stat().st_mtime == 1_700_000_001


def test_same_entries_same_bytes():
    assert build(ENTRIES) == build(list(ENTRIES))


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 8 << 20])
def test_padding_rounds_to_blocks(size):
    assert (size + padding(size)) % 512 == 0 and padding(size) < 512
