"""Extract every layer of a planned artifact into a directory, in parallel.

Layers of a view or an ORAS artifact do not overlap (except in directories), so they are
extracted concurrently straight into the tree. Image layers must be applied in order
(whiteouts), so each is extracted concurrently into its own directory under ``work`` and
merged in order as soon as it and all layers below it are done. One writer pool is shared
by all layers; ``concurrency`` bounds how many layers stream at once.

Blobs come from ``open_blob(descriptor)``: a verifying reader from the store, or the node
cache's reader that also keeps a copy. Nothing is staged on disk in between.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from ..byteio import ByteReader
from ..errors import CorruptDataError, UnsafeContentError, VerificationError
from ..formats.tar.reader import TarStream
from ..progress import NULL_PROGRESS, Progress
from ..spec.descriptor import Descriptor
from .decompress import LayerStream, SizeBudget
from .plan import FILE, ROOTFS, TITLED, ArtifactPlan, LayerJob
from .rules import normalize_name, verify_symlinks
from .safe_tar import Counts, DirRecord, ExtractPolicy, LayerOutcome, SafeExtractor, apply_directory_records
from .whiteout import merge_layer, remove_tree
from .writer import WriterPool, default_threads

BlobOpener = Callable[[Descriptor], BinaryIO]
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class ExtractStats(Counts):
    """Totals of an extraction (``add`` sums each layer's counts), and the directory metadata still to apply."""

    layers: int = 0
    dir_records: list[DirRecord] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # symlinks to verify against the finished tree
    skipped: list[str] = field(default_factory=list)  # entries left out on purpose (devices in a rootfs)

    def forget_directories(self, removed: list[str]) -> None:
        """Drop the metadata of directories a later layer removed or replaced (and of all below
        them): a directory made again at that path is the later layer's, not theirs."""
        if not removed or not self.dir_records:
            return
        gone = set(removed)

        def kept(path: str) -> bool:
            return not any(prefix in gone for prefix in _self_and_parents(path))

        self.dir_records = [record for record in self.dir_records if kept(record.path)]

    def take(self, outcome: LayerOutcome) -> None:
        """Add one layer's outcome: its counts, and what is still to be done with the whole tree."""
        self.add(outcome)
        self.dir_records.extend(outcome.dir_records)
        self.links.extend(outcome.links)
        self.skipped.extend(outcome.skipped)


def _self_and_parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def extract_plan(
    plan: ArtifactPlan,
    open_blob: BlobOpener,
    tree: str,
    work: str,
    *,
    policy: ExtractPolicy = ExtractPolicy(),
    budget: SizeBudget | None = None,
    concurrency: int = 4,
    writer_threads: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> ExtractStats:
    """Extract ``plan``'s layers into the (empty) directory ``tree``; ``work`` is scratch space beside it."""
    budget = budget or SizeBudget()
    stats = ExtractStats(layers=len(plan.layers))
    threads = default_threads() if writer_threads is None else writer_threads
    tree_fd = os.open(tree, _DIR_FLAGS)
    try:
        with WriterPool(threads) as pool, ThreadPoolExecutor(max(1, concurrency), "ocikit-layer") as layers:
            runner = _LayerRunner(open_blob, policy, budget, pool, progress, stats)
            if any(job.mode == ROOTFS for job in plan.layers) and len(plan.layers) > 1:
                _extract_ordered(plan.layers, runner, layers, tree_fd, work, stats)
            else:
                futures = [layers.submit(runner.run, job, tree_fd) for job in plan.layers]
                _collect(futures, stats, runner.cancel)
    finally:
        os.close(tree_fd)
    return stats


def finish_tree(tree: str, stats: ExtractStats, rules: ExtractPolicy) -> None:
    """What can only be decided once every entry is in: every symlink resolves inside the tree
    (the one symlink rule, :func:`~ocikit.extract.rules.verify_symlinks`), then directory modes
    and times, deepest first."""
    verify_symlinks(tree, stats.links, rules.symlink_roots)
    fd = os.open(tree, _DIR_FLAGS)
    try:
        apply_directory_records(fd, stats.dir_records)
    finally:
        os.close(fd)


def _collect(futures: list[Future[LayerOutcome | None]], stats: ExtractStats, cancel: threading.Event) -> None:
    """Wait for all layers; on the first failure stop the others and re-raise that failure."""
    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    failed = [f for f in futures if f in done and f.exception() is not None]
    if failed:
        cancel.set()
        for future in futures:
            future.cancel()
        wait(futures)
        raise failed[0].exception()  # type: ignore[misc]
    for future in futures:
        outcome = future.result()
        if outcome is not None:
            refuse_deferred_links(outcome)
            stats.take(outcome)


def refuse_deferred_links(outcome: LayerOutcome) -> None:
    """A tree extracted on its own has no layer below it: a hard link the extractor deferred to a
    lower layer (a rootfs's target that was not there yet) links to nothing, and is refused."""
    if outcome.lower_links:
        link, target = outcome.lower_links[0]
        raise UnsafeContentError(link, f"hardlink target missing ({target!r} is in no layer)")


def _extract_ordered(
    jobs: tuple[LayerJob, ...],
    runner: "_LayerRunner",
    executor: ThreadPoolExecutor,
    tree_fd: int,
    work: str,
    stats: ExtractStats,
) -> None:
    """Image layers: extract in parallel into separate directories, merge in layer order."""
    os.makedirs(work, exist_ok=True)
    dirs = [os.path.join(work, f"layer-{job.index}-{uuid.uuid4().hex[:8]}") for job in jobs]
    for path in dirs:
        os.mkdir(path, 0o700)
    futures = [executor.submit(runner.run_in_dir, job, path) for job, path in zip(jobs, dirs)]
    try:
        for future, path in zip(futures, dirs):
            outcome = future.result()
            layer_fd = os.open(path, _DIR_FLAGS)
            try:
                removed = merge_layer(tree_fd, layer_fd, outcome)
            finally:
                os.close(layer_fd)
            stats.forget_directories(removed)
            stats.take(outcome)
            remove_tree(path)
    except BaseException:
        runner.cancel.set()
        for future in futures:
            future.cancel()
        wait(futures)
        raise
    finally:
        for path in dirs:
            remove_tree(path)


class _LayerRunner:
    """Extracts one layer job (called from the layer thread pool)."""

    def __init__(
        self,
        open_blob: BlobOpener,
        policy: ExtractPolicy,
        budget: SizeBudget,
        pool: WriterPool,
        progress: Progress,
        stats: ExtractStats,
    ) -> None:
        self.open_blob = open_blob
        self.policy = policy
        self.budget = budget
        self.pool = pool
        self.progress = progress
        self.stats = stats
        self.cancel = threading.Event()  # set when one layer failed: the others stop early

    def run_in_dir(self, job: LayerJob, path: str) -> LayerOutcome:
        fd = os.open(path, _DIR_FLAGS)
        try:
            outcome = self.run(job, fd)
        finally:
            os.close(fd)
        assert outcome is not None
        return outcome

    def run(self, job: LayerJob, tree_fd: int) -> LayerOutcome | None:
        desc = job.descriptor
        task = f"layer:{desc.digest}"
        label = desc.title or job.title or desc.short()  # a package layer reads "zlib-1.2.13-….tar.zst"
        self.progress.start(task, label, desc.size)
        reader = _CountingReader(self.open_blob(desc), lambda n: self.progress.advance(task, n))
        if job.mode == FILE:
            outcome = self._write_file(job, reader, tree_fd)
        else:
            outcome = self._extract_tar(job, reader, tree_fd, label)
        outcome.compressed_bytes = reader.count
        self.progress.finish(task)
        return outcome

    def _extract_tar(self, job: LayerJob, reader: ByteReader, tree_fd: int, label: str) -> LayerOutcome:
        policy = self.policy
        if job.mode == TITLED or job.strip_title:
            policy = replace(policy, required_prefix=job.title, strip_prefix=job.strip_title)
        if job.mode == ROOTFS:
            policy = replace(policy, rootfs=True)
        stream = LayerStream(
            reader,
            f"layer {label}",
            uncompressed_digest=job.uncompressed_digest,
            budget=self.budget,
            declared_size=job.declared_size,
        )
        try:
            with stream:
                extractor = SafeExtractor(tree_fd, policy, self.pool, label)
                outcome = extractor.extract(TarStream(stream.next_chunk), self.cancel)
        except CorruptDataError as exc:
            # The blob is pinned by its digest: bytes that do not decode are corrupt (or were
            # published broken), which is a verification failure whichever check saw it first.
            raise VerificationError(f"layer {job.descriptor.digest} does not decode: {exc}") from None
        outcome.uncompressed_bytes = stream.uncompressed_size
        return outcome

    def _write_file(self, job: LayerJob, reader: "_CountingReader", tree_fd: int) -> LayerOutcome:
        """An ORAS file layer: the blob itself, saved as ``<title>`` (verified as it streams)."""
        title = normalize_name(job.title, job.title)
        extractor = SafeExtractor(tree_fd, self.policy, self.pool, title)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        outcome = LayerOutcome(files=1)
        with reader:
            try:
                fd = os.open(title.rpartition("/")[2], flags, 0o644, dir_fd=extractor.parent_fd(title))
            except OSError as exc:
                extractor.close()
                raise extractor.map_error(exc, title) from None
            try:
                while chunk := reader.read(1 << 20):
                    self.budget.take(len(chunk), title)
                    _write_all(fd, chunk)
                    outcome.bytes += len(chunk)
            finally:
                os.close(fd)
                extractor.close()
        return outcome


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _CountingReader:
    """Pass reads through, reporting how many bytes went by (progress, statistics)."""

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_bytes = on_bytes
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.count += len(data)
            self._on_bytes(len(data))
        return data

    def verify_to_end(self) -> None:
        while self.read(1 << 20):
            pass
        verify = getattr(self._raw, "verify_to_end", None)
        if verify is not None:
            verify()

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> "_CountingReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
