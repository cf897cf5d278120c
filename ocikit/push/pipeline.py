"""The streaming pipeline for one layer: frames → parallel compression → in-order upload.

Per layer, a producer thread reads the files into tar frames and submits each frame to a
shared compression pool (zstandard and zlib release the GIL, so every core compresses)
and, in order, to a single hashing thread (the uncompressed digest). The layer's own
thread takes the compressed frames in order and hands them to ``store.push_stream``,
which uploads while the producer keeps reading: reading, compressing, hashing and
uploading overlap. Nothing is written to a temporary file.

**Memory bound.** Frames hold whole tar members up to a cut point (at most ~8 MiB, see
:mod:`ocikit.push.stream`). A frame takes a permit from a pool shared by every layer of
the push when it is submitted and returns it when its compressed bytes have been handed
to the store, so at most ``permits = 2 × cores + 2`` frames are in flight in the whole
push, each at most ~8 MiB uncompressed plus its compressed copy: ≤ ``permits × 16 MiB``
(96 MiB on 2 cores, typically a third of that). On top, each layer being uploaded holds
what its store buffers: the registry store one upload chunk (``Options.chunk_size``,
16 MiB), the layout store nothing. ``--relative-rpaths`` and ``--mount-path`` read files whole
(a relocated file may change length, and its tar header comes first).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

from ..content.base import Store
from ..spec.descriptor import Descriptor
from .cache import CachedTar
from .compress import FrameCompressor
from .stream import LayerReader

_END = object()
_POLL = 0.1  # seconds between checks of the stop flag while waiting for a permit


@dataclass
class Pools:
    """Threads and frame permits shared by all layers of one push."""

    compress: ThreadPoolExecutor
    hashing: ThreadPoolExecutor
    permits: threading.BoundedSemaphore

    @classmethod
    def for_cores(cls, cores: int) -> Pools:
        cores = max(1, cores)
        return cls(
            ThreadPoolExecutor(cores, "ocikit-compress"),
            ThreadPoolExecutor(1, "ocikit-hash"),
            threading.BoundedSemaphore(2 * cores + 2),
        )

    def close(self) -> None:
        self.compress.shutdown(wait=True, cancel_futures=True)
        self.hashing.shutdown(wait=True, cancel_futures=True)


@dataclass
class UploadOutcome:
    tar: CachedTar
    descriptor: Descriptor
    uploaded: int
    frames: list[tuple[int, int, bytes]] = field(default_factory=list)


def hash_layer(reader: LayerReader, on_bytes: Callable[[int], None]) -> CachedTar:
    """The uncompressed digest and size of a layer, reading but not compressing it."""
    hasher = hashlib.sha256()
    size = 0
    for frame in reader.frames():
        hasher.update(frame)  # releases the GIL: other layers keep working meanwhile
        size += len(frame)
        on_bytes(len(frame))
    return CachedTar(f"sha256:{hasher.hexdigest()}", size, tuple(reader.relocated))


_Item = tuple[int, "Future[bytes]", "Future[None]"]
_Message = _Item | BaseException | object


class _Producer(threading.Thread):
    """Reads the layer into frames and submits them; feeds the queue the uploader drains."""

    def __init__(self, reader: LayerReader, compressor: FrameCompressor, pools: Pools, hasher: hashlib._Hash):
        super().__init__(name="ocikit-pack", daemon=True)
        self.reader, self.compressor, self.pools, self.hasher = reader, compressor, pools, hasher
        self.queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            for frame in self.reader.frames():
                if not self._acquire():
                    return
                compressed = self.pools.compress.submit(self.compressor.compress, frame)
                hashed = self.pools.hashing.submit(self.hasher.update, frame)
                self.queue.put((len(frame), compressed, hashed))
                del frame
            self.queue.put(_END)
        except BaseException as exc:  # handed to the uploading thread, which raises it
            self.queue.put(exc)

    def _acquire(self) -> bool:
        while not self.pools.permits.acquire(timeout=_POLL):
            if self.stop.is_set():
                return False
        if self.stop.is_set():
            self.pools.permits.release()
            return False
        return True

    def shutdown(self) -> None:
        """Stop producing and give back the permits of frames nobody will upload."""
        self.stop.set()
        while self.is_alive() or not self.queue.empty():
            try:
                item = self.queue.get(timeout=_POLL)
            except queue.Empty:
                continue
            if isinstance(item, tuple):
                self.pools.permits.release()


def compress_and_push(
    reader: LayerReader,
    compressor: FrameCompressor,
    pools: Pools,
    store: Store,
    on_tar_bytes: Callable[[int], None],
) -> UploadOutcome:
    """Stream the layer through compression into ``store.push_stream``."""
    hasher = hashlib.sha256()
    frames: list[tuple[int, int, bytes]] = []
    tar_size = uploaded = 0
    producer = _Producer(reader, compressor, pools, hasher)

    def count_upload(n: int) -> None:
        nonlocal uploaded
        uploaded += n

    def chunks() -> Iterator[bytes]:
        nonlocal tar_size
        while True:
            item = producer.queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            length, compressed, hashed = cast(_Item, item)
            try:
                out = compressed.result()
                hashed.result()
            finally:
                pools.permits.release()
            frames.append((len(out), length, out[-4:]))
            tar_size += length
            on_tar_bytes(length)
            yield out
        trailer = compressor.trailer(frames)
        if trailer:
            yield trailer

    producer.start()
    try:
        desc = store.push_stream(chunks(), compressor.compression.media_type, count_upload)
    finally:
        producer.shutdown()
    tar = CachedTar(f"sha256:{hasher.hexdigest()}", tar_size, tuple(reader.relocated))
    return UploadOutcome(tar, desc, uploaded, frames)
