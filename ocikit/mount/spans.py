"""File data for a mount: spans fetched by range reads, verified, kept on disk by digest.

A span's compressed bytes are named by the sha256 its zTOC records, so the cache
(``CACHE/mount/spans/sha256/ab/abcd…``) is shared by every mount and every image that has the same
layer, and a remount reads nothing from the network. A span is verified against its digest
after every fetch and again before each decode (a cache file changed on disk is dropped and
fetched again), so no byte reaches a reader unverified.

Decoded spans are kept in memory (least recently used first out, ``memory_bytes`` in all),
so a file read in 128 KiB pieces decodes each span once. One lock per span makes
concurrent readers of one file fetch and decode each span once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass

from ..content.base import Store
from ..errors import DigestMismatchError, LocalIOError
from ..spec.descriptor import Descriptor
from ..ztoc.fetch import MAX_REQUEST, LayerReader, Want
from ..ztoc.ztoc import Ztoc
from .keep import keep_file

DEFAULT_MEMORY = 128 << 20  # decoded span bytes kept in memory per mount


@dataclass
class MountStats:
    """What a mount cost so far: network, disk cache, memory."""

    bytes_fetched: int = 0  # compressed bytes read from the registry
    spans_fetched: int = 0
    requests: int = 0
    cache_hits: int = 0  # spans read from the disk cache
    memory_hits: int = 0  # reads served by an already decoded span
    errors: int = 0  # reads answered with EIO
    last_error: str = ""
    prefetched: int = 0  # layers (``all``) or listed files whose spans prefetch has fetched
    prefetch_done: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def cost(self) -> tuple[int, int, int]:
        """The counters a caller waits on (memory hits are left to the periodic report)."""
        return self.spans_fetched, self.cache_hits, self.errors


class SpanCache:
    """Compressed spans on local disk, named by their sha256; safe to share between processes."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = os.path.join(root, "mount", "spans", "sha256")

    def path(self, digest: str) -> str:
        hexdigest = digest.split(":", 1)[1]
        return os.path.join(self.dir, hexdigest[:2], hexdigest)

    def get(self, digest: str) -> bytes | None:
        try:
            with open(self.path(digest), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LocalIOError(f"cannot read the span cache: {exc.strerror}") from None
        with contextlib.suppress(OSError):
            os.utime(self.path(digest))  # last use, for gc
        return data

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def put(self, digest: str, data: bytes | memoryview) -> None:
        """Store verified bytes (written beside their name and renamed: readers never see a part)."""
        keep_file(self.path(digest), data)

    def drop(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))


@dataclass
class SpanGcResult:
    removed: int = 0
    freed_bytes: int = 0
    kept: int = 0
    total_bytes: int = 0


def gc_spans(root: str, max_bytes: int | None = None, max_age: float | None = None) -> SpanGcResult:
    """Remove cached spans, documents and prepared trees unused for ``max_age`` seconds, then the least recently
    used until at most ``max_bytes`` remain. A span removed under a running mount is fetched again
    when read."""
    files: list[tuple[float, int, str]] = []
    kept = [os.path.join(root, "mount", part) for part in ("spans", "documents", "trees")]  # not stats/, relocated.*/
    for dirpath, _, names in (walked for top in kept for walked in os.walk(top)):
        for name in names:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(path)
                files.append((st.st_mtime, st.st_size, path))
    files.sort()  # oldest use first
    result = SpanGcResult(total_bytes=sum(size for _, size, _ in files))
    now = time.time()
    for used, size, path in files:
        too_old = max_age is not None and now - used > max_age
        too_big = max_bytes is not None and result.total_bytes > max_bytes
        if not (too_old or too_big):
            result.kept += 1
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        result.removed += 1
        result.freed_bytes += size
        result.total_bytes -= size
    return result


class _CachedReader(LayerReader):
    """A :class:`LayerReader` for one span whose compressed bytes come from the span cache."""

    def __init__(self, data: LayerData, span: int) -> None:
        super().__init__(data.store, data.layer, data.ztoc)
        self.data, self.span = data, span

    def compressed(self, start: int, end: int) -> bytes:
        assert (start, end) == self.spans.compressed_range(self.span)  # decodes are one span long
        return self.data.span_bytes(self.span)


