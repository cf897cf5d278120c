"""Build a zTOC from a layer stream in one pass.

The layer is read exactly once, front to back, from any readable stream (a local file,
or a store's verifying reader): the decompressor's output goes straight into the tar
scanner, the compressed bytes straight into the span hashers. Nothing is written to
disk and memory holds only I/O buffers, the TOC and the 32 KiB windows.

* gzip → SOCI zinfo checkpoints (:mod:`.gzip_index`), byte-compatible with SOCI;
* uncompressed tar → SOCI ``TarZinfo`` (:mod:`.tar_zinfo`);
* zstd → ocikit's frame-table zTOC (:mod:`.zstd_frames`); a layer that is one big
  frame is not seekable and raises :class:`~ocikit.errors.UnsupportedError`.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..byteio import ByteReader
from ..errors import InvalidContentError, UnsupportedError
from ..formats import compression
from ..formats.compression import SNIFF_BYTES, sniff
from ..formats.tar.reader import TarScanner
from ..formats.zstd_seekable import Frame, FrameHeader, FrameWalker, frames_from_seek_table, parse_seek_table
from .gzip_index import build_gzip_index
from .tar_zinfo import tar_zinfo_bytes
from .toc import TocCollector
from .ztoc import GZIP, UNCOMPRESSED, VERSION_09, ZSTD, Ztoc

DEFAULT_SPAN_SIZE = 1 << 22  # 4 MiB, SOCI's default
DEFAULT_BUILD_TOOL = f"ocikit v{__version__}"
_CHUNK = 1 << 20
_MAX_SEEK_TABLE = 64 << 20

ByteCallback = Callable[[int], None]
_ZTOC_NAMES = {compression.GZIP: GZIP, compression.ZSTD: ZSTD, compression.NONE: UNCOMPRESSED}


def build_ztoc(
    reader: ByteReader,
    span_size: int = DEFAULT_SPAN_SIZE,
    build_tool_id: str = DEFAULT_BUILD_TOOL,
    compression: str | None = None,
    on_bytes: ByteCallback | None = None,
) -> Ztoc:
    """Read a layer once and return its zTOC; ``compression`` is detected when None."""
    if span_size <= 0:
        raise ValueError("span size must be positive")
    source = _Source(reader, on_bytes)
    detected = _ZTOC_NAMES[sniff(source.peek(SNIFF_BYTES))]
    if compression and compression != detected:
        raise InvalidContentError(f"layer is declared {compression} but its bytes are {detected}")
    builder = {GZIP: _build_gzip, UNCOMPRESSED: _build_tar, ZSTD: _build_zstd}[detected]
    ztoc = builder(source, span_size)
    ztoc.build_tool_identifier = build_tool_id
    return ztoc


def _build_gzip(source: "_Source", span_size: int) -> Ztoc:
    toc = TocCollector()
    scanner = TarScanner(toc)
    index = build_gzip_index(source, span_size, scanner.feed)  # type: ignore[arg-type]
    scanner.close()
    return Ztoc(
        entries=toc.entries,
        compression=GZIP,
        compressed_archive_size=index.compressed_size,
        uncompressed_archive_size=scanner.archive_size,
        span_digests=index.span_digests,
        span_size=span_size,
        checkpoints=index.to_blob(),
        version=VERSION_09,
    )


def _build_tar(source: "_Source", span_size: int) -> Ztoc:
    toc = TocCollector()
    scanner = TarScanner(toc)
    digests: list[str] = []
    hasher, in_span, total = hashlib.sha256(), 0, 0
    while chunk := source.read(_CHUNK):
        scanner.feed(chunk)
        view, i = memoryview(chunk), 0
        while i < len(view):
            take = min(span_size - in_span, len(view) - i)
            hasher.update(view[i : i + take])
            in_span, i = in_span + take, i + take
            if in_span == span_size:
                digests.append("sha256:" + hasher.hexdigest())
                hasher, in_span = hashlib.sha256(), 0
        total += len(chunk)
    scanner.close()
    if in_span or not digests:
        digests.append("sha256:" + hasher.hexdigest())
    return Ztoc(
        entries=toc.entries,
        compression=UNCOMPRESSED,
        compressed_archive_size=total,
        uncompressed_archive_size=scanner.archive_size,
        span_digests=digests,
        span_size=span_size,
        checkpoints=tar_zinfo_bytes(span_size, total),
        version=VERSION_09,
    )


class _ZstdBuild:
    """Walks frames, decompresses data frames into the scanner, hashes each frame."""

    def __init__(self, span_size: int) -> None:
        import zstandard

        self.span_size = span_size
        self.toc = TocCollector()
        self.scanner = TarScanner(self.toc)
        self.frames: list[Frame] = []
        self.digests: list[str] = []
        self.dctx = zstandard.ZstdDecompressor()
        self.position = 0  # compressed bytes seen
        self.uncompressed = 0
        self.header: FrameHeader | None = None
        self.start = 0
        self.produced = 0
        self.hasher: "hashlib._Hash | None" = None
        self.writer: Any = None  # zstandard's decompression writer, one per frame
        self.skippable = bytearray()
        self.seek_table: bytes | None = None

    def write(self, data: bytes) -> int:  # the decompressor's output sink
        self.scanner.feed(data)
        self.produced += len(data)
        return len(data)

    def event(self, kind: str, value: object) -> None:
        if kind == "start":
            assert isinstance(value, FrameHeader)
            self.header, self.start, self.produced = value, self.position, 0
            if value.skippable:
                self.skippable.clear()
            else:
                self.hasher = hashlib.sha256()
                # zstandard only calls write() on the sink.
                self.writer = self.dctx.stream_writer(self, write_size=_CHUNK, closefd=False)  # type: ignore[arg-type]
        elif kind == "data":
            assert isinstance(value, memoryview) and self.header is not None
            self.position += len(value)
            if self.header.skippable:
                if len(self.skippable) < _MAX_SEEK_TABLE:
                    self.skippable += value
            else:
                assert self.hasher is not None and self.writer is not None
                self.hasher.update(value)
                self.writer.write(value)
        else:
            self._frame_end()

    def _frame_end(self) -> None:
        assert self.header is not None
        if self.header.skippable:
            if self.header.magic == 0x184D2A5E and self.skippable[-4:] == b"\xb1\xea\x92\x8f":
                self.seek_table = bytes(self.skippable)
            return
        assert self.hasher is not None and self.writer is not None
        self.writer.flush()
        if self.header.content_size is not None and self.header.content_size != self.produced:
            raise InvalidContentError("zstd frame content size does not match its data")
        self.frames.append(Frame(self.start, self.position - self.start, self.uncompressed, self.produced))
        self.digests.append("sha256:" + self.hasher.hexdigest())
        self.uncompressed += self.produced
        self.hasher = self.writer = None


def _build_zstd(source: "_Source", span_size: int) -> Ztoc:
    import zstandard

    state, walker = _ZstdBuild(span_size), FrameWalker()
    try:
        while chunk := source.read(_CHUNK):
            for kind, value in walker.feed(chunk):
                state.event(kind, value)
        walker.close()
    except zstandard.ZstdError as exc:
        raise InvalidContentError(f"corrupt zstd data: {exc}") from None
    state.scanner.close()
    frames = [f for f in state.frames if f.uncompressed_size]
    digests = [d for f, d in zip(state.frames, state.digests) if f.uncompressed_size]
    if state.seek_table is not None:
        _check_seek_table(state.seek_table, frames, walker.offset)
    if len(frames) < 2 and state.uncompressed > span_size:
        raise UnsupportedError(
            f"zstd layer is not seekable: it is a single frame of {state.uncompressed} bytes "
            "(recompress with frames, e.g. by ocikit's push, to index it)"
        )
    return Ztoc(
        entries=state.toc.entries,
        compression=ZSTD,
        compressed_archive_size=walker.offset,
        uncompressed_archive_size=state.scanner.archive_size,
        span_digests=digests,
        span_size=span_size,
        frames=frames,
    )


def _check_seek_table(table: bytes, frames: list[Frame], blob_size: int) -> None:
    listed = frames_from_seek_table(parse_seek_table(table), blob_size - len(table))
    if [(f.compressed_offset, f.compressed_size, f.uncompressed_size) for f in listed] != [
        (f.compressed_offset, f.compressed_size, f.uncompressed_size) for f in frames
    ]:
        raise InvalidContentError("the layer's zstd seek table does not match its frames")


class _Source(io.RawIOBase):
    """The layer stream with a small peek buffer and a byte counter for progress."""

    def __init__(self, reader: ByteReader, on_bytes: ByteCallback | None) -> None:
        super().__init__()
        self._reader = reader
        self._on_bytes = on_bytes
        self._head = b""

    def readable(self) -> bool:
        return True

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._reader.read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(self._head), len(view))
            view[:n], self._head = self._head[:n], self._head[n:]
        else:
            inner = getattr(self._reader, "readinto", None)
            if inner is not None:
                n = inner(view) or 0
            else:
                data = self._reader.read(len(view))
                n = len(data)
                view[:n] = data
        if n and self._on_bytes:
            self._on_bytes(n)
        return n
