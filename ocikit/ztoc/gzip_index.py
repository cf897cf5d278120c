"""Gzip checkpoints ("zinfo") in one streaming pass, and reading from a checkpoint.

Building: the layer is inflated once (see :mod:`._libz`). At each deflate block end that
is not the stream's last block, a checkpoint is recorded when it is the first one or more
than ``span_size`` uncompressed bytes have passed since the previous one — SOCI's rule
from ``gzip_zinfo.c`` — with the bit offset and the last 32 KiB of output. Block ends are
only looked for (``inflate(Z_BLOCK)``) once a span is full; before that the output is
capped at the span's end and inflate runs with ``Z_NO_FLUSH`` in long calls, which gives
the same checkpoints with far fewer round trips through Python. Concatenated members
(pigz) continue after ``inflateReset2``; counters run on across members. Every byte
consumed also goes to the span hasher, so the span digests are ready when the stream
ends: no second read, no temporary file.

The output buffer keeps 32 KiB of history in front of the write position, so the
window of a checkpoint is a slice of it (zeros before the first 32 KiB, as in SOCI).

Reading (:class:`GzipSpans`): a compressed span ``i`` is ``[in_i - (bits_i > 0), in_{i+1})``.
:meth:`GzipSpans.decoder` primes a raw inflater with the leftover bits, sets the window
as dictionary and inflates what follows; at a member boundary it skips the trailer and
the next gzip header and continues.
"""

from __future__ import annotations

import ctypes
import hashlib
import struct
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import InvalidContentError
from ._libz import GZIP_AUTO_WBITS, RAW_WBITS, WINDOW_SIZE, Z_BLOCK, Z_NO_FLUSH, Z_STREAM_END, Inflater

IN_CHUNK = 1 << 20
OUT_CHUNK = 1 << 20
_BLOB_HEADER = struct.Struct("<iq")  # checkpoint count, span size
_POINT = struct.Struct("<qqB")  # compressed offset, uncompressed offset, bits
POINT_SIZE = _POINT.size + WINDOW_SIZE  # 32785

Sink = Callable[[memoryview], None]


@dataclass(frozen=True)
class Checkpoint:
    compressed: int  # ``in``: first whole byte of the span
    uncompressed: int  # ``out``
    bits: int
    window: bytes


@dataclass
class GzipIndex:
    span_size: int
    checkpoints: list[Checkpoint]
    span_digests: list[str]
    compressed_size: int
    uncompressed_size: int

    def to_blob(self) -> bytes:
        """The v2 zinfo blob SOCI stores in ``CompressionInfo.checkpoints``."""
        parts = [_BLOB_HEADER.pack(len(self.checkpoints), self.span_size)]
        for point in self.checkpoints:
            parts.append(_POINT.pack(point.compressed, point.uncompressed, point.bits))
            parts.append(point.window)
        return b"".join(parts)


def build_gzip_index(reader: BinaryIO, span_size: int, sink: Sink) -> GzipIndex:
    """Inflate ``reader`` once; hand every output piece to ``sink``; return the checkpoints."""
    return _IndexBuilder(span_size, sink).run(reader)


