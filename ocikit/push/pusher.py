"""Pushing the layers of one view: skip what the store has, stream the rest, in parallel.

Per layer, in order of cost (see :mod:`ocikit.push.cache` for the cache itself):

1. ``cached``: the layer's fingerprint (metadata only) is in the local cache and the store
   has the cached blob (``store.exists``): nothing is read;
2. ``exists``: the same package was pushed before (a local hint, or the view now at the
   target tag): the layer is hashed without compressing and reused if the store has a
   blob for that uncompressed digest;
3. ``uploaded``: compressed and streamed to the store (:mod:`ocikit.push.pipeline`).

Layers run ``concurrency`` at a time, largest first. The first failure stops the others
and is raised with the layer's title in its message; nothing else is pushed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..content.base import Store, fetch_manifest, read_all
from ..errors import OcikitError
from ..progress import Progress
from ..spack.layering import ROLE_SINGLE, LayerPlan
from ..spack.view import View
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.view_config import ViewConfig
from .cache import CachedTar, DigestCache
from .compress import Compression, FrameCompressor
from .pipeline import Pools, compress_and_push, hash_layer
from .stream import Cancelled, LayerReader, Relocation

_RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True)
class LayerResult:
    title: str
    role: str
    package: str  # package key ("zlib@1.2.13/n6pn…"), "" for the view layer
    descriptor: Descriptor
    diff_id: str
    tar_size: int
    status: str  # "uploaded", "exists" (store had it), "cached" (nothing read)
    uploaded_bytes: int
    relocated: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "role": self.role,
            "package": self.package,
            "digest": self.descriptor.digest,
            "size": self.descriptor.size,
            "mediaType": self.descriptor.media_type,
            "diffId": self.diff_id,
            "tarSize": self.tar_size,
            "status": self.status,
            "uploadedBytes": self.uploaded_bytes,
        }



class LayerPusher:
    """Pushes every layer of one view (see the module docstring)."""

    def __init__(self, store: Store, view: View, codec: Compression, relocation: Relocation,
                 cache: DigestCache, progress: Progress, concurrency: int) -> None:
        self.store = store
        self.view = view
        self.codec = codec
        self.compressor = FrameCompressor(codec)
        self.relocation = relocation
        self.cache = cache
        self.progress = progress
        self.concurrency = max(1, concurrency)
        self.cancel = threading.Event()
        self.previous_hints: dict[str, str] = {}
        self.previous_blobs: dict[str, Descriptor] = {}

    # -- hints from the artifact currently at the tag ----------------------------------

    def load_previous(self, tag: str) -> None:
        """Learn (layer identity → uncompressed digest → blob) from the view now at ``tag``."""
        if not tag:
            return
        try:
            parsed = fetch_manifest(self.store, tag)
            if parsed.artifact_type != mt.OCIKIT_VIEW_ARTIFACT or parsed.config is None:
                return
            config = ViewConfig.from_document(json.loads(read_all(self.store, parsed.config)))
            compression = config.compression
            if Compression.parse(compression.get("algorithm", ""), compression.get("level")).cache_key != self.codec.cache_key:
                return
            for layer in config.layers:
                self.previous_hints[layer.identity] = layer.diff_id
                self.previous_blobs[layer.diff_id] = Descriptor(layer.media_type, layer.digest, layer.size)
        except (OcikitError, ValueError):
            return  # no usable previous artifact: hints are only an optimisation

    # -- all layers ----------------------------------------------------------------------

    def push_all(self, plans: list[LayerPlan]) -> list[LayerResult]:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        pools = Pools.for_cores(cores)
        order = sorted(range(len(plans)), key=lambda i: -plans[i].tar_size)
        try:
            with ThreadPoolExecutor(min(self.concurrency, len(plans) or 1), "ocikit-layer") as layer_pool:
                futures = {i: layer_pool.submit(self._push_one, plans[i], pools) for i in order}
                done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None and not isinstance(f.exception(), Cancelled)]
                if failed:
                    self.cancel.set()
                    wait(futures.values())
                    raise failed[0].exception()  # type: ignore[misc]
            return [futures[i].result() for i in range(len(plans))]
        finally:
            pools.close()

    def _push_one(self, plan: LayerPlan, pools: Pools) -> LayerResult:
        try:
            return self._push_layer(plan, pools)
        except Cancelled:
            raise
        except OcikitError as exc:
            raise _in_layer(exc, plan) from exc

    def _push_layer(self, plan: LayerPlan, pools: Pools) -> LayerResult:
        task = f"layer:{plan.title}"
        fingerprint = layer_fingerprint(plan, self.relocation)
        known = self.cache.tar_for(fingerprint)
        if known is not None:
            blob = self._blob_in_store(known.diff_id)
            if blob is not None:
                self.progress.start(task, plan.title, plan.tar_size)
                self.progress.finish(task, skipped=True)
                return self._result(plan, blob, known, "cached", 0)
        elif self.cache.hint_for(plan.key) or plan.key in self.previous_hints:
            self.progress.start(task, f"checking {plan.title}", plan.tar_size)
            started = time.time_ns()
            known = hash_layer(self._reader(plan), lambda n: self.progress.advance(task, n))
            self._remember_tar(plan, fingerprint, known, started)
            blob = self._blob_in_store(known.diff_id)
            if blob is not None:
                self.progress.finish(task, skipped=True)
                return self._result(plan, blob, known, "exists", 0)
            task = f"layer:{plan.title}:upload"
        self.progress.start(task, plan.title, plan.tar_size)
        started = time.time_ns()
        outcome = compress_and_push(self._reader(plan), self.compressor, pools, self.store,
                                    lambda n: self.progress.advance(task, n))
        self.progress.finish(task)
        self._remember_tar(plan, fingerprint, outcome.tar, started)
        self.cache.remember_blob(outcome.tar.diff_id, self.codec.cache_key, outcome.descriptor.digest,
                                 outcome.descriptor.size)
        return self._result(plan, outcome.descriptor, outcome.tar, "uploaded", outcome.uploaded)

    def _reader(self, plan: LayerPlan) -> LayerReader:
        return LayerReader(self.view.source, plan, self.relocation, self.cancel)

    def _blob_in_store(self, diff_id: str) -> Descriptor | None:
        cached = self.cache.blob_for(diff_id, self.codec.cache_key)
        blob = Descriptor(self.codec.media_type, cached[0], cached[1]) if cached else self.previous_blobs.get(diff_id)
        if blob is None or blob.media_type != self.codec.media_type:
            return None
        return blob if self.store.exists(blob) else None

    def _remember_tar(self, plan: LayerPlan, fingerprint: str, tar: CachedTar, started_ns: int) -> None:
        self.cache.remember_hint(plan.key, tar.diff_id)
        newest = max((max(m.stat.st_mtime_ns, m.stat.st_ctime_ns) for m in plan.members), default=0)
        if newest < started_ns - _RACY_WINDOW_NS:
            self.cache.remember_tar(fingerprint, tar)

    def _result(self, plan: LayerPlan, blob: Descriptor, tar: CachedTar, status: str, uploaded: int) -> LayerResult:
        annotations = {mt.ANNOTATION_TITLE: plan.title, mt.ORAS_ANNOTATION_DIGEST: tar.diff_id}
        if plan.role == ROLE_SINGLE:
            annotations[mt.ORAS_ANNOTATION_UNPACK] = "true"
        descriptor = Descriptor(self.codec.media_type, blob.digest, blob.size, annotations)
        package = plan.package.key if plan.package is not None else ""
        return LayerResult(plan.title, plan.role, package, descriptor, tar.diff_id, tar.tar_size, status, uploaded,
                           tar.relocated)


def layer_fingerprint(plan: LayerPlan, relocation: Relocation) -> str:
    """Identifies a layer's exact tar from metadata alone (see ocikit.push.cache)."""
    hasher = hashlib.sha256()
    hasher.update(f"ocikit-tar-v1\0{relocation.root}\0{relocation.placeholder}\0"
                  f"{relocation.rpath_hook is not None}\0{relocation.mount_path}\n".encode())
    for e in plan.members:
        s = e.stat
        hasher.update(
            f"{e.name}\0{e.kind}\0{e.mode}\0{e.mtime}\0{e.size}\0{e.linkname}\0"
            f"{s.st_ino}\0{s.st_dev}\0{s.st_size}\0{s.st_mtime_ns}\0{s.st_ctime_ns}\n".encode()
        )
    return hasher.hexdigest()


def _in_layer(exc: OcikitError, plan: LayerPlan) -> OcikitError:
    """The same error (class, exit code), its message prefixed with the layer it happened in."""
    if f"layer {plan.title}" not in str(exc):
        exc.args = (f"layer {plan.title}: {exc}",) + tuple(exc.args[1:])
    return exc

