"""A lean, streaming tar reader: headers in, entries and zero-copy data pieces out.

Python's :mod:`tarfile` in stream mode is general but slow per member and hides how much
it buffers; a pull spends most of its Python time here, once per file, so ocikit parses
the formats that real layers use itself:

* ustar (POSIX ``ustar\\0`` ``00`` with the 155-byte name prefix) and GNU (``ustar  \\0``),
* GNU long names and link names (type ``L`` / ``K``),
* PAX extended headers (``x``, and global ``g``): ``path``, ``linkpath``, ``size``,
  ``mtime`` (other keys, such as ownership and xattrs, are read and ignored: a pull
  runs unprivileged and files belong to the puller),
* numbers in octal or base-256.

Sparse files, multi-volume and other exotic types are reported as such (the extractor
rejects them). Data is handed out as :class:`memoryview` slices of the decompressed
chunks, so file contents are never copied between decompression and ``write(2)``.

The reader is fed by a callable returning the next chunk of bytes (``b""`` at the end);
a chunk source may raise, which surfaces from whichever call is reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ...errors import InvalidContentError, UnsafeContentError

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
# PAX records and GNU long names are held in memory; real ones are a few hundred bytes.
MAX_META_SIZE = 1 << 20

FILE, DIRECTORY, SYMLINK, HARDLINK, CHARDEV, BLOCKDEV, FIFO = (
    "file",
    "directory",
    "symlink",
    "hardlink",
    "char device",
    "block device",
    "fifo",
)
_TYPES = {
    b"0": FILE,
    b"\x00": FILE,
    b"7": FILE,  # contiguous file: a regular file everywhere but on ancient hardware
    b"1": HARDLINK,
    b"2": SYMLINK,
    b"3": CHARDEV,
    b"4": BLOCKDEV,
    b"5": DIRECTORY,
    b"6": FIFO,
    b"D": DIRECTORY,  # GNU dumpdir: a directory whose data lists its contents (skipped)
}
_META_TYPES = (b"x", b"g", b"L", b"K", b"V")


@dataclass(slots=True)
class TarEntry:
    """One archive member, with the names exactly as stored (not yet checked)."""

    name: str
    kind: str
    size: int
    mode: int
    mtime_ns: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    sparse: bool = False
    raw_type: str = ""  # the type flag, for messages about unsupported types


class TarStream:
    """Iterate over the entries of a tar stream; read each entry's data before the next."""

    def __init__(self, next_chunk: Callable[[], bytes], verify_checksums: bool = False) -> None:
        self._next_chunk = next_chunk
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._pending_data = 0  # unread data (and padding) of the current entry
        self._data_left = 0  # unread data (without padding) of the current entry
        self._globals: dict[str, str] = {}
        self.offset = 0  # bytes consumed so far, for messages
        # Header checksums are verified for non-ustar headers only by default: the blob's digest
        # already covers integrity, and the magic is what tells a tar from other data.
        self._verify_all = verify_checksums

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
        if self._pos + n <= len(self._buf):
            data = self._buf[self._pos : self._pos + n]
            self._pos += n
            self.offset += n
            return data
        parts = []
        need = n
        while need:
            if not self._fill():
                if need == n:
                    return b""
                raise InvalidContentError(f"tar stream truncated in {what} at offset {self.offset}")
            take = min(need, len(self._buf) - self._pos)
            parts.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            self.offset += take
            need -= take
        return b"".join(parts)

    def _skip(self, n: int, what: str) -> None:
        while n:
            if not self._fill():
                raise InvalidContentError(f"tar stream truncated in {what} at offset {self.offset}")
            take = min(n, len(self._buf) - self._pos)
            self._pos += take
            self.offset += take
            n -= take

    # -- entries -----------------------------------------------------------------------

    def next_entry(self) -> TarEntry | None:
        """The next member, or None at the end-of-archive marker (or a clean end of stream)."""
        if self._pending_data:
            self._skip(self._pending_data, "entry data")
            self._pending_data = self._data_left = 0
        pax: dict[str, str] = {}
        long_name = long_link = None
        while True:
            pos = self._pos
            if pos + BLOCK <= len(self._buf):  # the common case: the header is in this chunk
                block = self._buf[pos : pos + BLOCK]
                self._pos = pos + BLOCK
                self.offset += BLOCK
            else:
                block = self._read_exact(BLOCK, "a header")
            if not block or block == _ZERO_BLOCK:
                return None
            if block[257:262] != b"ustar" or self._verify_all:
                _verify_checksum(block, self.offset - BLOCK)
            flag = block[156:157]
            size = _number(block[124:136], "size")
            if flag in _META_TYPES:
                if size > MAX_META_SIZE:
                    raise UnsafeContentError(_raw_name(block), f"oversized {flag.decode()} header ({size} bytes)")
                data = self._read_exact(size, "an extended header") if size else b""
                self._skip(-size % BLOCK, "header padding")
                if flag == b"x":
                    pax.update(_pax_records(data))
                elif flag == b"g":
                    self._globals.update(_pax_records(data))
                elif flag == b"L":
                    long_name = data.split(b"\x00", 1)[0]
                elif flag == b"K":
                    long_link = data.split(b"\x00", 1)[0]
                continue  # 'V' (volume label) carries nothing for us
            if self._globals:
                pax = {**self._globals, **pax}
            return self._entry(block, flag, size, pax, long_name, long_link)

    def _entry(
        self, block: bytes, flag: bytes, size: int, pax: dict[str, str], long_name: bytes | None, long_link: bytes | None
    ) -> TarEntry:
        if long_name is not None:
            name = _decode(long_name)
        else:
            name = _decode(_cstring(block, 0, 100))
            if block[257:263] == b"ustar\x00" and block[345] != 0:  # POSIX: name = prefix "/" name
                name = _decode(_cstring(block, 345, 500)) + "/" + name
        link = ""
        if long_link is not None:
            link = _decode(long_link)
        elif block[157] != 0:
            link = _decode(_cstring(block, 157, 257))
        mtime_ns = _number(block[136:148], "mtime") * 1_000_000_000
        kind = _TYPES.get(flag, "")
        sparse = flag == b"S"
        if pax:
            name = pax.get("path", name)
            link = pax.get("linkpath", link)
            if "size" in pax:
                size = _pax_int(pax["size"], "size")
            if "mtime" in pax:
                mtime_ns = _pax_time_ns(pax["mtime"])
            sparse = sparse or any(k.startswith("GNU.sparse.") for k in pax)
        if kind is FILE and flag != b"7" and name.endswith("/"):
            kind = DIRECTORY  # pre-POSIX archives mark directories by a trailing slash
        entry = TarEntry(name, kind, size, _number(block[100:108], "mode") & 0o7777, mtime_ns, link)
        entry.sparse = sparse
        entry.raw_type = flag.decode("latin-1")
        if kind is CHARDEV or kind is BLOCKDEV:
            entry.devmajor = _number(block[329:337], "devmajor")
            entry.devminor = _number(block[337:345], "devminor")
        # Links and devices carry no data whatever the size field says (tar(5)).
        if kind is FILE or kind is DIRECTORY or kind == "":
            data = size
        else:
            data = entry.size = 0
        self._pending_data = data + (-data % BLOCK)
        self._data_left = data
        return entry

    def iter_data(self, entry: TarEntry) -> Iterator[memoryview]:
        """Yield the current entry's data as slices of the underlying chunks (exactly ``size`` bytes)."""
        left = self._data_left
        while left:
            if not self._fill():
                raise InvalidContentError(
                    f"tar stream truncated in the data of {entry.name!r}: {left} of {entry.size} bytes missing"
                )
            take = min(left, len(self._buf) - self._pos)
            piece = memoryview(self._buf)[self._pos : self._pos + take]
            self._pos += take
            self.offset += take
            left -= take
            self._data_left = left
            self._pending_data -= take
            yield piece
        padding = self._pending_data
        self._pending_data = 0
        self._skip(padding, "data padding")

    def read_data(self, entry: TarEntry) -> list[memoryview]:
        """All of the current entry's data as a list of pieces (for small entries)."""
        left, pos = self._data_left, self._pos
        end = pos + self._pending_data
        if left and end <= len(self._buf):  # the common case: data and padding are in this chunk
            self._pos = end
            self.offset += self._pending_data
            self._pending_data = self._data_left = 0
            return [memoryview(self._buf)[pos : pos + left]]
        return list(self.iter_data(entry))

    def drain(self, limit: int) -> int:
        """Consume the rest of the stream (after the end marker); return how many bytes followed.

        Raises :class:`InvalidContentError` when more than ``limit`` bytes follow that are not zero.
        """
        trailing = 0
        while self._fill():
            piece = self._buf[self._pos :] if self._pos else self._buf
            trailing += len(piece)
            if trailing > limit and piece.count(0) != len(piece):
                raise InvalidContentError(f"{trailing} bytes of data after the end of the tar archive")
            self.offset += len(piece)
            self._pos = len(self._buf)
        return trailing


