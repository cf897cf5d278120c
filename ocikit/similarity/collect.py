"""Collect the layer lists of many images: resolve, pick a platform, fetch concurrently, cache.

For each reference the collector resolves the tag (every run: tags move), fetches the
manifest — through an index to the manifest of the chosen platform (``platform``, the
host's by default) — and, for ``by="diff-id"``, the config whose ``rootfs.diff_ids`` name
the uncompressed layers. Documents come from the on-disk :class:`ManifestCache` when
present, so a digest-pinned rerun makes no request and does not even open a connection.

Work runs on a bounded thread pool (``concurrency`` workers), so 1,000 manifests from a
registry cost about 1000 / concurrency round trips, not 1000. Stores are opened once per
repository and shared by the workers. OCI layouts on disk are read directly, never cached
(a copy in the cache would only double the disk use), and their tags are read from
``index.json`` once per run instead of once per reference.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from ..content.base import Store, SupportsTagList, read_all
from ..content.layout import LayoutStore
from ..content.open import open_store
from ..errors import (
    InvalidContentError,
    InvalidReferenceError,
    LocalIOError,
    NotFoundError,
    OcikitError,
    RegistryError,
    UnsupportedError,
)
from ..options import DEFAULT_OPTIONS, Options
from ..progress import NULL_PROGRESS, Progress
from ..reference import LayoutReference, Reference, parse_reference
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor, Platform
from ..spec.manifest import ParsedManifest, select_platform
from .cache import ManifestCache
from .manifests import ImageManifest, read_document

BY_DIGEST = "digest"
BY_DIFF_ID = "diff-id"
MODES = (BY_DIGEST, BY_DIFF_ID)

PROGRESS_TASK = "similarity:manifests"

# Manifest fetches are small requests whose cost is the round trip, not bandwidth, so
# more of them run at once than blob transfers (Options.concurrency, 4 by default).
DEFAULT_CONCURRENCY = 16

# distribution-spec referrers tag schema: <alg>-<hex>, pointing at an index of referrers.
_REFERRERS_FALLBACK_TAG = re.compile(r"sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128}")


@dataclass(frozen=True)
class ImageLayers:
    """What the similarity needs to know about one image."""

    name: str  # the reference as the user gave it (or REPO:TAG for an expanded repository)
    digest: str  # digest of the (platform) image manifest
    layers: tuple[str, ...]  # layer digests, in manifest order
    sizes: tuple[int, ...]  # compressed layer sizes, parallel to ``layers``
    diff_ids: tuple[str, ...] = ()  # uncompressed layer digests from the config (by="diff-id" only)
    index_digest: str = ""  # the index the manifest was chosen from, if any
    platform: str = ""  # the platform chosen from that index

    def keys(self, by: str) -> tuple[str, ...]:
        """The layer identities compared in mode ``by``."""
        return self.diff_ids if by == BY_DIFF_ID else self.layers


def read_reference_file(path: str) -> list[str]:
    """References from a text file: one per line; blank lines and ``#`` comments are ignored."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise LocalIOError(f"cannot read reference list {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidContentError(f"reference list {path} is not UTF-8 text") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def collect_images(
    references: Iterable[str] = (),
    repositories: Iterable[str] = (),
    *,
    by: str = BY_DIGEST,
    platform: Platform | str | None = None,
    options: Options = DEFAULT_OPTIONS,
    concurrency: int | None = None,
    cache_dir: str | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> list[ImageLayers]:
    """Resolve and fetch every image; the result is in input order (references, then repositories).

    Duplicate names are compared once. Raises a typed error naming the first reference
    that failed; nothing is returned half-done.
    """
    if by not in MODES:
        raise UnsupportedError(f"unknown similarity mode {by!r} (choose {' or '.join(MODES)})")
    workers = DEFAULT_CONCURRENCY if concurrency is None else concurrency
    if workers < 1:
        raise UnsupportedError(f"concurrency must be at least 1, not {workers}")
    wanted = Platform.parse(platform) if isinstance(platform, str) else (platform or Platform.host())
    # The registry connection pool is sized from options.concurrency: match it to the workers.
    pool = _StorePool(replace(options, concurrency=workers))
    named = _parse_all(references) + _expand_repositories(repositories, pool)
    named = list({name: ref for name, ref in named}.items())  # drop repeats, keep first position
    if not named:
        raise NotFoundError("no images to compare: give references, --repository or --from-file")
    collector = _Collector(pool, by, wanted, ManifestCache(cache_dir) if use_cache else None)
    return _run_pool(collector, named, workers, progress or NULL_PROGRESS)


