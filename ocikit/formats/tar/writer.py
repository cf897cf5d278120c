"""A deterministic tar writer, written for speed instead of going through ``tarfile``.

Layers must be byte-for-byte reproducible: the same tree gives the same tar, hence the
same layer digest, on every machine and every run. The rules (the "ocikit tar v1" format):

* entries in the order the caller gives (push-view sorts component-wise, like
  ``filepath.Walk`` and ``tar --sort=name``); directory names end with ``/``;
* POSIX ustar headers: uid/gid 0, empty uname/gname, ``devmajor``/``devminor`` zero;
  permission bits (``mode & 0o7777``) and integer-second mtimes as given — never zeroed,
  because Python's ``.pyc`` caches compare source mtimes;
* a PAX extended header (named ``././@PaxHeader``, mtime 0) only where ustar cannot hold
  a value: a path that does not fit name/prefix, a link target over 100 bytes, a size of
  8 GiB or more, an mtime outside ``0 … 8**11-1``; UTF-8 names that fit stay in ustar;
* hardlinks are type ``1`` entries naming an earlier entry of the same archive;
* the archive ends with two zero blocks and no further record padding.

``tarfile`` builds a ``TarInfo`` and re-encodes every field per entry; on a 60,000-file
tree that was several times slower than this writer (see benchmarks/push.py), and it
cannot express "PAX only where needed" with uname/gname forced empty.
"""


from __future__ import annotations

import zlib
from typing import Any, NamedTuple

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)

FILE, HARDLINK, SYMLINK, DIRECTORY = "file", "hardlink", "symlink", "dir"
_TYPEFLAG = {FILE: b"0", HARDLINK: b"1", SYMLINK: b"2", DIRECTORY: b"5"}

_MAX_OCTAL_11 = 8**11 - 1  # largest value of a 12-byte octal field (size, mtime)
_PAX_NAME = b"././@PaxHeader"


class TarEntry(NamedTuple):
    """One archive member. ``name`` is the archive path (no trailing slash needed for dirs).

    ``size`` is the data length the header promises for regular files. ``rel`` and
    ``stat`` say where the bytes come from (a path relative to the tree being packed, and
    what the scan saw of it); the writer itself ignores them. A NamedTuple because a view
    has one per file and building them must be cheap.
    """

    name: str
    kind: str
    mode: int
    mtime: int
    size: int = 0
    linkname: str = ""
    rel: str = ""
    stat: Any = None


def padding(size: int) -> int:
    """Zero bytes that follow ``size`` bytes of member data."""
    return -size % BLOCK


def header_size(entry: TarEntry) -> int:
    """``len(header(entry))`` without building it in the common case (no PAX header)."""
    name = entry.name.encode("utf-8")
    if entry.kind == DIRECTORY and not name.endswith(b"/"):
        name += b"/"
    needs_pax = (
        (len(name) > 100 and _split_name(name) is None)
        or len(entry.linkname.encode("utf-8")) > 100
        or not 0 <= entry.mtime <= _MAX_OCTAL_11
        or entry.size > _MAX_OCTAL_11
    )
    return len(header(entry)) if needs_pax else BLOCK


def member_size(entry: TarEntry) -> int:
    """Bytes the entry occupies in the archive: headers, data and padding."""
    size = header_size(entry)
    if entry.kind == FILE:
        size += entry.size + padding(entry.size)
    return size


def archive_size(entries: list[TarEntry]) -> int:
    return sum(member_size(e) for e in entries) + len(END_OF_ARCHIVE)


def header(entry: TarEntry) -> bytes:
    """The header block(s) of ``entry``: an optional PAX header, then the ustar block."""
    kind = entry.kind
    name = entry.name.encode("utf-8")
    if kind == DIRECTORY and not name.endswith(b"/"):
        name += b"/"
    size = entry.size if kind == FILE else 0
    link = entry.linkname.encode("utf-8")
    if len(name) <= 100 and len(link) <= 100 and 0 <= entry.mtime <= _MAX_OCTAL_11 and size <= _MAX_OCTAL_11:
        return _ustar(b"", name, entry.mode & 0o7777, size, entry.mtime, _TYPEFLAG[kind], link)
    return _general_header(entry, name, size, link)


def _general_header(entry: TarEntry, name: bytes, size: int, link: bytes) -> bytes:
    pax: dict[str, str] = {}
    split = _split_name(name)
    if split is None:
        pax["path"] = name.decode("utf-8")
        split = (b"", name[:100])
    if len(link) > 100:
        pax["linkpath"] = entry.linkname
        link = link[:100]
    if size > _MAX_OCTAL_11:
        pax["size"] = str(size)
        size = 0
    mtime = entry.mtime
    if not 0 <= mtime <= _MAX_OCTAL_11:
        pax["mtime"] = str(mtime)
        mtime = 0 if mtime < 0 else _MAX_OCTAL_11
    block = _ustar(split[0], split[1], entry.mode & 0o7777, size, mtime, _TYPEFLAG[entry.kind], link)
    if not pax:
        return block
    records = _pax_records(pax)
    pax_header = _ustar(b"", _PAX_NAME, 0o644, len(records), 0, b"x", b"")
    return pax_header + records + bytes(padding(len(records))) + block


def _split_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for ustar, or None when the path needs a PAX record."""
    if len(name) <= 100:
        return b"", name
    # The prefix takes everything before some '/', at most 155 bytes; the rest at most 100.
    # The rightmost usable '/' keeps the name part short (what tarfile and GNU tar do).
    cut = name.rfind(b"/", 0, 156)
    if cut <= 0 or not 0 < len(name) - cut - 1 <= 100:
        return None
    return name[:cut], name[cut + 1 :]


_UIDGID = b"0000000\0" * 2
_MAGIC_TO_DEVMINOR = b"ustar\x0000" + bytes(64) + b"0000000\0" * 2  # magic, version, uname, gname, dev


def _ustar(prefix: bytes, name: bytes, mode: int, size: int, mtime: int, typeflag: bytes, link: bytes) -> bytes:
    head = b"".join((name.ljust(100, b"\0"), b"%07o\0" % mode, _UIDGID, b"%011o\0" % size, b"%011o\0" % mtime))
    tail = b"".join((typeflag, link.ljust(100, b"\0"), _MAGIC_TO_DEVMINOR, prefix.ljust(155, b"\0"), bytes(12)))
    return b"".join((head, b"%06o\0 " % _checksum(head, tail), tail))


def _checksum(head: bytes, tail: bytes) -> int:
    """The header checksum: the byte sum of the block with the checksum field read as 8 spaces.

    zlib.adler32's low 16 bits are 1 + the byte sum modulo 65521, exact for pieces of at
    most 256 bytes (256 * 255 < 65521). This runs once per file, and ``sum()`` over the
    bytes was the slowest step of building a header.
    """
    total = 8 * 0x20
    for piece in (head, tail):
        view = memoryview(piece)
        for start in range(0, len(view), 256):
            total += (zlib.adler32(view[start : start + 256]) & 0xFFFF) - 1
    return total


def _pax_records(values: dict[str, str]) -> bytes:
    out = bytearray()
    for key in sorted(values):
        payload = f" {key}={values[key]}\n".encode()
        # The length prefix counts itself: find the fixed point.
        length = len(payload) + 1
        while len(str(length)) + len(payload) != length:
            length = len(str(length)) + len(payload)
        out += str(length).encode() + payload
    return bytes(out)