class LayerData:
    """Reads of one layer's uncompressed tar, span by span, through the cache."""

    def __init__(self, store: Store, layer: Descriptor, ztoc: Ztoc, cache: SpanCache, stats: MountStats,
                 memory: DecodedSpans) -> None:
        self.store, self.layer, self.ztoc, self.cache, self.stats, self.memory = store, layer, ztoc, cache, stats, memory
        self.spans = ztoc.spans()
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self._checker = LayerReader(store, layer, ztoc)

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes of the uncompressed tar from ``offset`` (within one file's data)."""
        if size <= 0:
            return b""
        first, last = self.spans.span_of(offset), self.spans.span_of(offset + size - 1)
        parts = []
        for span in range(first, last + 1):
            start = self.spans.uncompressed_start(span)
            decoded = self.decoded(span)
            lo, hi = max(offset, start), min(offset + size, start + len(decoded))
            parts.append(decoded[lo - start : hi - start])
        return b"".join(parts)

    def decoded(self, span: int) -> bytes:
        """The uncompressed bytes of one span (decoded once; concurrent callers wait for it)."""
        key = (self.layer.digest, span)
        data = self.memory.get(key)
        if data is not None:
            self.stats.memory_hits += 1
            return data
        with self._lock(span):
            data = self.memory.get(key)
            if data is None:
                data = self._decode(span)
                self.memory.put(key, data)
        return data

    def _decode(self, span: int) -> bytes:
        start = self.spans.uncompressed_start(span)
        end = self.spans.uncompressed_start(span + 1) if span + 1 < self.spans.span_count else self.spans.uncompressed_size
        try:
            return self._decode_once(span, start, end)
        except DigestMismatchError:
            # a cache file that changed on disk: forget it and fetch it again, once
            self.cache.drop(self.ztoc.span_digests[span])
            return self._decode_once(span, start, end)

    def _decode_once(self, span: int, start: int, end: int) -> bytes:
        reader = _CachedReader(self, span)
        return b"".join(piece for _, piece in reader.pieces([Want(start, end - start)]))

    def span_bytes(self, span: int) -> bytes:
        """Span ``span``'s compressed bytes: from the cache, or fetched, verified and cached."""
        digest = self.ztoc.span_digests[span]
        data = self.cache.get(digest)
        if data is not None:
            self.stats.cache_hits += 1
            return data
        self.fetch_spans([span])
        data = self.cache.get(digest)
        if data is None:  # the cache cannot hold it (full disk): fetch for this read only
            a, b = self.spans.compressed_range(span)
            data = self._fetch(a, b)
            self._checker.verify_span(span, data)
        return data

    def fetch_spans(self, spans: list[int]) -> None:
        """Fetch the spans the cache lacks, consecutive ones in one request (up to MAX_REQUEST),
        verify each and store it."""
        missing = [s for s in spans if not self.cache.has(self.ztoc.span_digests[s])]
        for run in _runs(missing, self.spans, MAX_REQUEST):
            start = self.spans.compressed_range(run[0])[0]
            data = memoryview(self._fetch(start, self.spans.compressed_range(run[-1])[1]))
            for span in run:
                a, b = self.spans.compressed_range(span)
                self._checker.verify_span(span, data[a - start : b - start])
                self.cache.put(self.ztoc.span_digests[span], data[a - start : b - start])
                self.stats.spans_fetched += 1

    def _fetch(self, start: int, end: int) -> bytes:
        data = self._checker.compressed(start, end)
        self.stats.requests += 1
        self.stats.bytes_fetched += len(data)
        return data

    def _lock(self, span: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(span, threading.Lock())


def _runs(spans: list[int], index: object, limit: int) -> list[list[int]]:
    """Consecutive spans grouped, each group at most ``limit`` compressed bytes."""
    runs: list[list[int]] = []
    for span in sorted(spans):
        if runs and runs[-1][-1] == span - 1:
            first = index.compressed_range(runs[-1][0])[0]  # type: ignore[attr-defined]
            if index.compressed_range(span)[1] - first <= limit:  # type: ignore[attr-defined]
                runs[-1].append(span)
                continue
        runs.append([span])
    return runs


class DecodedSpans:
    """Decoded spans in memory, least recently used out first once ``limit`` bytes are held."""

    def __init__(self, limit: int = DEFAULT_MEMORY) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple[str, int], data: bytes) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.limit and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