def _verify_checksum(block: bytes, offset: int) -> None:
    stored = _number(block[148:156], "checksum")
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32
    if stored != unsigned:
        signed = sum(b - 256 if b > 127 else b for b in block) - sum(
            b - 256 if b > 127 else b for b in block[148:156]
        ) + 8 * 32
        if stored != signed:
            raise InvalidContentError(f"not a tar stream, or a corrupt header at offset {offset} (bad checksum)")


def _number(field: bytes, what: str) -> int:
    if field[-1] in (0, 32):
        try:  # the common case: octal digits and one terminating NUL or space
            return int(field[:-1], 8)
        except ValueError:
            pass
    if field[0] & 0x80:  # base-256 (GNU/star), big-endian; 0xff lead byte means negative
        if field[0] == 0xFF:
            raise InvalidContentError(f"negative {what} in tar header")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    try:
        return int(field.rstrip(b"\x00 ") or b"0", 8)
    except ValueError:
        pass
    text = field.split(b"\x00", 1)[0].strip(b" ")  # NUL-terminated with garbage after it
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise InvalidContentError(f"invalid {what} field {field!r} in tar header") from None


def _cstring(block: bytes, start: int, end: int) -> bytes:
    nul = block.find(b"\x00", start, end)
    return block[start : nul if nul >= 0 else end]


