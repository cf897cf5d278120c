"""``push_view``: a spack copy view (or any directory) → a reproducible, per-package OCI artifact.

Steps: scan the view (:mod:`ocikit.spack.view`), plan layers
(:mod:`ocikit.spack.layering`), push the layers in parallel through the streaming
pipeline (:mod:`ocikit.pack.pipeline`), then the config and, last, the manifest — so a
manifest is only ever pushed when every blob it names is in the store. Any failure stops
the other layers and raises one typed error naming the file or layer.

Skipping work (see :mod:`ocikit.pack.cache`): per layer, in order of cost —

1. the fingerprint of the tree is in the local cache and the store has the cached blob:
   nothing is read (``status="cached"``);
2. the package was pushed before (local cache, or the artifact currently at the target
   tag): the layer is hashed without compressing; if the store has a blob for that
   uncompressed digest it is reused (``status="exists"``);
3. otherwise the layer is compressed and uploaded (``status="uploaded"``).

Result: re-pushing an unchanged view uploads no blob bytes, and a view that differs by
one package uploads about that package.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Mapping

from .content.base import Store, fetch_manifest, push_manifest, read_all
from .content.open import open_store
from .errors import InvalidReferenceError, OcikitError, UnsupportedError
from .options import DEFAULT_OPTIONS, Options
from .pack.cache import CachedTar, DigestCache
from .pack.compress import GZIP, ZSTD, Compression, FrameCompressor
from .pack.pipeline import Pools, compress_and_push, hash_layer
from .pack.stream import Cancelled, LayerReader, Relocation, RpathHook
from .progress import NULL_PROGRESS, Progress
from .reference import Reference, parse_reference
from .spack.artifact import build_config, created_timestamp, placeholder_for, relocation_record
from .spack.layering import DEFAULT_MAX_LAYER_SIZE, PACKAGES, ROLE_SINGLE, SINGLE, LayerPlan, plan_layers
from .spack.view import View, scan_view
from .spec import mediatypes as mt
from .spec.descriptor import Descriptor
from .spec.manifest import build_manifest, canonical_json

MIN_LAYER_SIZE = 1 << 20
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


@dataclass(frozen=True)
class PushResult:
    reference: str
    manifest: Descriptor
    config: dict[str, Any]
    config_descriptor: Descriptor
    layers: tuple[LayerResult, ...]
    uploaded_bytes: int  # blob bytes sent (layers + config); manifests are not counted
    compat: Descriptor | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.manifest.digest,
            "mediaType": self.manifest.media_type,
            "size": self.manifest.size,
            "config": self.config_descriptor.digest,
            "uploadedBytes": self.uploaded_bytes,
            "layers": [layer.to_dict() for layer in self.layers],
            "compat": self.compat.digest if self.compat else None,
            "warnings": list(self.warnings),
        }


def push_view(
    view_dir: str,
    reference: "str | Reference",
    *,
    options: Options = DEFAULT_OPTIONS,
    layers: str = PACKAGES,
    compression: str | None = None,
    level: int | None = None,
    max_layer_size: int = DEFAULT_MAX_LAYER_SIZE,
    labels: Mapping[str, str] | None = None,
    allow_external_symlinks: bool = False,
    root: str | None = None,
    view_path: str | None = None,
    name: str | None = None,
    relative_rpaths: bool = False,
    compat: bool = True,
    cache_dir: str | None = None,
    store: Store | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Push ``view_dir`` to ``reference`` (``host/repo:tag`` or ``oci:PATH:tag``) as a view artifact.

    ``layers``: ``"packages"`` (one layer per package plus the view's own) or ``"single"``
    (one ORAS-style directory layer). ``compression``: ``"zstd"`` (default for packages)
    or ``"gzip"`` (default for single, so ``oras pull`` unpacks it); ``level`` defaults
    to 3 (zstd) / 6 (gzip). ``root`` is the original real root of a view copied elsewhere,
    ``view_path`` the path users knew it by. ``cache_dir=""`` disables the digest cache.
    ``store`` overrides the store ``reference`` would open (its tag is still used).
    """
    progress = progress or NULL_PROGRESS
    if layers not in (PACKAGES, SINGLE):
        raise InvalidReferenceError(f"unknown layer mode {layers!r} (expected packages or single)")
    codec = Compression.parse(compression or (GZIP if layers == SINGLE else ZSTD), level)
    if max_layer_size < MIN_LAYER_SIZE:
        raise InvalidReferenceError(f"--max-layer-size must be at least {MIN_LAYER_SIZE} bytes")
    rpath_hook = _relative_rpath_hook() if relative_rpaths else None
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    if ref.digest:
        raise InvalidReferenceError(f"push-view needs a tag (or none), not a digest: {reference}")

    progress.message("scanning view")
    view = scan_view(view_dir, root=root, view_path=view_path, name=name,
                     allow_external_symlinks=allow_external_symlinks)
    plans = plan_layers(view, layers, max_layer_size, "" if layers == SINGLE else codec.extension)
    relocation = Relocation(view.real_root, _placeholder(view, layers), rpath_hook)
    if store is None:
        store, _ = open_store(ref, options)

    cache = DigestCache(cache_dir)
    try:
        pusher = _LayerPusher(store, view, codec, relocation, cache, progress, options.concurrency)
        pusher.load_previous(ref.tag)
        results = pusher.push_all(plans)
    finally:
        cache.close()

    relocated = [path for result in results for path in result.relocated]
    config = build_config(
        view, layers, plans,
        [r.descriptor for r in results], [r.diff_id for r in results],
        codec.describe(),
        relocation_record(view, relocation.placeholder, relocated, relative_rpaths),
        created_timestamp(plans),
    )
    config_bytes = canonical_json(config)
    config_desc = Descriptor.from_bytes(mt.OCIKIT_VIEW_CONFIG, config_bytes)
    config_uploaded = 0
    if not store.exists(config_desc):
        store.push(config_desc, config_bytes)
        config_uploaded = len(config_bytes)

    annotations = {mt.ANNOTATION_CREATED: config["created"], **dict(labels or {})}
    manifest = build_manifest(
        [r.descriptor for r in results], config_desc, artifact_type=mt.OCIKIT_VIEW_ARTIFACT, annotations=annotations
    )
    progress.message("pushing manifest")
    manifest_desc = push_manifest(store, manifest, mt.OCI_MANIFEST, tag=ref.tag)
    warnings: list[str] = []
    compat_desc = _attach_compat(store, manifest_desc, view, warnings) if compat else None
    return PushResult(
        reference=str(ref),
        manifest=manifest_desc.replace(artifact_type=mt.OCIKIT_VIEW_ARTIFACT),
        config=config,
        config_descriptor=config_desc,
        layers=tuple(results),
        uploaded_bytes=sum(r.uploaded_bytes for r in results) + config_uploaded,
        compat=compat_desc,
        warnings=tuple(warnings),
    )


