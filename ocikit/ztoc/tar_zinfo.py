"""Uncompressed tar layers: SOCI's ``TarZinfo`` form (soci-snapshotter issue #579).

An uncompressed layer needs no checkpoints: span ``i`` is simply bytes
``[i·span, (i+1)·span)`` of the blob, and reading from it is slicing. SOCI still stores a
small FlatBuffer ``TarZinfo { version:int32; span_size:int64; size:int64 }`` (version 2,
``ztoc/compression/fbs/zinfo.fbs``) in ``CompressionInfo.checkpoints`` and marks the
zTOC ``compression_algorithm = Uncompressed``; span digests cover the raw bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import InvalidContentError
from .flatbuf import Builder, Table

TAR_ZINFO_VERSION = 2


def tar_zinfo_bytes(span_size: int, size: int) -> bytes:
    builder = Builder()
    builder.start_table(3)
    builder.add_int32(0, TAR_ZINFO_VERSION)
    builder.add_int64(1, span_size)
    builder.add_int64(2, size)
    return builder.finish(builder.end_table())


def parse_tar_zinfo(blob: bytes) -> tuple[int, int, int]:
    """``(version, span_size, size)`` of a TarZinfo blob."""
    table = Table.root(blob)
    version, span_size, size = table.int32(0), table.int64(1), table.int64(2)
    if span_size <= 0 or size < 0:
        raise InvalidContentError("zTOC TarZinfo: invalid span size or size")
    return version, span_size, size


def tar_span_count(size: int, span_size: int) -> int:
    """SOCI's ``MaxSpanID + 1`` for a tar of ``size`` bytes."""
    return max((size + span_size - 1) // span_size, 1)


class TarSpans:
    """Span geometry for an uncompressed layer (the decoder is the identity)."""

    def __init__(self, blob: bytes, compressed_size: int, uncompressed_size: int) -> None:
        _, self.span_size, self.size = parse_tar_zinfo(blob)
        if self.size != compressed_size:
            raise InvalidContentError("zTOC TarZinfo size does not match the layer size")
        self.compressed_size = compressed_size
        self.uncompressed_size = uncompressed_size

    @property
    def span_count(self) -> int:
        return tar_span_count(self.size, self.span_size)

    def span_of(self, offset: int) -> int:
        return min(offset // self.span_size, self.span_count - 1)

    def compressed_range(self, span: int) -> tuple[int, int]:
        return span * self.span_size, min((span + 1) * self.span_size, self.size)

    def uncompressed_start(self, span: int) -> int:
        return span * self.span_size

    def decoder(self, span: int) -> "IdentityDecoder":
        return IdentityDecoder()


class IdentityDecoder:
    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def close(self) -> None:
        pass
