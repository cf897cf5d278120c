"""The tar reader on its own: formats GNU tar and Python's tarfile write, and broken input."""

from __future__ import annotations

import io
import tarfile

import pytest

from ocikit.errors import InvalidContentError
from ocikit.formats.tar.reader import DIRECTORY, FILE, HARDLINK, SYMLINK, TarStream


def _entries(data: bytes, chunk: int = 700) -> list[tuple]:
    chunks = iter([data[i : i + chunk] for i in range(0, len(data), chunk)])
    stream = TarStream(lambda: next(chunks, b""))
    out = []
    while (entry := stream.next_entry()) is not None:
        content = b"".join(bytes(p) for p in stream.iter_data(entry)) if entry.kind == FILE else b""
        out.append((entry.name, entry.kind, entry.linkname, entry.mode, entry.mtime_ns, content))
    stream.drain(1 << 20)
    return out


def _tar(fmt: int, *members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "", mtime: float = 1_700_000_000) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mtime, info.mode = kind, size, link, mtime, 0o640
    return info


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_formats_and_chunk_boundaries(fmt):
    long_dir = "p" * 70 + "/" + "q" * 60  # > 100 bytes: GNU 'L', PAX path, or the ustar prefix
    name = f"{long_dir}/file-é.txt"
    data = _tar(
        fmt,
        (_info(long_dir + "/", tarfile.DIRTYPE), b""),
        (_info(name, size=1500), b"a" * 1500),
        (_info("short", size=2), b"hi"),
        (_info("link", tarfile.SYMTYPE, link="short"), b""),
        (_info("hard", tarfile.LNKTYPE, link="short"), b""),
    )
    for chunk in (511, 512, 700, 1 << 20):
        entries = _entries(data, chunk)
        assert [(e[0].rstrip("/"), e[1], e[2]) for e in entries] == [
            (long_dir, DIRECTORY, ""), (name, FILE, ""), ("short", FILE, ""), ("link", SYMLINK, "short"),
            ("hard", HARDLINK, "short"),
        ]
        assert entries[1][5] == b"a" * 1500 and entries[1][3] == 0o640
        assert entries[1][4] == 1_700_000_000 * 10**9


def test_pax_fractional_mtime_and_huge_size_field():
    info = _info("frac", size=3, mtime=1_700_000_000.25)
    entries = _entries(_tar(tarfile.PAX_FORMAT, (info, b"abc")))
    assert entries[0][4] == 1_700_000_000_250_000_000
    big = _info("big", size=0)
    header = bytearray(big.tobuf(format=tarfile.GNU_FORMAT))
    header[124:136] = b"\x80" + (5).to_bytes(11, "big")  # base-256 size = 5
    header[148:156] = b"        "
    header[148:156] = (b"%06o\x00 " % sum(header))
    data = bytes(header) + b"12345" + bytes(507) + bytes(1024)
    assert _entries(data)[0][5] == b"12345"


def test_corrupt_header_and_truncation():
    good = _tar(tarfile.GNU_FORMAT, (_info("a", size=10), b"0123456789"))
    bad = bytearray(good)
    bad[257:262] = b"xxxxx"  # no ustar magic: the checksum is verified, and no longer matches
    with pytest.raises(InvalidContentError, match="bad checksum"):
        _entries(bytes(bad))
    with pytest.raises(InvalidContentError, match="truncated in a header"):
        _entries(good[:300])
    with pytest.raises(InvalidContentError, match=r"truncated in the data of 'a'"):
        _entries(good[:515])
    with pytest.raises(InvalidContentError, match="after the end of the tar archive"):
        _entries(good + b"\x01" * (2 << 20))
    assert _entries(good + bytes(1 << 16))[0][5] == b"0123456789"  # zero padding is fine


def test_not_a_tar_at_all():
    with pytest.raises(InvalidContentError, match="not a tar archive"):
        _entries(b"PK\x03\x04" + bytes(2000))