class _IndexBuilder:
    def __init__(self, span_size: int, sink: Sink) -> None:
        if span_size <= 0:
            raise ValueError("span size must be positive")
        self.span_size = span_size
        self.sink = sink
        self.checkpoints: list[Checkpoint] = []
        self.digests: list[str] = []
        self.hasher: "hashlib._Hash | None" = None
        self.total_in = 0
        self.total_out = 0
        self.last_out = 0

    def run(self, reader: BinaryIO) -> GzipIndex:
        inbuf = ctypes.create_string_buffer(IN_CHUNK)
        in_view = memoryview(inbuf).cast("B")
        outbuf = ctypes.create_string_buffer(WINDOW_SIZE + OUT_CHUNK)  # starts with 32 KiB of zeros
        out_view = memoryview(outbuf).cast("B")
        out_base, out_end = ctypes.addressof(outbuf), WINDOW_SIZE + OUT_CHUNK
        pos, ended, prev_byte = WINDOW_SIZE, False, 0
        readinto = getattr(reader, "readinto", None)
        with Inflater(GZIP_AUTO_WBITS) as z:
            stream = z.stream
            while True:
                n = _fill(reader, readinto, in_view)
                if not n:
                    break
                stream.next_in, stream.avail_in, used = ctypes.addressof(inbuf), n, 0
                while stream.avail_in:
                    if ended:
                        z.reset(GZIP_AUTO_WBITS)  # another gzip member follows (pigz)
                        ended = False
                    # Block ends only matter once a span is full: until then inflate freely
                    # (Z_NO_FLUSH, output capped at the span) in long GIL-free calls.
                    room = self.last_out + self.span_size - self.total_out if self.checkpoints else 0
                    flush = Z_NO_FLUSH if room > 0 else Z_BLOCK
                    stream.next_out = out_base + pos
                    stream.avail_out = min(out_end - pos, room) if room > 0 else out_end - pos
                    before_in, before_out = stream.avail_in, stream.avail_out
                    ret = z.inflate(flush)
                    consumed, produced = before_in - stream.avail_in, before_out - stream.avail_out
                    if consumed:
                        if self.hasher is not None:
                            self.hasher.update(in_view[used : used + consumed])
                        used += consumed
                        prev_byte = in_view[used - 1]
                        self.total_in += consumed
                    if produced:
                        self.sink(out_view[pos : pos + produced])
                        pos += produced
                        self.total_out += produced
                    ended = ret == Z_STREAM_END
                    data_type = stream.data_type
                    if flush == Z_BLOCK and data_type & 128 and not data_type & 64 and not ended:
                        self._maybe_checkpoint(data_type & 7, prev_byte, out_view[pos - WINDOW_SIZE : pos])
                    if pos == out_end:  # keep the last 32 KiB as history, reuse the rest
                        out_view[:WINDOW_SIZE] = out_view[out_end - WINDOW_SIZE : out_end]
                        pos = WINDOW_SIZE
            if not ended:
                raise InvalidContentError("gzip stream is truncated or not gzip")
        if not self.checkpoints:
            raise InvalidContentError("gzip stream holds no deflate data")
        assert self.hasher is not None
        self.digests.append("sha256:" + self.hasher.hexdigest())
        return GzipIndex(self.span_size, self.checkpoints, self.digests, self.total_in, self.total_out)

    def _maybe_checkpoint(self, bits: int, prev_byte: int, window: memoryview) -> None:
        if self.checkpoints and self.total_out - self.last_out <= self.span_size:
            return
        if self.hasher is not None:
            self.digests.append("sha256:" + self.hasher.hexdigest())
        self.hasher = hashlib.sha256()
        if bits:  # the span starts inside the previous byte: it belongs to both spans
            self.hasher.update(bytes((prev_byte,)))
        self.checkpoints.append(Checkpoint(self.total_in, self.total_out, bits, bytes(window)))
        self.last_out = self.total_out


def _fill(reader: BinaryIO, readinto: "Callable[[memoryview], int] | None", view: memoryview) -> int:
    """Fill ``view`` as far as the stream allows (short only at its end)."""
    total = 0
    while total < len(view):
        if readinto is not None:
            n = readinto(view[total:])
        else:
            data = reader.read(len(view) - total)
            n = len(data)
            view[total : total + n] = data
        if not n:
            break
        total += n
    return total


# -- reading ---------------------------------------------------------------------------


def parse_checkpoints(blob: bytes) -> tuple[int, list[tuple[int, int, int, int]]]:
    """Span size and ``(in, out, bits, window_offset)`` per checkpoint of a zinfo blob (v1 or v2)."""
    if len(blob) < _BLOB_HEADER.size:
        raise InvalidContentError("zTOC checkpoints are truncated")
    count, span_size = _BLOB_HEADER.unpack_from(blob, 0)
    points: list[tuple[int, int, int, int]] = []
    if count <= 0 or span_size <= 0:
        raise InvalidContentError("zTOC checkpoints: invalid header")
    if len(blob) == _BLOB_HEADER.size + count * POINT_SIZE:
        start = 0
    elif len(blob) == _BLOB_HEADER.size + (count - 1) * POINT_SIZE:
        start, points = 1, [(10, 0, 0, -1)]  # legacy v1: checkpoint 0 implied after a 10-byte header
    else:
        raise InvalidContentError("zTOC checkpoints: length does not match the checkpoint count")
    at = _BLOB_HEADER.size
    for _ in range(start, count):
        comp, uncomp, bits = _POINT.unpack_from(blob, at)
        points.append((comp, uncomp, bits, at + _POINT.size))
        at += POINT_SIZE
    for (c0, u0, _, _), (c1, u1, _, _) in zip(points, points[1:]):
        if c1 < c0 or u1 < u0:
            raise InvalidContentError("zTOC checkpoints are not monotonic")
    if any(b > 7 for _, _, b, _ in points):
        raise InvalidContentError("zTOC checkpoints: invalid bit count")
    return span_size, points


