"""The one tar reader: every header ocikit reads goes through :class:`HeaderDecoder`.

A pull extracts layers, ``ztoc build`` indexes them and the zTOC readers serve files from
them; all three must see the same tree, and the same tree a container runtime sees. So
there is one set of reading rules, Go's ``archive/tar`` (what containerd, SOCI and most
registries' tools use), decided here once:

* the header checksum is verified on every header (unsigned or signed byte sum);
* the format is told from the magic: USTAR/PAX (``ustar\\0``), GNU (``ustar  \\0``), star,
  v7; the 155-byte name prefix is joined only for USTAR/PAX (131 bytes for star);
* numbers are octal (NUL/space padded, cut at the first NUL) or base-256, negatives allowed
  where Go allows them (a negative size is an error);
* PAX extended headers (``x``) apply to the next entry, each non-empty record overriding the
  header field (``path``, ``linkpath``, ``size``, ``mtime``, ``uid``, ``gid``, ``uname``,
  ``gname``); record lengths count *bytes*; every record is kept in :attr:`TarEntry.pax`;
* PAX *global* headers (``g``) are returned as entries of kind :data:`GLOBAL` and applied to
  nothing — Go and containerd ignore them, so a ``path`` in one cannot rename what follows;
* GNU long names and link names (``L``/``K``) apply to the next entry;
* the legacy ``'\\0'`` type is a file, or a directory when the name ends in ``/``;
* extended headers hold at most 1 MiB each (Go's limit), so header bytes stay bounded;
* one zero block followed by another (or by the end of the data) ends the archive; a zero
  block followed by a header is an error.

Names are decoded as UTF-8 with ``surrogateescape``, so non-UTF-8 names round-trip exactly.

:class:`HeaderDecoder` knows nothing of I/O ("sans-IO"); two drivers feed it:
:class:`TarStream` pulls chunks and hands out file data as zero-copy ``memoryview`` slices
(extraction), :class:`TarScanner` is pushed chunks of any size and records entries with the
offset of their data (zTOC building, where a decompressor drives the loop).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from zlib import adler32

from ...errors import CorruptDataError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
MAX_EXTENDED_HEADER = 1 << 20  # Go's maxSpecialFileSize: PAX records and GNU long names

# Entry kinds (the names SOCI's zTOC stores), plus GLOBAL for PAX global headers.
FILE, DIRECTORY, SYMLINK, HARDLINK, CHARDEV, BLOCKDEV, FIFO = "reg", "dir", "symlink", "hardlink", "char", "block", "fifo"
GLOBAL = "global"
_KINDS = {
    b"0": FILE,
    b"7": FILE,  # contiguous file: a regular file everywhere but on ancient hardware
    b"1": HARDLINK,
    b"2": SYMLINK,
    b"3": CHARDEV,
    b"4": BLOCKDEV,
    b"5": DIRECTORY,
    b"6": FIFO,
    b"D": DIRECTORY,  # GNU dumpdir: a directory whose data lists its contents (skipped)
}
_HEADER_ONLY = frozenset({b"1", b"2", b"3", b"4", b"5", b"6"})  # Go's isHeaderOnlyType: no data
_EXTENDED = frozenset({b"x", b"g", b"L", b"K"})

_INT64_MAX = (1 << 63) - 1
_DECIMAL = re.compile(rb"[+-]?[0-9]+")
_OCTAL = re.compile(rb"[0-7]+")
_HIGH_BYTES = bytes(range(128, 256))
# name mode uid gid size mtime chksum type linkname magic version uname gname devmajor devminor prefix
_FIELDS = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12x")


@dataclass(slots=True)
class TarEntry:
    """One archive member as Go's reader returns it (names as stored, not yet checked)."""

    name: str
    kind: str  # one of the kinds above, or "" for a type ocikit does not know (see raw_type)
    size: int  # the member's size (0 for links, devices, directories)
    mode: int  # as stored (some writers include file-type bits); extraction keeps 0o7777 at most
    mtime: int  # seconds since the epoch; may be negative or beyond what a filesystem stores
    mtime_nanos: int = 0
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] | None = None  # every PAX record of this entry (and of a GLOBAL header)
    sparse: bool = False  # old GNU sparse ('S') or PAX GNU.sparse records: unsupported by ocikit
    raw_type: str = ""  # the type flag, for messages about unsupported types
    offset: int = 0  # where the member's data starts in the uncompressed stream
    data_size: int = 0  # bytes of data that follow the header (padding excluded)

    @property
    def mtime_ns(self) -> int:
        return self.mtime * 1_000_000_000 + self.mtime_nanos


