"""A node-wide cache of blobs and extracted trees, for CSI drivers and shared hosts.

Layout under ``root``::

    blobs/             an OCI image layout (LayoutStore): layer blobs, manifests, configs
    trees/<alg>-<hex>.<key>/   the extracted, *unrelocated* tree of one manifest under one
                       policy (+ .ocikit/ready.json); ``<key>`` hashes ``PullPolicy.tree_key()``
    entries/<alg>-<hex>.<key>.json   what a tree is: references, kind, sizes, blobs, tree key; mtime = last use
    locks/<alg>-<hex>.<key>.lock     per-tree flock: one process builds a tree, the others wait
    locks/gc.lock      shared while building, exclusive while collecting garbage
    facts/<alg>-<hex>.json     what an application image offers a view (``policy.against``)
    tmp/               staging trees and blob downloads of running pulls

:meth:`NodeCache.ensure` makes sure the tree of a reference exists: a pinned digest whose
tree exists costs no network at all; blobs already in the cache are read locally; missing
blobs stream from the registry through extraction *and* into ``blobs/`` at the same time.
Concurrent ``ensure`` calls for one digest (threads or processes) download it once: the
first holds the tree's lock, the others wait for it and then find the tree.

The policy is part of what a tree *is*: a tree extracted with ``allow_devices``,
``preserve_special_modes`` or a larger ``max_size`` holds things a stricter pull refuses, so
trees are keyed by manifest digest *and* :meth:`PullPolicy.tree_key`, and a strict pull
never gets a permissive pull's tree (it extracts its own, from the blobs already cached).

:meth:`NodeCache.publish` materialises a tree into a pod's directory (hardlink, reflink
or copy), relocates a view to the path the pod will see (``relocate_to``: with a CSI
driver the volume's mount path inside the container, not the kubelet's target path), and
marks it ready. Relocation writes new files, so hardlinked inodes of the cache are never
modified. :meth:`NodeCache.gc` evicts least-recently-used trees by age and total size.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from ..content.base import Store
from ..content.layout import LayoutStore
from ..digest import VerifyingReader
from ..errors import InvalidReferenceError, LocalIOError, NotFoundError, UnsupportedError
from ..extract.plan import KIND_VIEW, ArtifactPlan, plan_artifact, resolve_manifest
from ..extract.whiteout import remove_tree
from ..options import DEFAULT_OPTIONS, Options
from ..progress import NULL_PROGRESS, Progress
from ..reference import Reference, parse_reference
from ..spec.descriptor import Descriptor
from ..spec.manifest import canonical_json
from ..spec.view_config import ViewConfig
from .destination import Destination
from .materialize import make_read_only, materialize
from .policy import DEFAULT_POLICY, PullPolicy
from .ready import MARKER_DIR, MARKER_NAME, read_marker, write_document
from .steps import check_compatibility, extract_tree, marker_document, open_source, relocate_view

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class CacheEntry:
    """One cached tree (``path``), keyed by its manifest digest."""

    digest: str
    reference_digest: str
    references: list[str]
    kind: str
    path: str
    size: int  # bytes of file data in the tree
    files: int
    layers: int
    blobs: list[str]  # digests of the blobs kept for it (manifest, config, layers)
    blob_bytes: int
    created: float
    last_used: float
    tree_key: str = ""  # PullPolicy.tree_key() of the policy it was extracted under
    downloaded: int = 0  # blob bytes fetched from the source by the call that returned it
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("config")
        return data


@dataclass(frozen=True)
class PublishResult:
    target: str
    digest: str
    mode: str  # the link mode actually used (auto resolves to reflink or copy)
    files: int
    directories: int
    symlinks: int
    bytes: int
    relocated_to: str
    read_only: bool


@dataclass(frozen=True)
class GcResult:
    removed: list[str]
    freed_bytes: int
    kept: int
    total_bytes: int
    spans_removed: int = 0  # files of mounts (``mount/``: spans, documents) removed


class NodeCache:
    """Blobs and extracted trees by digest, shared by every pull on a node."""

    def __init__(self, root: str, options: Options = DEFAULT_OPTIONS, keep_blobs: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.options = options
        self.keep_blobs = keep_blobs
        for sub in ("trees", "entries", "locks", "tmp"):
            try:
                os.makedirs(os.path.join(self.root, sub), exist_ok=True)
            except OSError as exc:
                raise LocalIOError(f"cannot create node cache at {self.root}: {exc.strerror}") from None
        self.blobs = LayoutStore(os.path.join(self.root, "blobs"))
        self.facts_dir = os.path.join(self.root, "facts")  # app-image facts for --against, by digest

    # -- paths -------------------------------------------------------------------------

    @staticmethod
    def _key(digest: str, tree_key: str) -> str:
        """A tree's name: its manifest digest and a hash of the policy's tree key."""
        return f"{digest.replace(':', '-')}.{hashlib.sha256(tree_key.encode()).hexdigest()[:12]}"

    @classmethod
    def _entry_key(cls, entry: CacheEntry) -> str:
        return cls._key(entry.digest, entry.tree_key)

    def tree_path(self, digest: str, tree_key: str = DEFAULT_POLICY.tree_key()) -> str:
        return os.path.join(self.root, "trees", self._key(digest, tree_key))

    def _entry_path(self, key: str) -> str:
        return os.path.join(self.root, "entries", key + ".json")

    @contextlib.contextmanager
    def _lock(self, name: str, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
        fd = os.open(os.path.join(self.root, "locks", name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    # -- ensure ------------------------------------------------------------------------

    def ensure(
        self,
        reference: "str | Reference",
        policy: PullPolicy = DEFAULT_POLICY,
        *,
        store: Store | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> CacheEntry:
        """The cached tree of ``reference``, downloading and extracting it if it is not there yet."""
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        tree_key = policy.tree_key()
        if ref.digest and not policy.against:
            found = self.get(ref.digest, tree_key)
            if found is not None:
                return self._used(found, str(ref))
        source = store or open_source(ref, self.options)
        local_first = _LocalFirst(self.blobs, source)  # a pinned digest resolves from the cache
        resolved = resolve_manifest(local_first, ref.reference, platform=policy.platform, label=str(ref))
        found = self.get(resolved.descriptor.digest, tree_key)
        if found is not None:
            if policy.against:  # a tree fit for one pod's image may not fit the next pod's
                check_compatibility(source, resolved.descriptor, policy, self.options, self.facts_dir)
            return self._used(found, str(ref))
        plan = plan_artifact(local_first, resolved, rootfs=policy.rootfs)
        check_compatibility(source, plan.manifest_desc, policy, self.options, self.facts_dir)
        with self._lock("gc", shared=True), self._lock(self._key(plan.digest, tree_key)):
            found = self.get(plan.digest, tree_key)  # built by another process while we waited
            if found is not None:
                return self._used(found, str(ref))
            return self._build(plan, source, policy, progress)

    def _build(self, plan: ArtifactPlan, source: Store, policy: PullPolicy, progress: Progress) -> CacheEntry:
        staging = os.path.join(self.root, "tmp", uuid.uuid4().hex)
        tree, work = os.path.join(staging, "tree"), os.path.join(staging, "work")
        os.makedirs(tree)
        try:
            opener = _BlobOpener(self, source)
            stats = extract_tree(
                plan, opener.open, tree, work, policy, concurrency=self.options.concurrency, progress=progress
            )
            self._keep_documents(plan, source)
            write_document(tree, MARKER_NAME, marker_document(plan, policy, stats, relocate=False), identify=True)
            now = time.time()
            blobs = [plan.manifest_desc.digest] + ([plan.manifest.config.digest] if plan.manifest.config else [])
            blobs += [job.descriptor.digest for job in plan.layers]
            entry = CacheEntry(
                digest=plan.digest, reference_digest=plan.top_digest, references=[plan.reference], kind=plan.kind,
                path=self.tree_path(plan.digest, policy.tree_key()), size=stats.bytes, files=stats.files, layers=stats.layers,
                blobs=sorted(set(blobs)) if self.keep_blobs else [], blob_bytes=plan.compressed_size if self.keep_blobs else 0,
                created=now, last_used=now, tree_key=policy.tree_key(), downloaded=opener.downloaded,
                config=dict(plan.config),
            )
            os.rename(tree, entry.path)
            self._write_entry(entry)
            return entry
        finally:
            remove_tree(staging)

    def _keep_documents(self, plan: ArtifactPlan, source: Store) -> None:
        """Keep manifest (and index) and config, so a pinned digest resolves offline later."""
        if not self.keep_blobs:
            return
        docs = [(plan.manifest_desc, plan.manifest.raw)]
        for desc, raw in docs:
            if not self.blobs.exists(desc):
                self.blobs.push(desc, raw)
        config = plan.manifest.config
        if config is not None and not self.blobs.exists(config):
            with source.fetch(config) as reader:
                self.blobs.push(config, reader)  # type: ignore[arg-type]  # a VerifyingReader reads like a file
        self.blobs.tag(plan.manifest_desc, plan.digest.replace(":", "-"))

    # -- entries -----------------------------------------------------------------------

    def get(self, digest: str, tree_key: str = DEFAULT_POLICY.tree_key()) -> CacheEntry | None:
        """The entry of ``digest`` (a manifest digest, or the index digest it was pulled by)
        extracted under a policy with ``tree_key`` (default: the default policy's)."""
        entry = self._read_entry(self._key(digest, tree_key))
        if entry is None:
            for candidate in self.ls():
                if candidate.reference_digest == digest and candidate.tree_key == tree_key:
                    entry = candidate
                    break
        if entry is None or entry.tree_key != tree_key or not os.path.isdir(entry.path):
            return None
        return entry

    def _read_entry(self, key: str) -> CacheEntry | None:
        path = self._entry_path(key)
        try:
            with open(path) as fh:
                data = json.load(fh)
            last_used = os.stat(path).st_mtime
        except (OSError, ValueError):
            return None
        data["last_used"] = last_used
        data.setdefault("config", {})
        data.pop("downloaded", None)
        try:
            return CacheEntry(**data)
        except TypeError:
            return None

    def _write_entry(self, entry: CacheEntry) -> None:
        data = entry.to_dict()
        data.pop("last_used")
        data.pop("downloaded")
        data["config"] = entry.config
        path = self._entry_path(self._entry_key(entry))
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(canonical_json(data))
        os.replace(tmp, path)

    def _used(self, entry: CacheEntry, reference: str) -> CacheEntry:
        """Record a use (the entry file's mtime is the LRU clock) and the reference it came by."""
        if reference not in entry.references:
            entry.references = sorted(set(entry.references) | {reference})
            self._write_entry(entry)
        now = time.time()
        try:
            os.utime(self._entry_path(self._entry_key(entry)), (now, now))
        except OSError:
            pass
        entry.last_used = now
        entry.downloaded = 0
        return entry

    def ls(self) -> list[CacheEntry]:
        """Every complete entry, most recently used first."""
        entries = []
        for name in os.listdir(os.path.join(self.root, "entries")):
            if not name.endswith(".json"):
                continue
            entry = self._read_entry(name[: -len(".json")])
            if entry is not None and os.path.isdir(entry.path):
                entries.append(entry)
        return sorted(entries, key=lambda e: e.last_used, reverse=True)

    # -- publish -----------------------------------------------------------------------

    def publish(
        self,
        ref: "str | Reference | CacheEntry",
        target: str,
        mode: str = "auto",
        read_only: bool = False,
        relocate_to: str | None = None,
        ready_file: str | None = None,
        progress: Progress = NULL_PROGRESS,
        policy: PullPolicy | None = None,
        merge: bool = False,
    ) -> PublishResult:
        """Materialise the tree of ``ref`` at ``target`` and mark it ready.

        ``mode``: ``auto`` (reflink, else copy), ``reflink``, ``copy``, or ``hardlink``, which
        shares inodes with the cache and is therefore only allowed with ``read_only`` (the caller
        mounts the target read-only, as a CSI driver does for a ``readOnly`` volume): a pod that
        could write a hardlinked file would change the cached tree for every other pod. ``relocate_to``: the path the view will be
        used at (relocated when it differs from the view's recorded root); None keeps the
        view as it was pushed. ``read_only`` removes write permission from the directories
        (and, except with hardlinks, whose inodes belong to the cache, from the files).
        ``merge``: ``target`` may hold files ocikit did not write; they are kept (else such a
        target is refused before anything is written, see :mod:`.destination`).
        """
        if mode == "hardlink" and not read_only:
            raise UnsupportedError(
                "hardlink publishing shares the cache's inodes, so it needs a read-only target "
                "(read_only=True, mounted read-only); use link mode auto, reflink or copy"
            )
        entry = ref if isinstance(ref, CacheEntry) else self.ensure(ref, policy or DEFAULT_POLICY, progress=progress)

        destination = Destination(target, ready_file, merge=merge)
        destination.check_ownership()  # before the lock: nothing is created in a target that is not ocikit's
        with self._lock(self._entry_key(entry), shared=True), destination.lock():
            if not os.path.isdir(entry.path):
                raise NotFoundError(f"{entry.digest} was removed from the cache while publishing")
            destination.check_ownership()
            staging = destination.new_staging()
            try:
                stats = materialize(entry.path, staging.tree, mode, exclude_top=frozenset({MARKER_DIR}))
                relocated = ""
                if relocate_to is not None and entry.kind == KIND_VIEW:
                    record = ViewConfig.from_document(entry.config).relocation
                    relocated = relocate_view(staging.tree, record, relocate_to, progress)
                if read_only:
                    make_read_only(staging.tree, files=mode != "hardlink")
                document = self._marker(entry, relocated, relocate_to is not None)
                destination.commit(staging, document)
            except BaseException:
                destination.abort(staging)
                raise
        self._used(entry, entry.references[0] if entry.references else entry.digest)
        return PublishResult(
            target=destination.path, digest=entry.digest, mode=stats.mode, files=stats.files,
            directories=stats.directories, symlinks=stats.symlinks, bytes=stats.bytes,
            relocated_to=relocated, read_only=read_only,
        )

    def mount(self, reference: str, target: str, policy: PullPolicy = DEFAULT_POLICY, **keywords: Any) -> Any:
        """Mount ``reference`` lazily at ``target`` (``ocikit.mount``) with this cache's spans:
        every mount of the node shares them, and :meth:`gc` reclaims them. Keywords are those of
        :func:`ocikit.mount.api.mount_config` (``relocate_to``, ``prefetch``, ``timeout``…)."""
        from ..mount.api import mount

        return mount(reference, target, policy, options=self.options, cache=self.root, **keywords)

    def _marker(self, entry: CacheEntry, relocated: str, relocate: bool) -> dict[str, Any]:
        document = dict(read_marker(entry.path) or {})
        document.update(relocatedTo=relocated, relocate=relocate, cache=self.root, treeKey=entry.tree_key)
        document.setdefault("digest", entry.digest)
        return document

    # -- garbage collection ------------------------------------------------------------

    def gc(self, max_bytes: int | None = None, max_age: float | None = None) -> GcResult:
        """Evict trees unused for ``max_age`` seconds, then least-recently-used ones until the
        cache (trees + blobs) is at most ``max_bytes``. Trees being published or built are kept.
        Blobs no remaining entry needs are removed with their last tree. Then the spans mounts
        cached (``mount/``: spans and documents) by the same rules, in what ``max_bytes`` leaves (a running mount
        fetches a removed span again when it is read).
        """
        removed: list[str] = []
        freed = 0
        with self._lock("gc"):
            entries = sorted(self.ls(), key=lambda e: e.last_used)
            total = sum(e.size for e in entries) + self._blob_bytes()
            now = time.time()
            kept = list(entries)
            for entry in entries:
                too_old = max_age is not None and now - entry.last_used > max_age
                too_big = max_bytes is not None and total > max_bytes
                if not (too_old or too_big):
                    continue
                with self._lock(self._entry_key(entry), blocking=False) as got:
                    if not got:
                        continue  # in use right now
                    kept.remove(entry)
                    freed_here = entry.size + self._drop_blobs(entry, kept)
                    os.unlink(self._entry_path(self._entry_key(entry)))
                    remove_tree(entry.path)
                freed += freed_here
                total -= freed_here
                removed.append(entry.digest)
            self._sweep_tmp()
            from ..mount.spans import gc_spans  # loaded on use: the zTOC readers

            spans = gc_spans(self.root, max_bytes=None if max_bytes is None else max(max_bytes - total, 0),
                             max_age=max_age)
        return GcResult(removed=removed, freed_bytes=freed + spans.freed_bytes, kept=len(kept),
                        total_bytes=total + spans.total_bytes, spans_removed=spans.removed)

    def _blob_bytes(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(os.path.join(self.blobs.root, "blobs")):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
        return total

    def _drop_blobs(self, entry: CacheEntry, kept: list[CacheEntry]) -> int:
        still_needed = {d for other in kept for d in other.blobs}
        freed = 0
        for digest in entry.blobs:
            if digest in still_needed:
                continue
            path = self.blobs.blob_path(digest)
            try:
                freed += os.lstat(path).st_size
                os.unlink(path)
            except FileNotFoundError:
                pass
        if any(other.digest == entry.digest for other in kept):
            return freed  # the same manifest, extracted under another policy, keeps its documents
        try:
            self.blobs.delete(Descriptor("application/octet-stream", entry.digest, 0))
        except (NotFoundError, InvalidReferenceError):
            pass
        return freed

    def _sweep_tmp(self) -> None:
        """Remove staging left by killed processes (gc holds the exclusive lock: no build is running)."""
        tmp = os.path.join(self.root, "tmp")
        for name in os.listdir(tmp):
            remove_tree(os.path.join(tmp, name))


class _LocalFirst:
    """Resolve and fetch from the cache's layout when it has the content, else from the source."""

    def __init__(self, local: LayoutStore, source: Store) -> None:
        self.local = local
        self.source = source

    def describe(self) -> str:
        return self.source.describe()

    def resolve(self, reference: str) -> Descriptor:
        if reference.startswith(("sha256:", "sha512:")):
            try:
                return self.local.resolve(reference)
            except NotFoundError:
                pass
        return self.source.resolve(reference)

    def exists(self, desc: Descriptor) -> bool:
        return self.local.exists(desc) or self.source.exists(desc)

    def fetch(self, desc: Descriptor) -> VerifyingReader:
        if self.local.exists(desc):
            return self.local.fetch(desc)
        return self.source.fetch(desc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)


class _BlobOpener:
    """Layer blobs for an extraction: from the cache if present, else from the source while
    keeping a copy (written beside the cache's layout and renamed in once verified)."""

    def __init__(self, cache: NodeCache, source: Store) -> None:
        self.cache = cache
        self.source = source
        self.downloaded = 0

    def open(self, desc: Descriptor) -> BinaryIO:
        if self.cache.blobs.exists(desc):
            return self.cache.blobs.fetch(desc)  # type: ignore[return-value]
        reader = self.source.fetch(desc)
        if not self.cache.keep_blobs:
            return _Counting(reader, self)  # type: ignore[return-value]
        return _TeeReader(reader, self, desc)  # type: ignore[return-value]


class _Counting:
    def __init__(self, reader: Any, opener: _BlobOpener) -> None:
        self._reader = reader
        self._opener = opener

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        self._opener.downloaded += len(data)
        return data

    def verify_to_end(self) -> None:
        while self.read(1 << 20):
            pass
        self._reader.verify_to_end()

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "_Counting":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TeeReader(_Counting):
    """Read a verifying reader and copy what passes into a temporary file; commit it to the
    cache's blob store only when the reader reached its end verified."""

    def __init__(self, reader: Any, opener: _BlobOpener, desc: Descriptor) -> None:
        super().__init__(reader, opener)
        self._desc = desc
        self._tmp = os.path.join(opener.cache.root, "tmp", f"blob-{uuid.uuid4().hex}")
        self._fh: Any = open(self._tmp, "wb")
        self._done = False

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        if data:
            self._fh.write(data)
        elif not self._done:  # the verifying reader returned its end: digest and size checked
            self._commit()
        return data

    def _commit(self) -> None:
        self._done = True
        self._fh.close()
        target = self._opener.cache.blobs.blob_path(self._desc.digest)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(self._tmp, target)

    def verify_to_end(self) -> None:
        while self.read(1 << 20):
            pass
        self._reader.verify_to_end()

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            if not self._done:
                self._fh.close()
                try:
                    os.unlink(self._tmp)
                except FileNotFoundError:
                    pass
