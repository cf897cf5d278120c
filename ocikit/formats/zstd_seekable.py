"""Seekable zstd: frame tables, the seekable-format seek table, and reading one frame.

A zstd layer can only be read from the middle at the start of a frame: frames are
independent, blocks inside a frame are not. So the zstd analogue of a SOCI checkpoint is a
frame, and a zstd zTOC's "span" is one data frame (no 32 KiB windows, no bit offsets).

Where the frame table comes from:

(a) the **seek table** of the Zstandard seekable format
    (facebook/zstd ``contrib/seekable_format/zstd_seekable_compression_format.md``), a
    final skippable frame (magic ``0x184D2A5E``) that plain decoders ignore::

        Frame_Size  | N × (Compressed_Size u32, Decompressed_Size u32[, Checksum u32])
                    | Number_Of_Frames u32 | Descriptor u8 | Seekable_Magic 0x8F92EAB1

    ocikit's push-view appends one (:class:`SeekTableWriter`) to its ``tar+zstd`` layers,
    whose frames are closed at tar-entry boundaries; :func:`read_seek_table` reads it with
    two range reads;
(b) otherwise the **frame headers**: :class:`FrameWalker` follows the frame structure
    (magic, header, block headers, checksum) through a byte stream, which yields each
    frame's compressed extent without decompressing; the decompressed size comes from the
    header's ``Frame_Content_Size`` or, during a zTOC build, from the decompressor.

A foreign ``tar+zstd`` layer written by ``zstd -T0`` is one frame: there is no place to
start reading except the beginning, so it is reported as not seekable.
"""

from __future__ import annotations

import bisect
import io
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import InvalidContentError

ZSTD_MAGIC = 0xFD2FB528
SKIPPABLE_MASK, SKIPPABLE_BASE = 0xFFFFFFF0, 0x184D2A50
SEEK_TABLE_MAGIC = 0x184D2A5E  # the skippable-frame magic the seekable format uses
SEEKABLE_MAGIC = 0x8F92EAB1
SEEK_FOOTER_SIZE = 9
MAX_FRAMES = 0x8000000  # ZSTD_SEEKABLE_MAXFRAMES
MAX_FRAME_DECOMPRESSED = 0x40000000  # ZSTD_SEEKABLE_MAX_FRAME_DECOMPRESSED_SIZE
_U32 = struct.Struct("<I")
_FOOTER = struct.Struct("<IBI")


@dataclass(frozen=True)
class Frame:
    """One data frame: where it sits in the blob and in the decompressed stream."""

    compressed_offset: int
    compressed_size: int
    uncompressed_offset: int
    uncompressed_size: int


# -- the seekable format's seek table ---------------------------------------------------


class SeekTableWriter:
    """Collects frame sizes and emits the seek table skippable frame to append to a layer.

    >>> w = SeekTableWriter()
    >>> w.add_frame(compressed_size=1200, decompressed_size=4 << 20)
    >>> trailer = w.to_bytes()  # write after the last frame
    """

    def __init__(self, checksums: bool = False) -> None:
        self.checksums = checksums
        self._entries: list[tuple[int, int, int]] = []

    def add_frame(self, compressed_size: int, decompressed_size: int, checksum: int | None = None) -> None:
        """Record the next frame; ``checksum`` (low 32 bits of XXH64) is required iff ``checksums``."""
        if not 0 <= compressed_size < 1 << 32:
            raise ValueError(f"frame compressed size {compressed_size} does not fit the seek table")
        if not 0 <= decompressed_size <= MAX_FRAME_DECOMPRESSED:
            raise ValueError(f"frame decompressed size {decompressed_size} exceeds the seekable format's limit")
        if self.checksums == (checksum is None):
            raise ValueError("checksum must be given exactly when the table has checksums")
        if len(self._entries) >= MAX_FRAMES:
            raise ValueError("too many frames for a seek table")
        self._entries.append((compressed_size, decompressed_size, checksum or 0))

    def __len__(self) -> int:
        return len(self._entries)

    def to_bytes(self) -> bytes:
        entry = struct.Struct("<III" if self.checksums else "<II")
        body = b"".join(entry.pack(*e) if self.checksums else entry.pack(*e[:2]) for e in self._entries)
        footer = _FOOTER.pack(len(self._entries), 0x80 if self.checksums else 0, SEEKABLE_MAGIC)
        payload = body + footer
        return _U32.pack(SEEK_TABLE_MAGIC) + _U32.pack(len(payload)) + payload


def seek_table_size(footer: bytes) -> int:
    """Total size of the seek table frame ending with this 9-byte footer (0 if not a footer)."""
    frames, descriptor, magic = _FOOTER.unpack(footer)
    if magic != SEEKABLE_MAGIC or descriptor & 0x7C:
        return 0
    per = 12 if descriptor & 0x80 else 8
    return 8 + frames * per + SEEK_FOOTER_SIZE