def _decode(raw: bytes) -> str:
    # Linux file names are bytes; surrogateescape round-trips non-UTF-8 names exactly.
    return raw.decode("utf-8", "surrogateescape")


def _raw_name(block: bytes) -> str:
    return _decode(block[0:100].split(b"\x00", 1)[0])


def _pax_records(data: bytes) -> dict[str, str]:
    """Parse ``"%d %s=%s\\n"`` records (the length counts the whole record)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # NUL padding some writers leave
        space = data.find(b" ", pos)
        if space < 0:
            raise InvalidContentError("malformed PAX header record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise InvalidContentError("malformed PAX header record length") from None
        if length <= 0 or pos + length > len(data):
            raise InvalidContentError("PAX header record length out of range")
        record = data[space + 1 : pos + length]
        if not record.endswith(b"\n") or b"=" not in record:
            raise InvalidContentError("malformed PAX header record")
        key, value = record[:-1].split(b"=", 1)
        records[key.decode("utf-8", "surrogateescape")] = _decode(value)
        pos += length
    return records


def _pax_int(value: str, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidContentError(f"invalid PAX {what} {value!r}") from None
    if number < 0:
        raise InvalidContentError(f"negative PAX {what} {value!r}")
    return number


def _pax_time_ns(value: str) -> int:
    seconds, _, fraction = value.partition(".")
    try:
        ns = int(seconds) * 1_000_000_000
        if fraction:
            digits = (fraction + "000000000")[:9]
            ns += int(digits) if not seconds.startswith("-") else -int(digits)
    except ValueError:
        raise InvalidContentError(f"invalid PAX mtime {value!r}") from None
    return ns