class GzipSpans:
    """Span geometry and decoding for a gzip layer described by a zinfo blob."""

    def __init__(self, blob: bytes, compressed_size: int, uncompressed_size: int) -> None:
        self._blob = blob
        self.span_size, self._points = parse_checkpoints(blob)
        self.compressed_size = compressed_size
        self.uncompressed_size = uncompressed_size
        self._starts = [p[1] for p in self._points]
        if self._points[-1][0] > compressed_size:
            raise InvalidContentError("zTOC checkpoints point past the end of the layer")

    @property
    def span_count(self) -> int:
        return len(self._points)

    def span_of(self, offset: int) -> int:
        """The last span whose uncompressed start is ≤ ``offset``."""
        import bisect

        return max(bisect.bisect_right(self._starts, offset) - 1, 0)

    def compressed_range(self, span: int) -> tuple[int, int]:
        comp, _, bits, _ = self._points[span]
        end = self._points[span + 1][0] if span + 1 < len(self._points) else self.compressed_size
        return comp - (1 if bits else 0), end

    def uncompressed_start(self, span: int) -> int:
        return self._points[span][1]

    def window(self, span: int) -> bytes:
        at = self._points[span][3]
        return bytes(WINDOW_SIZE) if at < 0 else self._blob[at : at + WINDOW_SIZE]

    def decoder(self, span: int) -> "GzipSpanDecoder":
        return GzipSpanDecoder(self._points[span][2], self.window(span))


class GzipSpanDecoder:
    """Inflate consecutive compressed spans starting at a checkpoint.

    :meth:`feed` takes the compressed bytes of one span after another (the first span's
    bytes include the shared byte when it has leftover bits) and yields uncompressed
    pieces; a gzip member boundary inside the data is crossed transparently.
    """

    def __init__(self, bits: int, window: bytes) -> None:
        self._z = Inflater(RAW_WBITS)
        self._bits = bits
        self._window = window
        self._started = False
        self._between_members = False
        self._pending = b""  # trailer + next header bytes not yet complete

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not self._started:
            self._started = True
            if self._bits:
                self._z.prime(self._bits, data[0] >> (8 - self._bits))
                data = data[1:]
            self._z.set_dictionary(self._window)
        while data:
            if self._between_members:
                data = self._skip_member_gap(data)
                if not data:
                    return
            data = yield from self._inflate(data)

    def _inflate(self, data: bytes) -> Generator[bytes, None, bytes]:
        buf = ctypes.create_string_buffer(data, len(data))
        out = ctypes.create_string_buffer(OUT_CHUNK)
        stream = self._z.stream
        stream.next_in, stream.avail_in = ctypes.addressof(buf), len(data)
        while stream.avail_in:
            stream.next_out, stream.avail_out = ctypes.addressof(out), OUT_CHUNK
            ret = self._z.inflate(Z_NO_FLUSH)
            produced = OUT_CHUNK - stream.avail_out
            if produced:
                yield ctypes.string_at(out, produced)
            if ret == Z_STREAM_END:
                rest = data[len(data) - stream.avail_in :]
                self._between_members = True
                self._pending = b""
                return rest
        return b""

    def _skip_member_gap(self, data: bytes) -> bytes:
        """Skip the 8-byte trailer and the next member's header; b'' if more bytes are needed."""
        pending = self._pending + data
        header = gzip_header_length(pending, 8)
        if header is None:
            self._pending = pending
            return b""
        self._between_members = False
        self._z.reset(RAW_WBITS)
        return pending[8 + header :]

    def close(self) -> None:
        self._z.close()


def gzip_header_length(data: bytes, at: int = 0) -> "int | None":
    """Length of the gzip member header starting at ``data[at]`` (None if incomplete)."""
    if len(data) < at + 10:
        return None
    if data[at : at + 3] != b"\x1f\x8b\x08":
        raise InvalidContentError("expected a gzip member header")
    flags, pos = data[at + 3], at + 10
    if flags & 4:  # FEXTRA
        if len(data) < pos + 2:
            return None
        pos += 2 + int.from_bytes(data[pos : pos + 2], "little")
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            end = data.find(b"\0", pos)
            if end < 0:
                return None
            pos = end + 1
    if flags & 2:  # FHCRC
        pos += 2
    return pos - at if len(data) >= pos else None