def parse_seek_table(table: bytes) -> list[tuple[int, int]]:
    """``(compressed_size, decompressed_size)`` per entry of a complete seek table frame."""
    if len(table) < 8 + SEEK_FOOTER_SIZE:
        raise InvalidContentError("zstd seek table is truncated")
    magic, size = struct.unpack_from("<II", table, 0)
    frames, descriptor, seekable = _FOOTER.unpack_from(table, len(table) - SEEK_FOOTER_SIZE)
    if magic != SEEK_TABLE_MAGIC or seekable != SEEKABLE_MAGIC or size != len(table) - 8:
        raise InvalidContentError("not a zstd seek table")
    if descriptor & 0x7C:
        raise InvalidContentError("zstd seek table: reserved descriptor bits are set")
    per = 12 if descriptor & 0x80 else 8
    if frames > MAX_FRAMES or 8 + frames * per + SEEK_FOOTER_SIZE != len(table):
        raise InvalidContentError("zstd seek table: entry count does not match its size")
    return [struct.unpack_from("<II", table, 8 + i * per) for i in range(frames)]


def frames_from_seek_table(entries: list[tuple[int, int]], table_offset: int) -> list[Frame]:
    """Data frames with cumulative offsets; entries with nothing decompressed are dropped."""
    frames, c_off, u_off = [], 0, 0
    for c_size, u_size in entries:
        if u_size:
            frames.append(Frame(c_off, c_size, u_off, u_size))
        c_off += c_size
        u_off += u_size
    if c_off != table_offset:
        raise InvalidContentError("zstd seek table does not add up to the layer size")
    return frames


def read_seek_table(read_at: Callable[[int, int], bytes], blob_size: int) -> list[Frame] | None:
    """The frame table from a trailing seek table, with two range reads (None when absent)."""
    if blob_size < 8 + SEEK_FOOTER_SIZE:
        return None
    footer = read_at(blob_size - SEEK_FOOTER_SIZE, SEEK_FOOTER_SIZE)
    total = seek_table_size(footer) if len(footer) == SEEK_FOOTER_SIZE else 0
    if not total or total > blob_size:
        return None
    table = read_at(blob_size - total, total)
    return frames_from_seek_table(parse_seek_table(table), blob_size - total)


# -- walking frame structure ------------------------------------------------------------


@dataclass(frozen=True)
class FrameHeader:
    skippable: bool
    content_size: int | None  # Frame_Content_Size when the header carries it
    magic: int


class FrameWalker:
    """Follows zstd frame structure through a byte stream fed in arbitrary pieces.

    :meth:`feed` yields events: ``("start", FrameHeader)`` once a frame header is complete,
    ``("data", view)`` for bytes of the current frame (header bytes included), and
    ``("end", None)`` when the frame is complete. Block contents are never decoded.
    """

    def __init__(self) -> None:
        self.offset = 0
        self._head = bytearray()
        self._state = "magic"
        self._need = 4
        self._left = 0  # body bytes to pass through
        self._last_block = False
        self._checksum = False

    @property
    def between_frames(self) -> bool:
        return self._state == "magic" and not self._head

    def feed(self, chunk: "memoryview | bytes") -> Iterator[tuple[str, object]]:
        view, i, n = memoryview(chunk), 0, len(chunk)
        while i < n:
            if self._left:
                take = min(self._left, n - i)
                yield "data", view[i : i + take]
                self._left -= take
                i += take
                if not self._left:
                    yield from self._body_done()
                continue
            take = min(self._need - len(self._head), n - i)
            self._head += view[i : i + take]
            i += take
            if len(self._head) == self._need:
                yield from self._header_complete()
        self.offset += n

    def _header_complete(self) -> Iterator[tuple[str, object]]:
        head = self._head
        if self._state == "magic":
            magic = _U32.unpack_from(head)[0]
            if magic & SKIPPABLE_MASK == SKIPPABLE_BASE:
                self._state, self._need = "skip_size", 8
            elif magic == ZSTD_MAGIC:
                self._state, self._need = "descriptor", 5
            else:
                raise InvalidContentError(f"not a zstd frame (magic {magic:#010x})")
        elif self._state == "skip_size":
            magic, size = struct.unpack_from("<II", head)
            yield "start", FrameHeader(True, None, magic)
            yield from self._flush_head()
            self._state, self._left = "skip_body", size
            if not self._left:
                yield from self._body_done()
        elif self._state == "descriptor":
            self._need = 5 + _frame_header_rest(head[4])
            self._state = "header"
            if self._need == 5:
                yield from self._header_complete()
        elif self._state == "header":
            self._checksum = bool(head[4] & 4)
            yield "start", FrameHeader(False, _content_size(bytes(head)), ZSTD_MAGIC)
            yield from self._flush_head()
            self._state, self._need = "block", 3
        elif self._state == "block":
            value = int.from_bytes(head, "little")
            self._last_block, kind, size = bool(value & 1), (value >> 1) & 3, value >> 3
            if kind == 3:
                raise InvalidContentError("zstd frame: reserved block type")
            yield from self._flush_head()
            self._state, self._left = "block_body", 1 if kind == 1 else size
            if not self._left:
                yield from self._body_done()
        elif self._state == "checksum":
            yield from self._flush_head()
            yield from self._frame_done()

    def _flush_head(self) -> Iterator[tuple[str, object]]:
        yield "data", memoryview(bytes(self._head))
        self._head.clear()

    def _body_done(self) -> Iterator[tuple[str, object]]:
        if self._state == "skip_body":
            yield from self._frame_done()
        elif self._last_block:
            if self._checksum:
                self._state, self._need = "checksum", 4
            else:
                yield from self._frame_done()
        else:
            self._state, self._need = "block", 3

    def _frame_done(self) -> Iterator[tuple[str, object]]:
        self._state, self._need = "magic", 4
        yield "end", None

    def close(self) -> None:
        if not self.between_frames or self._left:
            raise InvalidContentError("zstd stream is truncated")


