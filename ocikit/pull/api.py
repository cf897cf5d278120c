"""``ocikit.pull``: a verified, safe, atomic pull of a view, an ORAS artifact or an image.

Sequence (each step is a function of :mod:`.steps` unless said otherwise):

1. If the reference pins a digest and DEST's marker already names it: done, no network.
2. Open the source (registry mirrors first, when configured), resolve the reference (an
   index → the policy's platform), fetch manifest and config, plan every layer.
3. If DEST's marker names the resolved digest: done (a re-pull is a no-op).
4. Compatibility check (the policy's ``check_compat``).
5. Under DEST's lock, extract all layers in parallel into a staging tree beside DEST,
   streaming each blob through decompression into the safe extractor (every byte
   digest-verified), relocate a view to DEST's path, apply directory modes and times.
6. Switch the staging tree in and write the ready marker last.

With ``cache=DIR`` the tree is built (or found) in a :class:`~ocikit.pull.nodecache.NodeCache`
and published into DEST; with ``policy.include`` only the matching subtree is extracted,
through zTOC range reads (:mod:`.subset`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..content.base import Store
from ..errors import UnsupportedError
from ..extract.plan import plan_artifact, resolve_manifest
from ..options import DEFAULT_OPTIONS, Options
from ..progress import NULL_PROGRESS, Progress
from ..reference import Reference, parse_reference
from .destination import Destination
from .policy import DEFAULT_POLICY, PullPolicy
from .steps import check_compatibility, extract_tree, marker_document, open_source, relocate_view, view_record


@dataclass(frozen=True)
class PullResult:
    """What a pull did (``unchanged``: DEST already held this digest, nothing was fetched)."""

    reference: str
    digest: str
    dest: str
    kind: str
    unchanged: bool
    layers: int = 0
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    bytes: int = 0  # file contents written
    downloaded: int = 0  # blob bytes read from the source
    relocated_to: str = ""
    ready_file: str = ""
    cache: str = ""
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # entries left out on purpose (a rootfs's device nodes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pull(
    reference: "str | Reference",
    dest: str,
    policy: PullPolicy = DEFAULT_POLICY,
    *,
    options: Options = DEFAULT_OPTIONS,
    cache: str | None = None,
    ready_file: str | None = None,
    store: Store | None = None,
    writer_threads: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> PullResult:
    """Pull ``reference`` into the directory ``dest`` under ``policy`` and mark it ready.

    ``cache`` builds the tree in a node cache and publishes it into ``dest``;
    ``ready_file`` also writes the marker there; ``store`` overrides the store the reference
    would open (tests, embedding); ``writer_threads`` tunes file creation (default: by cores).
    """
    started = time.monotonic()
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    target = Destination(dest, ready_file)
    if policy.include and cache:
        raise UnsupportedError("--include extracts a subset on demand and cannot be combined with --cache")
    if ref.digest and target.ready_with({ref.digest}, policy.include):
        return _unchanged(ref, target, ref.digest, started)
    if cache:
        return _pull_through_cache(ref, target, policy, cache, options, store, progress, started)
    source = store or open_source(ref, options)
    resolved = resolve_manifest(source, ref.reference, platform=policy.platform, label=str(ref))
    if target.ready_with(resolved.digests(), policy.include):
        return _unchanged(ref, target, resolved.descriptor.digest, started)
    plan = plan_artifact(source, resolved, rootfs=policy.rootfs)
    check_compatibility(source, plan.manifest_desc, policy, options)
    if policy.include:
        from .subset import pull_subset

        report, relocated_to = pull_subset(source, plan, target, policy, progress)
        if report is None:
            return _unchanged(ref, target, plan.digest, started)
        return PullResult(
            reference=str(ref), digest=plan.digest, dest=target.path, kind=plan.kind, unchanged=False,
            layers=len(plan.layers), files=report.files, directories=report.dirs,
            symlinks=report.symlinks + report.hardlinks, bytes=report.bytes_written,
            downloaded=report.stats.bytes_fetched, relocated_to=relocated_to, ready_file=ready_file or "",
            seconds=time.monotonic() - started,
        )
    with target.lock():
        if target.ready_with(plan.digests()):  # another process finished it while we waited
            return _unchanged(ref, target, plan.digest, started)
        target.check_replaceable()
        staging = target.new_staging()
        try:
            stats = extract_tree(
                plan, source.fetch, staging.tree, staging.work, policy,  # type: ignore[arg-type]
                concurrency=options.concurrency, writer_threads=writer_threads, progress=progress,
            )
            relocated_to = relocate_view(
                staging.tree, view_record(plan), target.path if policy.relocate else None, progress
            )
            target.commit(staging, marker_document(plan, stats, relocated_to=relocated_to))
        except BaseException:
            target.abort(staging)
            raise
    return PullResult(
        reference=str(ref), digest=plan.digest, dest=target.path, kind=plan.kind, unchanged=False,
        layers=stats.layers, files=stats.files, directories=stats.directories, symlinks=stats.symlinks,
        bytes=stats.bytes, downloaded=stats.compressed_bytes, relocated_to=relocated_to,
        ready_file=ready_file or "", seconds=time.monotonic() - started, skipped=stats.skipped,
    )


def _pull_through_cache(
    ref: Reference, target: Destination, policy: PullPolicy, cache: str, options: Options,
    store: Store | None, progress: Progress, started: float,
) -> PullResult:
    from .nodecache import NodeCache

    node_cache = NodeCache(cache, options=options)
    entry = node_cache.ensure(ref, policy, store=store, progress=progress)
    if target.ready_with({entry.digest, entry.reference_digest}):
        return _unchanged(ref, target, entry.digest, started)
    downloaded = entry.downloaded  # publishing records a use, which resets it
    published = node_cache.publish(
        entry, target.path, mode=policy.link_mode, relocate_to=target.path if policy.relocate else None,
        ready_file=target.ready_file, progress=progress,
    )
    return PullResult(
        reference=str(ref), digest=entry.digest, dest=target.path, kind=entry.kind, unchanged=False,
        layers=entry.layers, files=published.files, directories=published.directories,
        symlinks=published.symlinks, bytes=published.bytes, downloaded=downloaded,
        relocated_to=published.relocated_to, ready_file=target.ready_file or "", cache=node_cache.root,
        seconds=time.monotonic() - started,
    )


def _unchanged(ref: Reference, target: Destination, digest: str, started: float) -> PullResult:
    marker = target.marker() or {}
    return PullResult(
        reference=str(ref), digest=str(marker.get("digest") or digest), dest=target.path,
        kind=str(marker.get("kind", "")), unchanged=True, layers=int(marker.get("layers", 0) or 0),
        files=int(marker.get("files", 0) or 0), bytes=int(marker.get("bytes", 0) or 0),
        relocated_to=str(marker.get("relocatedTo", "")), ready_file=target.ready_file or "",
        seconds=time.monotonic() - started,
    )