def _parse_all(references: Iterable[str]) -> list[tuple[str, Reference]]:
    return [(text, parse_reference(text)) for text in references]


def _expand_repositories(repositories: Iterable[str], pool: _StorePool) -> list[tuple[str, Reference]]:
    """Every tag of each repository, as ``REPO:TAG`` references."""
    named: list[tuple[str, Reference]] = []
    for text in repositories:
        repo = parse_reference(text)
        if repo.tag or repo.digest:
            raise InvalidReferenceError(f"--repository takes a repository without tag or digest, not {text!r}")
        store = pool.store(repo)
        if not isinstance(store, SupportsTagList):
            raise UnsupportedError(f"{store.describe()} cannot list its tags")
        for tag in store.tags():
            if _REFERRERS_FALLBACK_TAG.fullmatch(tag):
                continue  # an index of referrers (signatures, SBOMs), not an image
            ref = repo.with_tag(tag)
            named.append((str(ref), ref))
    return named


def _run_pool(
    collector: _Collector, named: Sequence[tuple[str, Reference]], workers: int, progress: Progress
) -> list[ImageLayers]:
    progress.start(PROGRESS_TASK, "manifests", total=len(named), unit="manifests")

    def one(name: str, ref: Reference) -> ImageLayers:
        try:
            image = collector.collect(name, ref)
        except OcikitError as exc:
            raise _name_in_error(exc, name) from exc
        progress.advance(PROGRESS_TASK, 1)
        return image

    # Threads hide network round trips; reading local layouts is CPU-bound under the GIL,
    # where a pool only adds overhead, so those run on the calling thread.
    if workers == 1 or all(isinstance(ref, LayoutReference) for _, ref in named):
        images = [one(name, ref) for name, ref in named]
    else:
        images = _in_threads(one, named, workers)
    progress.finish(PROGRESS_TASK)
    return images


def _in_threads(one: Any, named: Sequence[tuple[str, Reference]], workers: int) -> list[ImageLayers]:
    """Run ``one`` over ``named`` on ``workers`` threads; the first failure (or Ctrl-C) cancels the rest."""
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocikit-similarity")
    try:
        futures = [executor.submit(one, name, ref) for name, ref in named]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            raise failed.exception()  # type: ignore[misc]
        return [future.result() for future in futures]
    finally:
        executor.shutdown(wait=True, cancel_futures=True)  # waits only for the few already running


def _name_in_error(exc: OcikitError, name: str) -> OcikitError:
    """The same kind of error, with the image's name in the message (the CLI shows one line)."""
    if name in str(exc):
        return exc
    if isinstance(exc, RegistryError):
        return type(exc)(
            exc.registry, f"{exc.operation} for {name}", exc.status, exc.details, exc.method, exc.url, exc.reason
        )
    for cls in type(exc).__mro__:  # only classes built from a plain message can be rebuilt from one
        if cls is OcikitError:
            return type(exc)(f"{name}: {exc}")
        if "__init__" in vars(cls):
            return exc
    return exc