def _frame_header_rest(descriptor: int) -> int:
    """Bytes of frame header after the descriptor byte (window, dictionary ID, content size)."""
    fcs_flag, single = descriptor >> 6, descriptor & 0x20
    if descriptor & 0x08:
        raise InvalidContentError("zstd frame: reserved header bit is set")
    dict_bytes = (0, 1, 2, 4)[descriptor & 3]
    fcs_bytes = (1 if single else 0, 2, 4, 8)[fcs_flag]
    return (0 if single else 1) + dict_bytes + fcs_bytes


def _content_size(head: bytes) -> int | None:
    descriptor = head[4]
    fcs_flag, single = descriptor >> 6, descriptor & 0x20
    size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if not size:
        return None
    raw = int.from_bytes(head[len(head) - size :], "little")
    return raw + 256 if size == 2 else raw


def scan_frames(reader: "io.BufferedIOBase | io.RawIOBase", chunk_size: int = 1 << 20) -> list[Frame]:
    """The frame table of a zstd stream from frame headers alone (no decompression).

    Uses ``Frame_Content_Size`` from each data frame header; a frame without it is
    decompressed to measure it. Skippable frames are left out.
    """
    import zstandard

    walker, frames = FrameWalker(), []
    pos = start = u_off = 0
    header: FrameHeader | None = None
    measure, measured = None, 0
    while chunk := reader.read(chunk_size):
        for event, value in walker.feed(chunk):
            if event == "start":
                assert isinstance(value, FrameHeader)
                header, start, measured = value, pos, 0
                unsized = not value.skippable and value.content_size is None
                measure = zstandard.ZstdDecompressor().decompressobj() if unsized else None
            elif event == "data":
                assert isinstance(value, memoryview)
                pos += len(value)
                if measure is not None:
                    measured += len(measure.decompress(value.tobytes()))
            elif header is not None and not header.skippable:
                size = measured if measure is not None else int(header.content_size or 0)
                frames.append(Frame(start, pos - start, u_off, size))
                u_off += size
    walker.close()
    return frames


class FrameSpans:
    """Span geometry and decoding for a zstd layer whose spans are its data frames."""

    def __init__(self, frames: list[Frame], compressed_size: int, uncompressed_size: int, span_size: int = 0) -> None:
        if not frames:
            raise InvalidContentError("zstd zTOC has no frames")
        self.frames = frames
        self.span_size = span_size
        self.compressed_size = compressed_size
        self.uncompressed_size = uncompressed_size
        self._starts = [f.uncompressed_offset for f in frames]
        last = frames[-1]
        if last.compressed_offset + last.compressed_size > compressed_size:
            raise InvalidContentError("zstd zTOC frames extend past the end of the layer")

    @property
    def span_count(self) -> int:
        return len(self.frames)

    def span_of(self, offset: int) -> int:
        return max(bisect.bisect_right(self._starts, offset) - 1, 0)

    def compressed_range(self, span: int) -> tuple[int, int]:
        frame = self.frames[span]
        return frame.compressed_offset, frame.compressed_offset + frame.compressed_size

    def uncompressed_start(self, span: int) -> int:
        return self.frames[span].uncompressed_offset

    def decoder(self, span: int) -> "FrameDecoder":
        return FrameDecoder(self.frames[span:])


class FrameDecoder:
    """Decompress whole frames fed one after another (each feed is exactly one frame)."""

    def __init__(self, frames: list[Frame]) -> None:
        import zstandard

        self._dctx = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError
        self._frames = iter(frames)

    def feed(self, data: bytes) -> Iterator[bytes]:
        frame = next(self._frames)
        reader = self._dctx.stream_reader(io.BytesIO(data), read_across_frames=False)
        produced = 0
        try:
            while piece := reader.read(1 << 20):
                produced += len(piece)
                yield piece
        except self._error as exc:
            raise InvalidContentError(f"corrupt zstd frame: {exc}") from None
        if produced != frame.uncompressed_size:
            raise InvalidContentError(
                f"zstd frame decompressed to {produced} bytes, the zTOC says {frame.uncompressed_size}"
            )

    def close(self) -> None:
        pass
