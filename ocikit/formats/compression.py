"""The one compression sniffer and the decompressors behind one seam.

Layers say what they are in their media type, but tools get it wrong (oras-py labels plain
files ``…layer.v1.tar``), so every reader of a layer — extraction, zTOC building — decides
from the first bytes with :func:`sniff` and decompresses through :func:`decompressed_chunks`.
A faster inflate can replace the standard library's behind this seam without its callers
noticing.

Decompression errors are :class:`~ocikit.errors.CorruptDataError`; a caller that holds a
digest-pinned blob turns them into a verification failure (:mod:`ocikit.extract.layers`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from ..byteio import ByteReader
from ..errors import CorruptDataError

GZIP, ZSTD, NONE = "gzip", "zstd", "none"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SNIFF_BYTES = 4


def sniff(head: bytes) -> str:
    """:data:`ZSTD`, :data:`GZIP` or :data:`NONE` from the first :data:`SNIFF_BYTES` bytes of a blob."""
    if head.startswith(ZSTD_MAGIC):
        return ZSTD
    if head.startswith(GZIP_MAGIC):
        return GZIP
    return NONE


class Prefixed:
    """A reader that returns ``head`` first, then the rest of ``raw`` (undoing a sniff)."""

    def __init__(self, head: bytes, raw: ByteReader) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            if size is None or size < 0:
                return head + self._raw.read()
            return head if len(head) >= size else head + self._raw.read(size - len(head))
        return self._raw.read(size)


def decompressed_chunks(algorithm: str, source: Prefixed, chunk_size: int, what: str) -> Iterator[bytes]:
    """The decompressed bytes of ``source`` (which starts at the blob's first byte) in chunks."""
    if algorithm == ZSTD:
        return _zstd_chunks(source, chunk_size, what)
    if algorithm == GZIP:
        return _gzip_chunks(source, chunk_size, what)
    return iter(lambda: source.read(chunk_size), b"")


def _zstd_chunks(source: Prefixed, chunk_size: int, what: str) -> Iterator[bytes]:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(
        source,  # type: ignore[arg-type]  # zstandard only calls read() read_size=1 << 20, read_across_frames=True, closefd=False
    )
    try:
        while chunk := reader.read(chunk_size):
            yield chunk
    except zstandard.ZstdError as exc:
        raise CorruptDataError(f"{what}: corrupt zstd stream: {exc}") from None


def _gzip_chunks(source: Prefixed, chunk_size: int, what: str) -> Iterator[bytes]:
    """Inflate one or more concatenated gzip members (RFC 1952), each checked by zlib (CRC, ISIZE)."""
    decompressor = zlib.decompressobj(31)
    fed = False  # whether the current member has received input
    carry = b""  # the start of a possible next member, too short to recognise yet
    try:
        while read := source.read(1 << 20):
            data, carry = carry + read, b""
            while data:
                if decompressor.eof:  # a member ended: what follows is another member or zero padding
                    if len(data) < 2 and data == GZIP_MAGIC[:1]:
                        carry = data
                        break
                    if not data.startswith(GZIP_MAGIC):
                        if data.strip(b"\x00"):
                            raise CorruptDataError(f"{what}: data after the end of the gzip stream")
                        break
                    decompressor = zlib.decompressobj(31)
                fed = True
                out = decompressor.decompress(data, chunk_size)
                if out:
                    yield out
                data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
        if carry:
            raise CorruptDataError(f"{what}: data after the end of the gzip stream")
        tail = decompressor.flush()
        if tail:
            yield tail
        if fed and not decompressor.eof:
            raise CorruptDataError(f"{what}: gzip stream truncated")
    except zlib.error as exc:
        raise CorruptDataError(f"{what}: corrupt gzip stream: {exc}") from None
