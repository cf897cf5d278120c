"""Read files out of a layer with range reads of just the spans that hold them.

For a set of wanted byte ranges of the uncompressed tar (file data), the spans covering
them are grouped into runs of consecutive spans. Each run is fetched with as few
``fetch_range`` calls as a size cap allows; every span's compressed bytes are checked
against the zTOC's sha256 *before* they are decompressed (a mismatch raises
:class:`~ocikit.errors.DigestMismatchError`); the run is decoded from the checkpoint at its
first span; and the output is handed, in order, to the consumer of each wanted range.
Consecutive gzip spans share one byte when the later one starts mid-byte: it is verified
with both spans and decompressed once.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..content.base import Store, SupportsRangeRead
from ..errors import DigestMismatchError, InvalidContentError, UnsupportedError
from ..spec.descriptor import Descriptor
from .ztoc import SpanIndex, Ztoc

MAX_REQUEST = 16 << 20  # compressed bytes per range request (bounds memory)

Writer = Callable[[bytes], None]


@dataclass
class FetchStats:
    """What the range reads cost: compressed bytes, spans and requests."""

    bytes_fetched: int = 0
    spans: int = 0
    requests: int = 0
    span_ids: list[int] = field(default_factory=list)

    def add(self, other: "FetchStats") -> None:
        self.bytes_fetched += other.bytes_fetched
        self.spans += other.spans
        self.requests += other.requests


@dataclass(frozen=True)
class Want:
    """``size`` bytes of the uncompressed tar from ``offset`` (delivered to ``write`` by :meth:`LayerReader.read`)."""

    offset: int
    size: int
    write: Writer | None = None


class LayerReader:
    """Reads ranges of one layer's uncompressed tar through its zTOC."""

    def __init__(self, store: Store, layer: Descriptor, ztoc: Ztoc) -> None:
        if not isinstance(store, SupportsRangeRead):
            raise UnsupportedError(f"{store.describe()} cannot read byte ranges")
        if ztoc.compressed_archive_size != layer.size:
            raise InvalidContentError(
                f"zTOC describes a {ztoc.compressed_archive_size}-byte layer, {layer.digest} has {layer.size}"
            )
        self.store = store
        self.layer = layer
        self.ztoc = ztoc
        self.spans: SpanIndex = ztoc.spans()
        self.stats = FetchStats()

    def read(self, wants: Iterable[Want]) -> None:
        """Deliver every wanted range to its ``write`` (ranges must not overlap)."""
        for want, piece in self.pieces(wants):
            assert want.write is not None
            want.write(piece)

    def pieces(self, wants: Iterable[Want]) -> Iterator[tuple[Want, bytes]]:
        """Every wanted range's bytes as (want, piece) pairs, in offset order (ranges must not overlap)."""
        ordered = sorted((w for w in wants if w.size > 0), key=lambda w: w.offset)
        for run, run_wants in self._runs(ordered):
            yield from self._read_run(run, run_wants)

    def _runs(self, wants: list[Want]) -> Iterable[tuple[list[int], list[Want]]]:
        run: list[int] = []
        members: list[Want] = []
        for want in wants:
            first = self.spans.span_of(want.offset)
            last = self.spans.span_of(want.offset + want.size - 1)
            if run and first > run[-1] + 1:
                yield run, members
                run, members = [], []
            start = run[-1] + 1 if run else first
            run.extend(range(max(start, first), last + 1))
            members.append(want)
        if run:
            yield run, members

    def _read_run(self, run: list[int], wants: list[Want]) -> Iterator[tuple[Want, bytes]]:
        decoder = self.spans.decoder(run[0])
        self._fed_to: int | None = None
        position = self.spans.uncompressed_start(run[0])
        queue = deque(wants)
        try:
            for batch in self._batches(run):
                for chunk in self._verified_pieces(batch):
                    for out in decoder.feed(chunk):
                        yield from _dispatch(out, position, queue)
                        position += len(out)
                        if not queue:
                            return
        finally:
            decoder.close()
        if queue:
            raise InvalidContentError(f"layer {self.layer.digest} ended before the data the zTOC lists")

    def _batches(self, run: list[int]) -> Iterable[list[int]]:
        batch: list[int] = []
        for span in run:
            if batch:
                start = self.spans.compressed_range(batch[0])[0]
                if self.spans.compressed_range(span)[1] - start > MAX_REQUEST:
                    yield batch
                    batch = []
            batch.append(span)
        if batch:
            yield batch

    def compressed(self, start: int, end: int) -> bytes:
        """The layer's compressed bytes ``[start, end)``, unverified (a subclass may serve them from a cache)."""
        data = self.store.fetch_range(self.layer, start, end - start)  # type: ignore[attr-defined]
        self.stats.requests += 1
        self.stats.bytes_fetched += len(data)
        if len(data) != end - start:
            raise InvalidContentError(f"range read of {self.layer.digest} returned {len(data)} of {end - start} bytes")
        return data

    def verify_span(self, span: int, data: bytes | memoryview) -> None:
        """Raise :class:`DigestMismatchError` unless ``data`` are span ``span``'s compressed bytes."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        expected = self.ztoc.span_digests[span]
        if actual != expected:
            raise DigestMismatchError(f"span {span} of layer {self.layer.short()}", expected, actual)

    def _verified_pieces(self, batch: list[int]) -> Iterable[bytes]:
        start = self.spans.compressed_range(batch[0])[0]
        end = self.spans.compressed_range(batch[-1])[1]
        data = self.compressed(start, end)
        for span in batch:
            a, b = self.spans.compressed_range(span)
            self.verify_span(span, data[a - start : b - start])
            self.stats.spans += 1
            self.stats.span_ids.append(span)
            # a run's first span is fed whole; later ones from where the previous one ended,
            # so a byte shared by two gzip spans is decompressed once, and gaps are skipped
            begin = a if self._fed_to is None else max(a, self._fed_to)
            self._fed_to = b
            yield data[begin - start : b - start]


def _dispatch(out: bytes, position: int, queue: deque[Want]) -> Iterator[tuple[Want, bytes]]:
    """The parts of ``out`` (which starts at ``position``) that wanted ranges cover; the rest is dropped."""
    end = position + len(out)
    while queue:
        want = queue[0]
        if want.offset >= end:
            break
        lo = max(want.offset, position)
        hi = min(want.offset + want.size, end)
        if hi > lo:
            yield want, out[lo - position : hi - position]
        if want.offset + want.size <= end:
            queue.popleft()
        else:
            break