class _StorePool:
    """One store per repository, opened on first use and shared by all workers."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._stores: dict[str, Store] = {}
        self._layout_tags: dict[str, dict[str, Descriptor]] = {}

    @staticmethod
    def _key(ref: Reference) -> str:
        if isinstance(ref, LayoutReference):
            return "oci:" + os.path.abspath(ref.path)
        return str(ref.repository_reference())

    def store(self, ref: Reference) -> Store:
        key = self._key(ref)
        with self._lock:
            if key not in self._stores:
                self._stores[key] = open_store(ref.repository_reference(), self._options, create=False)[0]
            return self._stores[key]

    def resolve_tag(self, ref: Reference) -> Descriptor:
        """The manifest descriptor a tag points at, asked of the store now (tags move)."""
        store = self.store(ref)
        if isinstance(store, LayoutStore) and ref.tag:
            return self._layout_tag_map(store).get(ref.tag) or store.resolve(ref.tag)
        return store.resolve(ref.reference)

    def _layout_tag_map(self, store: LayoutStore) -> dict[str, Descriptor]:
        # One read of index.json per run: resolving 10,000 tags one by one would parse it 10,000 times.
        with self._lock:
            if store.root not in self._layout_tags:
                tags: dict[str, Descriptor] = {}
                for entry in store.entries():  # later entries win, as in LayoutStore.resolve
                    name = entry.annotations.get(mt.ANNOTATION_REF_NAME)
                    if name:
                        tags[name] = entry
                self._layout_tags[store.root] = tags
            return self._layout_tags[store.root]


class _Collector:
    """Turns one reference into :class:`ImageLayers` (called from several threads)."""

    def __init__(self, pool: _StorePool, by: str, platform: Platform, cache: ManifestCache | None) -> None:
        self.pool = pool
        self.by = by
        self.platform = platform
        self.cache = cache

    def collect(self, name: str, ref: Reference) -> ImageLayers:
        top = self._top_document(ref)
        index_digest, chosen = "", ""
        manifest = top
        if isinstance(top, ParsedManifest):  # an index: take the wanted platform's manifest
            entry = select_platform(top, self.platform)
            index_digest, chosen = top.digest, str(entry.platform)
            manifest = self._document(ref, entry.digest, entry)
        if isinstance(manifest, ParsedManifest):  # the platform's entry is itself an index
            raise UnsupportedError(f"nested index {manifest.digest} is not supported")
        diff_ids = self._diff_ids(ref, manifest) if self.by == BY_DIFF_ID else ()
        return ImageLayers(name, manifest.digest, manifest.layers, manifest.sizes, diff_ids, index_digest, chosen)

    def _top_document(self, ref: Reference) -> ImageManifest | ParsedManifest:
        if ref.digest:  # pinned: the cache can answer without touching the store
            return self._document(ref, ref.digest, None)
        desc = self.pool.resolve_tag(ref)
        return self._document(ref, desc.digest, desc)

    def _document(self, ref: Reference, digest: str, desc: Descriptor | None) -> ImageManifest | ParsedManifest:
        media_type = desc.media_type if desc and desc.media_type in mt.MANIFEST_OR_INDEX_TYPES else ""
        return read_document(self._raw(ref, digest, desc), digest, media_type)

    def _raw(self, ref: Reference, digest: str, desc: Descriptor | None) -> bytes:
        cache = self.cache if self._cacheable(ref) else None
        if cache is not None:
            cached = cache.get(digest)
            if cached is not None:
                return cached
        store = self.pool.store(ref)
        raw = read_all(store, desc if desc is not None else store.resolve(digest))
        if cache is not None:
            cache.put(digest, raw)
        return raw

    @staticmethod
    def _cacheable(ref: Reference) -> bool:
        return not isinstance(ref, LayoutReference)  # layouts are local files already

    def _diff_ids(self, ref: Reference, manifest: ImageManifest) -> tuple[str, ...]:
        config = manifest.config
        document = _json_object(self._raw(ref, config.digest, config), config.digest)
        if config.media_type == mt.OCIKIT_VIEW_CONFIG:
            return _view_diff_ids(document, manifest)
        rootfs = document.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise InvalidContentError(
                f"config {config.digest} ({config.media_type}) has no rootfs.diff_ids list: use by digest"
            )
        if len(diff_ids) != len(manifest.layers):
            raise InvalidContentError(
                f"config {config.digest} lists {len(diff_ids)} diff_ids for {len(manifest.layers)} layers "
                f"of {manifest.digest}"
            )
        return tuple(diff_ids)


def _view_diff_ids(document: dict[str, Any], manifest: ImageManifest) -> tuple[str, ...]:
    """An ocikit view's config records each layer's uncompressed digest (``layers[].diffId``)."""
    from ..spec.view_config import ViewConfig

    view = ViewConfig.from_document(document)
    diff_ids = []
    for digest in manifest.layers:
        layer = view.layer(digest)
        if layer is None or not layer.diff_id:
            raise InvalidContentError(f"view config of {manifest.digest} records no diffId for layer {digest}")
        diff_ids.append(layer.diff_id)
    return tuple(diff_ids)


def _json_object(raw: bytes, digest: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidContentError(f"config {digest} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidContentError(f"config {digest} is not a JSON object")
    return document
