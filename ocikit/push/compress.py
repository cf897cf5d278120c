"""Layer compression in independent frames: parallel to write, seekable to read.

The uncompressed tar is cut into frames (see :func:`ocikit.push.stream.layer_frames` for
the cut rule, "ocikit frames v1"); each frame is compressed on its own, so frames compress
in parallel threads (zstandard and zlib release the GIL) and a reader can start
decompressing at any frame boundary.

* ``zstd``: every frame is a standard zstd frame with its content size and XXH64 content
  checksum. The layer ends with the seek table of the Zstandard seekable format
  (facebook/zstd ``contrib/seekable_format``, written by
  :class:`ocikit.ztoc.zstd_frames.SeekTableWriter`): one skippable frame listing each
  frame's compressed size, decompressed size and checksum, which plain decoders skip.
* ``gzip``: every frame is a gzip member with a fixed header (mtime 0, no FNAME, XFL 0,
  OS 255), so the layer is a standard multi-member gzip stream (RFC 1952 §2.2).

Compressed bytes depend on the zstd/zlib library version: the same tree gives the same
layer digest on machines with the same library. The digest cache (``cache.py``) keys blobs
by the uncompressed digest, so an older blob of the same tar is reused rather than
re-uploaded after a library upgrade.
"""

from __future__ import annotations

import struct
import threading
import zlib
from dataclasses import dataclass

from ..errors import InvalidReferenceError
from ..formats.zstd_seekable import SeekTableWriter
from ..spec import mediatypes as mt

ZSTD, GZIP = "zstd", "gzip"
DEFAULT_LEVEL = {ZSTD: 3, GZIP: 6}
LEVEL_RANGE = {ZSTD: (1, 19), GZIP: (1, 9)}
MEDIA_TYPE = {ZSTD: mt.OCI_LAYER_ZSTD, GZIP: mt.OCI_LAYER_GZIP}
EXTENSION = {ZSTD: ".tar.zst", GZIP: ".tar.gz"}

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, mtime 0, XFL 0, OS unknown


@dataclass(frozen=True)
class Compression:
    algorithm: str = ZSTD
    level: int = 3

    @classmethod
    def parse(cls, algorithm: str, level: int | None = None) -> Compression:
        if algorithm not in DEFAULT_LEVEL:
            raise InvalidReferenceError(f"unknown compression {algorithm!r} (expected zstd or gzip)")
        chosen = DEFAULT_LEVEL[algorithm] if level is None else level
        low, high = LEVEL_RANGE[algorithm]
        if not low <= chosen <= high:
            raise InvalidReferenceError(f"{algorithm} level must be {low}..{high}, not {chosen}")
        return cls(algorithm, chosen)

    @property
    def media_type(self) -> str:
        return MEDIA_TYPE[self.algorithm]

    @property
    def extension(self) -> str:
        return EXTENSION[self.algorithm]

    @property
    def cache_key(self) -> str:
        """Identifies the compressed form of a tar (with the frame rule): the digest cache key part."""
        from .stream import FRAME_RULE

        return f"{self.algorithm}-{self.level}-{FRAME_RULE}"

    def describe(self) -> dict[str, object]:
        from .stream import FRAME_RULE

        document: dict[str, object] = {"algorithm": self.algorithm, "level": self.level, "frames": FRAME_RULE}
        if self.algorithm == ZSTD:
            document["seekTable"] = True
        return document


class FrameCompressor:
    """Compresses frames; safe to call from many threads (one codec object per thread)."""

    def __init__(self, compression: Compression) -> None:
        self.compression = compression
        self._local = threading.local()

    def compress(self, frame: bytes) -> bytes:
        if self.compression.algorithm == ZSTD:
            return self._zstd().compress(frame)
        return _gzip_member(frame, self.compression.level)

    def _zstd(self):  # type: ignore[no-untyped-def]
        codec = getattr(self._local, "zstd", None)
        if codec is None:
            import zstandard

            codec = zstandard.ZstdCompressor(
                level=self.compression.level, write_checksum=True, write_content_size=True, write_dict_id=False
            )
            self._local.zstd = codec
        return codec

    def trailer(self, frames: list[tuple[int, int, bytes]]) -> bytes:
        """Bytes that end the layer: the zstd seek table, nothing for gzip.

        ``frames`` lists (compressed size, decompressed size, compressed frame tail) per frame.
        """
        if self.compression.algorithm != ZSTD:
            return b""
        # The table's checksum is the low 32 bits of XXH64 of the frame's content, which is
        # exactly the little-endian content checksum zstd wrote at the end of the frame.
        table = SeekTableWriter(checksums=True)
        for compressed, decompressed, tail in frames:
            table.add_frame(compressed, decompressed, int.from_bytes(tail[-4:], "little"))
        return table.to_bytes()


def _gzip_member(data: bytes, level: int) -> bytes:
    codec = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = codec.compress(data) + codec.flush()
    return b"".join((_GZIP_HEADER, body, struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)))
