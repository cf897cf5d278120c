"""The table of contents of a tar stream, built as the bytes go by.

:class:`TarScanner` is a push parser: the decompressor hands it each piece of output
(any size, a view into a reused buffer) and it records one :class:`FileMetadata` per
tar entry while skipping file data without copying it. That is what lets one pass over
a layer build the TOC, the checkpoints and the span digests together.

The entries must equal what SOCI's ``toc_builder.go`` records through Go's
``archive/tar`` reader, so this follows Go's reading rules rather than Python's
``tarfile``: header checksum (unsigned or signed sum), format detection by magic, USTAR
``prefix`` joined only for USTAR/PAX headers, PAX records (``path``, ``linkpath``,
``size``, ``mtime`` … applied unless empty; *all* records kept), GNU long names/links,
the legacy ``'\\0'`` type becoming a file or directory, the data offset being the
position right after the last header block, and the archive size being the position
after the two zero blocks. Names are kept as stored (bytes decoded with
``surrogateescape``, so non-UTF-8 names round-trip).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from zlib import adler32

from ..errors import InvalidContentError, UnsupportedError
from .gotime import unix_to_rfc3339

_TIMES: dict[tuple[int, int], str] = {}


def _mod_time(seconds: int, nanos: int) -> str:
    # Files of one install share a handful of times: formatting each once saves most of the work.
    key = (seconds, nanos)
    text = _TIMES.get(key)
    if text is None:
        if len(_TIMES) > 100_000:
            _TIMES.clear()
        text = _TIMES[key] = unix_to_rfc3339(seconds, nanos)
    return text

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_MAX_SPECIAL = 1 << 20  # Go's maxSpecialFileSize: PAX and GNU long-name data
_OCTAL = re.compile(rb"[0-7]+")
_DECIMAL = re.compile(r"[+-]?[0-9]+")
_HIGH_BYTES = bytes(range(128, 256))
_INT64_MAX = (1 << 63) - 1

TYPE_NAMES = {
    b"0": "reg",
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "char",
    b"4": "block",
    b"5": "dir",
    b"6": "fifo",
}
_HEADER_ONLY = frozenset({b"1", b"2", b"3", b"4", b"5", b"6"})


@dataclass(slots=True)
class FileMetadata:
    """One TOC entry (the fields of SOCI's ``FileMetadata`` table)."""

    name: str
    type: str
    offset: int  # uncompressed offset of the file data
    size: int
    linkname: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mod_time: str = ""  # RFC 3339 text exactly as stored
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.offset + self.size

    def xattrs(self) -> dict[str, str]:
        """Extended attributes (the ``SCHILY.xattr.`` PAX records, prefix removed)."""
        prefix = "SCHILY.xattr."
        return {k[len(prefix) :]: v for k, v in self.pax.items() if k.startswith(prefix)}


def _text(raw: bytes) -> str:
    cut = raw.find(b"\0")
    return (raw if cut < 0 else raw[:cut]).decode("utf-8", "surrogateescape")


def _octal(raw: bytes) -> int:
    digits = raw.strip(b" \0")
    if digits and not digits.translate(None, b"01234567"):
        return int(digits, 8)  # the common case; fields of ≤ 12 bytes cannot overflow
    cut = digits.find(b"\0")
    if cut >= 0:
        digits = digits[:cut]
    if not digits:
        return 0
    if not _OCTAL.fullmatch(digits):
        raise InvalidContentError(f"not a tar archive: bad octal field {raw!r}")
    value = int(digits, 8)
    if value >> 64:
        raise InvalidContentError("not a tar archive: numeric field overflows")
    return value if value <= _INT64_MAX else value - (1 << 64)


def _numeric(raw: bytes) -> int:
    """Go's ``parseNumeric``: base-256 when the top bit is set, else octal."""
    if raw and raw[0] & 0x80:
        negative = bool(raw[0] & 0x40)
        value = 0
        for i, byte in enumerate(raw):
            if negative:
                byte ^= 0xFF
            if i == 0:
                byte &= 0x7F
            if value >> 56:
                raise InvalidContentError("tar header: base-256 field overflows")
            value = value << 8 | byte
        if value >> 63:
            raise InvalidContentError("tar header: base-256 field overflows")
        return ~value if negative else value
    return _octal(raw)


def _byte_sum(data: bytes) -> int:
    """Sum of the bytes of a 512-byte block, fast.

    The low half of Adler-32 is 1 + the byte sum modulo 65521; 256 bytes sum to at most
    65280, so for each half of the block it is exact. (``sum(block)`` costs ~10 µs per
    header, which is a visible share of a zTOC build over 60k files.)
    """
    return (adler32(data[:256]) & 0xFFFF) + (adler32(data[256:]) & 0xFFFF) - 2


def _checksum_ok(block: bytes, field: bytes) -> bool:
    """Go accepts the unsigned or the signed sum, with the checksum field counted as spaces."""
    try:
        stored = _octal(field)
    except InvalidContentError:
        return False
    unsigned = _byte_sum(block) - sum(field) + 8 * 32
    if stored == unsigned:
        return True
    high = BLOCK - len(block.translate(None, _HIGH_BYTES))
    high -= 8 - len(field.translate(None, _HIGH_BYTES))
    return stored == unsigned - 256 * high


def _go_int(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise InvalidContentError(f"tar PAX record {what}={text!r} is not an integer")
    value = int(text)
    if not -(1 << 63) <= value <= _INT64_MAX:
        raise InvalidContentError(f"tar PAX record {what}={text!r} overflows")
    return value


def _pax_time(text: str) -> tuple[int, int]:
    """Go's ``parsePAXTime``: seconds and nanoseconds (fraction truncated to 9 digits)."""
    whole, _, fraction = text.partition(".")
    seconds = _go_int(whole, "time")
    if not fraction:
        return seconds, 0
    if not fraction.isdigit() or not fraction.isascii():
        raise InvalidContentError(f"tar PAX time {text!r} is malformed")
    nanos = int((fraction + "000000000")[:9])
    return (seconds, -nanos) if whole.startswith("-") else (seconds, nanos)


def parse_pax(data: bytes) -> dict[str, str]:
    """PAX extended-header records (``"%d %s=%s\\n"``), validated the way Go validates them."""
    records: dict[str, str] = {}
    text = data.decode("utf-8", "surrogateescape")
    while text:
        length_text, space, rest = text.partition(" ")
        if not space or not length_text.isdigit():
            raise InvalidContentError("tar PAX header is malformed")
        length = int(length_text)
        body_len = length - len(length_text) - 1
        if length < 5 or length > len(text) or body_len <= 0 or rest[body_len - 1] != "\n":
            raise InvalidContentError("tar PAX header is malformed")
        key, equals, value = rest[: body_len - 1].partition("=")
        if not equals or not key:
            raise InvalidContentError("tar PAX header is malformed")
        if "\0" in (value if key in ("path", "linkpath", "uname", "gname") else key):
            raise InvalidContentError("tar PAX header holds a NUL byte")
        if key.startswith("GNU.sparse."):
            raise UnsupportedError("sparse tar entries (GNU.sparse PAX records) are not supported")
        records[key] = value
        text = rest[body_len:]
    return records


@dataclass(slots=True)
class _Header:
    typeflag: bytes
    name: str
    linkname: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: int
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0


# name mode uid gid size mtime chksum type linkname magic version uname gname devmajor devminor prefix
_FIELDS = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12x")


def parse_header(block: bytes) -> _Header:
    """Go's ``readHeader`` for one non-zero 512-byte block."""
    (name, mode, uid, gid, size, mtime, chksum, typeflag, linkname, magic, version, uname, gname, major, minor,
     prefix) = _FIELDS.unpack(block)
    if not _checksum_ok(block, chksum):
        raise InvalidContentError("not a tar archive: header checksum mismatch")
    # plain octal is the common case: parse inline, leave the rest to Go's full rules
    size_, mode_, uid_, gid_, mtime_ = (
        int(d, 8) if (d := raw.strip(b" \0")) and not d.translate(None, b"01234567") else _numeric(raw)
        for raw in (size, mode, uid, gid, mtime)
    )
    hdr = _Header(typeflag, _text(name), _text(linkname), size_, mode_, uid_, gid_, mtime_)
    ustar = magic == b"ustar\0"
    if ustar or (magic == b"ustar " and version == b" \0"):
        hdr.uname = _text(uname)
        hdr.gname = _text(gname)
        hdr.devmajor = _numeric(major)
        hdr.devminor = _numeric(minor)
        if ustar and prefix[0]:  # USTAR/PAX prefix; star archives keep a 131-byte prefix
            text = _text(prefix[:131] if block[508:512] == b"tar\0" else prefix)
            if text:
                hdr.name = f"{text}/{hdr.name}"
    return hdr


class TarScanner:
    """Feed uncompressed tar bytes; read :attr:`entries` and :attr:`archive_size` after :meth:`close`."""

    def __init__(self) -> None:
        self.entries: list[FileMetadata] = []
        self.position = 0
        self.archive_size = 0
        self._partial = bytearray()
        self._data_left = 0  # file data still to skip (truncation here is an error)
        self._pad_left = 0  # padding still to skip (Go treats EOF here as the end)
        self._special: bytearray | None = None
        self._special_kind = b""
        self._pax: dict[str, str] | None = None
        self._long_name = ""
        self._long_link = ""
        self._zero_seen = False
        self.done = False

    def feed(self, chunk: "memoryview | bytes") -> None:
        base, n, i = self.position, len(chunk), 0
        while i < n:
            if self.done:
                break
            if self._data_left or self._pad_left:
                i = self._skip(chunk, i, n)
                continue
            if not self._partial and n - i >= BLOCK:
                block = bytes(chunk[i : i + BLOCK])
                i += BLOCK
            else:
                take = min(BLOCK - len(self._partial), n - i)
                self._partial += chunk[i : i + take]
                i += take
                if len(self._partial) < BLOCK:
                    break
                block = bytes(self._partial)
                self._partial.clear()
            self._block(block, base + i)
        self.position = base + n

    def _skip(self, chunk: "memoryview | bytes", i: int, n: int) -> int:
        if self._data_left:
            take = min(self._data_left, n - i)
            if self._special is not None:
                self._special += chunk[i : i + take]
            self._data_left -= take
            i += take
            if not self._data_left and self._special is not None and not self._pad_left:
                self._special_done()
            return i
        take = min(self._pad_left, n - i)
        self._pad_left -= take
        if not self._pad_left and self._special is not None:
            self._special_done()
        return i + take

    def _block(self, block: bytes, end: int) -> None:
        if block == _ZERO_BLOCK:
            if self._zero_seen:
                self.done, self.archive_size = True, end
            self._zero_seen = True
            return
        if self._zero_seen:
            raise InvalidContentError("tar archive: a header follows an end-of-archive block")
        hdr = parse_header(block)
        if hdr.typeflag in (b"x", b"L", b"K"):
            self._start_special(hdr)
            return
        self._entry(hdr, end)

    def _start_special(self, hdr: _Header) -> None:
        if hdr.size < 0:
            raise InvalidContentError("tar header: negative size")
        if hdr.size > _MAX_SPECIAL:
            raise InvalidContentError(f"tar extended header of {hdr.size} bytes is too long")
        self._special, self._special_kind = bytearray(), hdr.typeflag
        self._data_left, self._pad_left = hdr.size, -hdr.size % BLOCK
        if not hdr.size:
            self._special_done()

    def _special_done(self) -> None:
        data, kind = bytes(self._special or b""), self._special_kind
        self._special = None
        if kind == b"x":
            self._pax = parse_pax(data)
        elif kind == b"L":
            self._long_name = _text(data)
        else:
            self._long_link = _text(data)

    def _entry(self, hdr: _Header, data_offset: int) -> None:
        pax, self._pax = self._pax or {}, None
        nanos = 0
        for key, value in pax.items():
            if value:
                nanos = _apply_pax(hdr, key, value, nanos)
        if self._long_name:
            hdr.name, self._long_name = self._long_name, ""
        if self._long_link:
            hdr.linkname, self._long_link = self._long_link, ""
        if hdr.typeflag in (b"\0", b""):
            hdr.typeflag = b"5" if hdr.name.endswith("/") else b"0"
        kind = TYPE_NAMES.get(hdr.typeflag)
        if kind is None:
            raise UnsupportedError(f"unsupported tar entry type {hdr.typeflag!r} for {hdr.name!r}")
        if hdr.size < 0:
            raise InvalidContentError(f"tar header for {hdr.name!r}: negative size")
        self.entries.append(
            FileMetadata(
                name=hdr.name,
                type=kind,
                offset=data_offset,
                size=hdr.size,
                linkname=hdr.linkname,
                mode=hdr.mode,
                uid=hdr.uid & 0xFFFFFFFF,
                gid=hdr.gid & 0xFFFFFFFF,
                uname=hdr.uname,
                gname=hdr.gname,
                mod_time=_mod_time(hdr.mtime, nanos),
                devmajor=hdr.devmajor,
                devminor=hdr.devminor,
                pax=pax,
            )
        )
        physical = 0 if hdr.typeflag in _HEADER_ONLY else hdr.size
        self._data_left, self._pad_left = physical, -physical % BLOCK

    def close(self) -> None:
        """The stream ended: check it did not end inside a header or file data."""
        if self.done:
            return
        if self._partial or self._data_left or self._special is not None:
            raise InvalidContentError("tar archive is truncated")
        self.archive_size = self.position


def _apply_pax(hdr: _Header, key: str, value: str, nanos: int) -> int:
    """Go's ``mergePAX`` for one non-empty record; returns the mtime nanoseconds."""
    if key == "path":
        hdr.name = value
    elif key == "linkpath":
        hdr.linkname = value
    elif key == "uname":
        hdr.uname = value
    elif key == "gname":
        hdr.gname = value
    elif key == "uid":
        hdr.uid = _go_int(value, key)
    elif key == "gid":
        hdr.gid = _go_int(value, key)
    elif key == "size":
        hdr.size = _go_int(value, key)
    elif key == "mtime":
        hdr.mtime, nanos = _pax_time(value)
    elif key in ("atime", "ctime"):
        _pax_time(value)  # validated like Go does, not stored
    return nanos
