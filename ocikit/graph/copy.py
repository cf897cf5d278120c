"""Copy a manifest graph between any two stores (oras-go ``CopyGraph`` / ``ExtendedCopy``).

The walk starts at a manifest or index, copies children before parents (so a registry
never sees a manifest whose blobs are missing), skips whatever the destination already
has, mounts blobs across repositories of the same registry instead of transferring them,
and streams every other blob from source to destination through a verifying reader.
With ``referrers=True`` the referrer graph (signatures, SBOMs, zTOCs, compatibility
artifacts, and their own referrers) comes along; the destination store keeps them
discoverable (referrers API or tag schema).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..content.base import Store, SupportsMount, SupportsReferrers, platform_manifest, read_all
from ..errors import UnsupportedError
from ..progress import NULL_PROGRESS, Progress
from ..spec.descriptor import Descriptor, Platform
from ..spec.manifest import parse_manifest


@dataclass
class CopyResult:
    """What a copy did; ``root`` is the copied manifest's descriptor."""

    root: Descriptor
    manifests: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_copied: int = 0
    referrers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "digest": self.root.digest,
            "mediaType": self.root.media_type,
            "size": self.root.size,
            "manifests": self.manifests,
            "blobsCopied": self.blobs_copied,
            "blobsSkipped": self.blobs_skipped,
            "blobsMounted": self.blobs_mounted,
            "bytesCopied": self.bytes_copied,
            "referrers": self.referrers,
        }


class _GraphCopier:
    def __init__(self, src: Store, dst: Store, concurrency: int, progress: Progress) -> None:
        self.src, self.dst, self.progress = src, dst, progress
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="ocikit-copy")
        self.lock = threading.Lock()
        self.visited: set[str] = set()
        self.manifest_nodes: list[Descriptor] = []
        self.result: CopyResult | None = None

    def copy_node(self, desc: Descriptor) -> None:
        """Copy ``desc`` and everything below it; manifests after their children."""
        with self.lock:
            if desc.digest in self.visited:
                return
            self.visited.add(desc.digest)
        raw = read_all(self.src, desc)
        parsed = parse_manifest(raw, desc.media_type)
        self.manifest_nodes.append(desc)
        children = parsed.successors()
        for child in (c for c in children if c.is_manifest or c.is_index):
            self.copy_node(child)
        blobs = [c for c in children if not (c.is_manifest or c.is_index)]
        for future in [self.pool.submit(self.copy_blob, blob) for blob in blobs]:
            future.result()
        if not self.dst.exists(desc):
            self.dst.push(desc, raw)
        assert self.result is not None
        self.result.manifests += 1

    def copy_blob(self, desc: Descriptor) -> None:
        with self.lock:
            if desc.digest in self.visited:
                return
            self.visited.add(desc.digest)
        assert self.result is not None
        task = desc.digest
        self.progress.start(task, desc.title or desc.short(), desc.size)
        if self.dst.exists(desc):
            self._count("blobs_skipped")
            self.progress.finish(task, skipped=True)
            return
        if isinstance(self.dst, SupportsMount) and self.dst.mount(desc, self.src):
            self._count("blobs_mounted")
            self.progress.finish(task, skipped=True)
            return
        with self.src.fetch(desc) as reader:
            self.dst.push(desc, reader, on_bytes=lambda n: self.progress.advance(task, n))
        self._count("blobs_copied", desc.size)
        self.progress.finish(task)

    def _count(self, name: str, size: int = 0) -> None:
        assert self.result is not None
        with self.lock:
            setattr(self.result, name, getattr(self.result, name) + 1)
            self.result.bytes_copied += size

    def copy_referrers(self) -> None:
        """Copy the referrers of every manifest copied so far, recursively."""
        if not isinstance(self.src, SupportsReferrers):
            raise UnsupportedError(f"{self.src.describe()} cannot list referrers")
        assert self.result is not None
        done: set[str] = set()
        while pending := [d for d in self.manifest_nodes if d.digest not in done]:
            for subject in pending:
                done.add(subject.digest)
                for referrer in self.src.referrers(subject):
                    if referrer.digest not in self.visited:
                        self.copy_node(referrer)
                        self.result.referrers.append(referrer.digest)


def copy_graph(
    src: Store,
    dst: Store,
    root: Descriptor,
    *,
    referrers: bool = False,
    concurrency: int = 3,
    progress: Progress = NULL_PROGRESS,
) -> CopyResult:
    """Copy the graph rooted at ``root`` from ``src`` to ``dst`` (see module docstring)."""
    copier = _GraphCopier(src, dst, concurrency, progress)
    copier.result = CopyResult(root)
    try:
        copier.copy_node(root)
        if referrers:
            copier.copy_referrers()
    finally:
        copier.pool.shutdown(wait=True, cancel_futures=True)
    return copier.result


def copy(
    src: Store,
    src_reference: "str | Descriptor",
    dst: Store,
    dst_tag: str = "",
    *,
    referrers: bool = False,
    platform: "Platform | str | None" = None,
    concurrency: int = 3,
    progress: Progress = NULL_PROGRESS,
) -> CopyResult:
    """Resolve ``src_reference`` in ``src`` (a descriptor is taken as resolved), copy its graph
    to ``dst`` and tag it ``dst_tag``.

    With ``platform`` an index is narrowed to that platform's manifest, which alone is copied
    and tagged (with ``referrers``, its referrers, not the index's), as ``crane copy`` and
    ``oras copy`` do with ``--platform``.
    """
    top = src_reference if isinstance(src_reference, Descriptor) else src.resolve(src_reference)
    root = platform_manifest(src, top, platform)
    result = copy_graph(src, dst, root, referrers=referrers, concurrency=concurrency, progress=progress)
    if dst_tag:
        dst.tag(root, dst_tag)
    return result