# -- field decoding (Go's parser) ------------------------------------------------------------


def _text(raw: bytes) -> str:
    cut = raw.find(b"\0")
    return (raw if cut < 0 else raw[:cut]).decode("utf-8", "surrogateescape")


def _octal(raw: bytes) -> int:
    digits = raw.strip(b" \0")
    if digits and not digits.translate(None, b"01234567"):
        return int(digits, 8)  # the common case; fields of <= 12 bytes cannot overflow
    cut = digits.find(b"\0")
    if cut >= 0:
        digits = digits[:cut]
    if not digits:
        return 0
    if not _OCTAL.fullmatch(digits):
        raise CorruptDataError(f"not a tar archive: bad octal field {raw!r}")
    value = int(digits, 8)
    if value >> 64:
        raise CorruptDataError("tar header: numeric field overflows")
    return value if value <= _INT64_MAX else value - (1 << 64)


def _numeric(raw: bytes) -> int:
    """Go's ``parseNumeric``: base-256 (two's complement) when the top bit is set, else octal."""
    if raw and raw[0] & 0x80:
        negative = bool(raw[0] & 0x40)
        value = 0
        for i, byte in enumerate(raw):
            if negative:
                byte ^= 0xFF
            if i == 0:
                byte &= 0x7F
            if value >> 56:
                raise CorruptDataError("tar header: base-256 field overflows")
            value = value << 8 | byte
        if value >> 63:
            raise CorruptDataError("tar header: base-256 field overflows")
        return ~value if negative else value
    return _octal(raw)


