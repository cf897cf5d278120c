"""Background prefetch: fill the span cache after the mount is up, so later reads cost no network.

``all`` fetches every layer in span order; a list of paths (a file with one path a line, as
``--record`` writes them, or ``referrer``: the newest ``application/vnd.ocikit.prefetch.v1``
referrer of the artifact, such a file attached with ``ocikit attach``) fetches the spans of
those files, in the order listed, then nothing more. The
prefetcher takes at most ``rate`` bytes per second, so it does not starve the reads of the
application it is preparing for, and stops when the mount ends. A span it cannot fetch is
left for the read that needs it (which then reports the error).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..content.base import Store, SupportsReferrers, fetch_manifest, read_all
from ..errors import LocalIOError
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..ztoc.fetch import MAX_REQUEST

if TYPE_CHECKING:
    from .serve import PreparedMount
    from .spans import LayerData

log = logging.getLogger("ocikit.mount")


class Prefetcher(threading.Thread):
    def __init__(self, prepared: PreparedMount, what: str, rate: int, stop: threading.Event,
                 report: Callable[[], None] = lambda: None) -> None:
        super().__init__(name="ocikit-mount-prefetch", daemon=True)
        self.prepared = prepared
        self.what = what
        self.rate = rate
        self.stop = stop
        self.report = report

    def run(self) -> None:
        try:
            plan = self._plan()
            started, taken = time.monotonic(), 0
            for layer, spans in plan:
                for chunk in _chunks(spans, layer):
                    if self.stop.is_set():
                        return
                    before = layer.stats.bytes_fetched
                    layer.fetch_spans(chunk)
                    taken += layer.stats.bytes_fetched - before
                    self.report()
                    self._throttle(started, taken)
                layer.stats.prefetched += 1
                self.report()
            self.prepared.stats.prefetch_done = True
            self.report()
        except Exception as exc:  # a prefetch failure is not a read failure
            log.warning("prefetch stopped: %s", exc)

    def _plan(self) -> list[tuple[LayerData, list[int]]]:
        layers = self.prepared.layers
        if self.what == "all":
            return [(layer, list(range(layer.spans.span_count))) for layer in layers]
        tree = self.prepared.tree
        wanted: list[tuple[LayerData, list[int]]] = []
        for path in self.prepared.prefetch_paths or ():
            entry = tree.lookup(path)
            if entry is None or entry.layer < 0 or entry.size == 0:
                continue
            layer = layers[entry.layer]
            first = layer.spans.span_of(entry.offset)
            last = layer.spans.span_of(entry.offset + entry.size - 1)
            wanted.append((layer, list(range(first, last + 1))))
        return wanted

    def _throttle(self, started: float, taken: int) -> None:
        if self.rate <= 0:
            return
        ahead = taken / self.rate - (time.monotonic() - started)
        if ahead > 0:
            self.stop.wait(ahead)


def _chunks(spans: list[int], layer: LayerData) -> list[list[int]]:
    """Spans in groups of about one request each (so the rate limit and a stop act between requests)."""
    groups: list[list[int]] = []
    size = 0
    for span in spans:
        a, b = layer.spans.compressed_range(span)
        if not groups or size + (b - a) > MAX_REQUEST:
            groups.append([])
            size = 0
        groups[-1].append(span)
        size += b - a
    return groups


def prefetch_paths(what: str, store: Store, manifest: Descriptor) -> list[str] | None:
    """The paths a ``prefetch`` setting lists (None for ``none``/``all``; [] when a referrer is absent)."""
    if what in ("none", "all"):
        return None
    if what == "referrer":
        text = _referred_list(store, manifest)
    else:
        try:
            with open(what, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise LocalIOError(f"cannot read the prefetch list {what}: {exc.strerror}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _referred_list(store: Store, manifest: Descriptor) -> str:
    if not isinstance(store, SupportsReferrers):
        return ""
    found = store.referrers(manifest, mt.OCIKIT_PREFETCH_ARTIFACT)
    if not found:
        return ""
    newest = max(found, key=lambda d: d.annotations.get("org.opencontainers.image.created", ""))
    layers = fetch_manifest(store, newest).layers
    return read_all(store, layers[0], limit=16 << 20).decode("utf-8", "replace") if layers else ""