def _placeholder(view: View, mode: str) -> str:
    if mode != PACKAGES:
        return ""
    try:
        return placeholder_for(view.real_root)
    except ValueError:
        return ""  # too short to replace safely: stored as is, restored by root (see artifact.py)


def _relative_rpath_hook() -> RpathHook:
    # HOOK(relocate): the relocation helper provides
    #   ocikit.relocate.elf.make_rpaths_relative(data: bytes, relpath: str, root: str) -> bytes
    # (same length). The lead wires it when both land; until then the flag fails clearly.
    try:
        from .relocate.elf import make_rpaths_relative  # type: ignore[import-not-found]
    except ImportError:
        raise UnsupportedError("--relative-rpaths needs ocikit.relocate.elf, which is not available") from None
    return make_rpaths_relative  # type: ignore[no-any-return]


def _attach_compat(store: Store, subject: Descriptor, view: View, warnings: list[str]) -> Descriptor | None:
    # HOOK(compat): the compat helper provides ocikit.compat.scan(path) -> ScanReport and
    # attach_compat(store, subject, report) -> Descriptor (a referrer of the view manifest).
    # The lead wires it when both land; until then push-view records that it was skipped.
    try:
        from .compat import attach_compat, scan  # type: ignore[attr-defined]
    except ImportError:
        warnings.append("compatibility metadata not attached: ocikit.compat is not available")
        return None
    return attach_compat(store, subject, scan(view.source))  # type: ignore[no-any-return]


class _LayerPusher:
    """Pushes every layer of one view, in parallel, with the skip logic of the module docstring."""

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
            config = json.loads(read_all(self.store, parsed.config))
            if Compression.parse(**_compression_args(config)).cache_key != self.codec.cache_key:
                return
            for layer in config.get("layers", []):
                key = _layer_key(layer)
                self.previous_hints[key] = layer["diffId"]
                self.previous_blobs[layer["diffId"]] = Descriptor(layer["mediaType"], layer["digest"], layer["size"])
        except (OcikitError, ValueError, KeyError, TypeError):
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
    """Identifies a layer's exact tar from metadata alone (see ocikit.pack.cache)."""
    import hashlib

    hasher = hashlib.sha256()
    hasher.update(f"ocikit-tar-v1\0{relocation.root}\0{relocation.placeholder}\0"
                  f"{relocation.rpath_hook is not None}\n".encode())
    for e in plan.members:
        s = e.stat
        hasher.update(
            f"{e.name}\0{e.kind}\0{e.mode}\0{e.mtime}\0{e.size}\0{e.linkname}\0"
            f"{s.st_ino}\0{s.st_dev}\0{s.st_size}\0{s.st_mtime_ns}\0{s.st_ctime_ns}\n".encode()
        )
    return hasher.hexdigest()


def _layer_key(layer: Mapping[str, Any]) -> str:
    package = layer.get("package")
    who = f"{package['name']}@{package['version']}/{package['hash']}" if package and package.get("hash") else (
        package["name"] if package else layer["title"])
    return f"{layer['role']}:{who}#{layer['part']}/{layer['parts']}"


def _compression_args(config: Mapping[str, Any]) -> dict[str, Any]:
    compression = config.get("compression") or {}
    return {"algorithm": compression.get("algorithm", ""), "level": compression.get("level")}


def _in_layer(exc: OcikitError, plan: LayerPlan) -> OcikitError:
    """The same error (class, exit code), its message prefixed with the layer it happened in."""
    if f"layer {plan.title}" not in str(exc):
        exc.args = (f"layer {plan.title}: {exc}",) + tuple(exc.args[1:])
    return exc