def _byte_sum(block: bytes) -> int:
    """Sum of a block's bytes, fast: the low half of Adler-32 is 1 + the byte sum mod 65521,
    exact for 256 bytes (at most 65280), so each half of the block is summed in C."""
    return (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2


def _checksum_ok(block: bytes, field: bytes) -> bool:
    """Go accepts the unsigned or the signed sum, with the checksum field counted as spaces."""
    try:
        stored = _octal(field)
    except CorruptDataError:
        return False
    unsigned = _byte_sum(block) - sum(field) + 8 * 32
    if stored == unsigned:
        return True
    high = BLOCK - len(block.translate(None, _HIGH_BYTES))
    high -= 8 - len(field.translate(None, _HIGH_BYTES))
    return stored == unsigned - 256 * high


def _go_int(value: str, what: str) -> int:
    raw = value.encode("utf-8", "surrogateescape")
    if not _DECIMAL.fullmatch(raw):
        raise CorruptDataError(f"tar PAX record {what}={value!r} is not an integer")
    number = int(raw)
    if not -(1 << 63) <= number <= _INT64_MAX:
        raise CorruptDataError(f"tar PAX record {what}={value!r} overflows")
    return number


def pax_time(value: str) -> tuple[int, int]:
    """Go's ``parsePAXTime``: seconds and nanoseconds (the fraction cut to 9 digits)."""
    whole, _, fraction = value.partition(".")
    seconds = _go_int(whole, "time")
    if not fraction:
        return seconds, 0
    if not fraction.isdigit() or not fraction.isascii():
        raise CorruptDataError(f"tar PAX time {value!r} is malformed")
    nanos = int((fraction + "000000000")[:9])
    return (seconds, -nanos) if whole.startswith("-") else (seconds, nanos)


def parse_pax(data: bytes) -> dict[str, str]:
    """PAX records (``"%d %s=%s\\n"``, the length counting bytes), validated as Go validates them."""
    records: dict[str, str] = {}
    pos, end = 0, len(data)
    while pos < end:
        space = data.find(b" ", pos, min(end, pos + 21))
        length_text = data[pos:space] if space > 0 else b""
        if not length_text or not _DECIMAL.fullmatch(length_text):
            raise CorruptDataError("tar PAX header is malformed (bad record length)")
        length = int(length_text)
        if length < 5 or pos + length > end or length <= len(length_text) + 1:
            raise CorruptDataError("tar PAX header is malformed (record length out of range)")
        record = data[space + 1 : pos + length]
        if not record.endswith(b"\n"):
            raise CorruptDataError("tar PAX header is malformed (record does not end in a newline)")
        key, equals, value = record[:-1].partition(b"=")
        if not equals or not key:
            raise CorruptDataError("tar PAX header is malformed (record without a key)")
        name = key.decode("utf-8", "surrogateescape")
        if b"\0" in (value if name in ("path", "linkpath", "uname", "gname") else key):
            raise CorruptDataError("tar PAX header holds a NUL byte")
        records[name] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _merge_pax(entry: TarEntry, records: dict[str, str]) -> None:
    """Go's ``mergePAX``: each non-empty record overrides the header field it names."""
    for key, value in records.items():
        if not value:
            continue  # keep the header's value
        if key == "path":
            entry.name = value
        elif key == "linkpath":
            entry.linkname = value
        elif key == "size":
            entry.size = _go_int(value, key)
        elif key == "mtime":
            entry.mtime, entry.mtime_nanos = pax_time(value)
        elif key == "uid":
            entry.uid = _go_int(value, key)
        elif key == "gid":
            entry.gid = _go_int(value, key)
        elif key == "uname":
            entry.uname = value
        elif key == "gname":
            entry.gname = value
        elif key in ("atime", "ctime"):
            pax_time(value)  # validated like Go does, not kept
        elif key.startswith("GNU.sparse."):
            entry.sparse = True


def decode_header(block: bytes) -> TarEntry:
    """One non-zero 512-byte header block as Go's ``readHeader`` reads it (no PAX applied yet)."""
    (name, mode, uid, gid, size, mtime, chksum, typeflag, linkname, magic, version, uname, gname, major, minor,
     prefix) = _FIELDS.unpack(block)
    if not _checksum_ok(block, chksum):
        raise CorruptDataError("not a tar archive, or a corrupt header (bad checksum)")
    # plain octal is the common case: parse inline, leave the rest to Go's full rules
    size_, mode_, uid_, gid_, mtime_ = (
        int(d, 8) if (d := raw.strip(b" \0")) and not d.translate(None, b"01234567") else _numeric(raw)
        for raw in (size, mode, uid, gid, mtime)
    )
    entry = TarEntry(_text(name), "", size_, mode_, mtime_, 0, _text(linkname), uid_, gid_)
    entry.raw_type = typeflag.decode("latin-1")
    ustar = magic == b"ustar\0"
    if ustar or (magic == b"ustar " and version == b" \0"):
        entry.uname = _text(uname)
        entry.gname = _text(gname)
        entry.devmajor = _numeric(major)
        entry.devminor = _numeric(minor)
        if ustar and prefix[0]:  # USTAR/PAX prefix; star archives keep a 131-byte prefix
            text = _text(prefix[:131] if block[508:512] == b"tar\0" else prefix)
            if text:
                entry.name = f"{text}/{entry.name}"
    return entry


class HeaderDecoder:
    """Go's ``Reader.Next`` without the I/O: feed header blocks, and extended-header payloads when asked.

    :meth:`header` returns a :class:`TarEntry` (a member; ``entry.data_size`` bytes of data
    follow it, then padding to a block), an ``int`` n (an extended header: pass its n bytes
    of payload to :meth:`extended`, which returns a GLOBAL entry or None), or None (a zero
    block; :attr:`ended` tells whether the archive is over).
    """

    def __init__(self) -> None:
        self._pax: dict[str, str] | None = None
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._kind = b""
        self._zero_seen = False
        self.ended = False

    def header(self, block: bytes) -> TarEntry | int | None:
        if block == ZERO_BLOCK:
            self.ended = self._zero_seen
            self._zero_seen = True
            return None
        if self._zero_seen:
            raise CorruptDataError("tar archive: a header follows an end-of-archive block")
        entry = decode_header(block)
        flag = block[156:157]
        if flag in _EXTENDED:
            if entry.size < 0 or entry.size > MAX_EXTENDED_HEADER:
                raise CorruptDataError(f"tar extended header of {entry.size} bytes (at most {MAX_EXTENDED_HEADER})")
            self._kind = flag
            return entry.size
        return self._member(entry, flag)

    def extended(self, payload: bytes) -> TarEntry | None:
        """The payload of the extended header :meth:`header` announced."""
        kind, self._kind = self._kind, b""
        if kind == b"L":
            self._long_name = _text(payload)
        elif kind == b"K":
            self._long_link = _text(payload)
        elif kind == b"x":
            self._pax = parse_pax(payload)
        else:  # 'g': returned so callers can see it, applied to nothing (Go, containerd)
            records = parse_pax(payload)
            return TarEntry(records.get("path", ""), GLOBAL, 0, 0, 0, pax=records, raw_type="g")
        return None

    def _member(self, entry: TarEntry, flag: bytes) -> TarEntry:
        if self._pax is not None:
            pax, self._pax = self._pax, None
            _merge_pax(entry, pax)
            entry.pax = pax
        if self._long_name is not None:
            entry.name, self._long_name = self._long_name, None
        if self._long_link is not None:
            entry.linkname, self._long_link = self._long_link, None
        if flag in (b"\0", b""):
            flag = b"5" if entry.name.endswith("/") else b"0"
        entry.kind = _KINDS.get(flag, "")
        entry.sparse = entry.sparse or flag == b"S"
        if entry.size < 0:
            raise CorruptDataError(f"tar header for {entry.name!r}: negative size")
        # Links, devices and directories carry no data whatever their size field says (Go keeps
        # the field as stored, and so does the zTOC; extraction reads data_size).
        entry.data_size = 0 if flag in _HEADER_ONLY else entry.size
        return entry


def _padding(size: int) -> int:
    return -size % BLOCK


class TarStream:
    """The pull driver: iterate over the entries of a chunked stream; read each entry's data
    (as slices of the chunks, never copied) before asking for the next entry.

    ``next_chunk`` returns the next chunk of bytes, ``b""`` at the end; it may raise, and the
    error surfaces from whichever call is reading.
    """

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        self._next_chunk = next_chunk
        self._decoder = HeaderDecoder()
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._pending = 0  # unread data and padding of the current entry
        self._data_left = 0  # unread data (without padding) of the current entry
        self.offset = 0  # bytes consumed so far

    # -- buffer ------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Make sure some unread bytes are buffered; False at the end of the stream."""
        while self._pos >= len(self._buf):
            if self._eof:
                return False
            chunk = self._next_chunk()
            if not chunk:
                self._eof = True
                return False
            self._buf, self._pos = chunk, 0
        return True

    def _read_exact(self, n: int, what: str) -> bytes:
        """``n`` bytes; b"" when the stream ends exactly here; an error when it ends inside."""
        pos = self._pos
        if pos + n <= len(self._buf):
            self._pos = pos + n
            self.offset += n
            return self._buf[pos : pos + n]
        parts = []
        need = n
        while need:
            if not self._fill():
                if need == n:
                    return b""
                raise CorruptDataError(f"tar stream truncated in {what} at offset {self.offset}")
            take = min(need, len(self._buf) - self._pos)
            parts.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            self.offset += take
            need -= take
        return b"".join(parts)

    def _skip(self, n: int, what: str, eof_ok: bool = False) -> None:
        while n:
            if not self._fill():
                if eof_ok:
                    return
                raise CorruptDataError(f"tar stream truncated in {what} at offset {self.offset}")
            take = min(n, len(self._buf) - self._pos)
            self._pos += take
            self.offset += take
            n -= take

    # -- entries -----------------------------------------------------------------------

    def next_entry(self) -> TarEntry | None:
        """The next member (GLOBAL headers included), or None at the end of the archive."""
        if self._pending:
            self._skip(self._data_left, "entry data")
            self._skip(self._pending - self._data_left, "data padding", eof_ok=True)
            self._pending = self._data_left = 0
        decoder = self._decoder
        while not decoder.ended:
            block = self._read_exact(BLOCK, "a header")
            if not block:
                return None  # the data ended without an end-of-archive marker: Go accepts that
            result = decoder.header(block)
            if result is None:
                continue
            if isinstance(result, int):
                payload = self._read_exact(result, "an extended header") if result else b""
                if len(payload) != result:
                    raise CorruptDataError(f"tar stream truncated in an extended header at offset {self.offset}")
                self._skip(_padding(result), "header padding", eof_ok=True)
                entry = decoder.extended(payload)
                if entry is None:
                    continue
                entry.offset = self.offset
                return entry
            result.offset = self.offset
            self._data_left = result.data_size
            self._pending = result.data_size + _padding(result.data_size)
            return result
        return None

    def iter_data(self, entry: TarEntry) -> Iterator[memoryview]:
        """Yield the current entry's data as slices of the underlying chunks (exactly its size)."""
        left = self._data_left
        while left:
            if not self._fill():
                raise CorruptDataError(
                    f"tar stream truncated in the data of {entry.name!r}: {left} of {entry.data_size} bytes missing"
                )
            take = min(left, len(self._buf) - self._pos)
            piece = memoryview(self._buf)[self._pos : self._pos + take]
            self._pos += take
            self.offset += take
            left -= take
            self._data_left = left
            self._pending -= take
            yield piece
        padding, self._pending = self._pending, 0
        self._skip(padding, "data padding", eof_ok=True)

    def read_data(self, entry: TarEntry) -> list[memoryview]:
        """All of the current entry's data as a list of pieces (for small entries)."""
        left, pos = self._data_left, self._pos
        end = pos + self._pending
        if left and end <= len(self._buf):  # the common case: data and padding are in this chunk
            self._pos = end
            self.offset += self._pending
            self._pending = self._data_left = 0
            return [memoryview(self._buf)[pos : pos + left]]
        return list(self.iter_data(entry))

    def drain(self, limit: int) -> int:
        """Consume the rest of the stream (after the end marker); return how many bytes followed.

        Raises :class:`~ocikit.errors.CorruptDataError` when more than ``limit`` bytes follow that are not zero.
        """
        trailing = 0
        while self._fill():
            piece = self._buf[self._pos :] if self._pos else self._buf
            trailing += len(piece)
            if trailing > limit and piece.count(0) != len(piece):
                raise CorruptDataError(f"{trailing} bytes of data after the end of the tar archive")
            self.offset += len(piece)
            self._pos = len(self._buf)
        return trailing


class TarScanner:
    """The push driver: feed uncompressed bytes in chunks of any size; every member (GLOBAL
    headers too) goes to ``on_entry`` with the offset of its data. Data is skipped, never copied.

    :attr:`archive_size` (after :meth:`close`) is where the archive ends: after the two zero
    blocks, or at the end of the data when the marker is missing.
    """

    def __init__(self, on_entry: Callable[[TarEntry], None]) -> None:
        self._on_entry = on_entry
        self._decoder = HeaderDecoder()
        self.position = 0
        self.archive_size = 0
        self._partial = bytearray()
        self._data_left = 0  # member data still to skip (the stream ending here is an error)
        self._pad_left = 0  # padding still to skip (the stream ending here is the end, as in Go)
        self._payload: bytearray | None = None  # an extended header's payload being collected

    @property
    def done(self) -> bool:
        return self._decoder.ended

    def feed(self, chunk: memoryview | bytes) -> None:
        base, n, i = self.position, len(chunk), 0
        while i < n and not self._decoder.ended:
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
            self._header(block, base + i)
        self.position = base + n
        if self._decoder.ended and not self.archive_size:
            self.archive_size = base + i

    def _skip(self, chunk: memoryview | bytes, i: int, n: int) -> int:
        if self._data_left:
            take = min(self._data_left, n - i)
            if self._payload is not None:
                self._payload += chunk[i : i + take]
            self._data_left -= take
            i += take
            if not self._data_left and not self._pad_left:
                self._payload_done()
            return i
        take = min(self._pad_left, n - i)
        self._pad_left -= take
        if not self._pad_left:
            self._payload_done()
        return i + take

    def _header(self, block: bytes, end: int) -> None:
        result = self._decoder.header(block)
        if result is None:
            return
        if isinstance(result, int):
            self._payload = bytearray()
            self._data_left, self._pad_left = result, _padding(result)
            if not result:
                self._payload_done()
            return
        result.offset = end
        self._data_left, self._pad_left = result.data_size, _padding(result.data_size)
        self._on_entry(result)

    def _payload_done(self) -> None:
        if self._payload is None:
            return
        payload, self._payload = bytes(self._payload), None
        entry = self._decoder.extended(payload)
        if entry is not None:
            self._on_entry(entry)

    def close(self) -> None:
        """The stream ended: check it did not end inside a header, an extended header or member data."""
        if self._decoder.ended:
            return
        if self._partial or self._data_left:
            raise CorruptDataError("tar archive is truncated")
        # Ending in padding is the end, as in Go and TarStream; an extended header cut there still counts
        # (a global one is returned, a malformed one is an error), as it does for them.
        self._payload_done()
        self.archive_size = self.position
