"""``ocikit.pull`` (this module is ``puller`` so the function does not shadow it): a verified, safe, atomic pull of a view, an ORAS artifact or an image.

Sequence (each step is a function below or in :mod:`ocikit.extract`):

1. If the reference pins a digest and DEST's marker already names it: done, no network.
2. Open the source (with registry mirrors first, when configured), resolve the reference
   (an index → this host's platform), fetch manifest and config, plan every layer.
3. If DEST's marker names the resolved digest: done (a re-pull is a no-op).
4. Compatibility check (a hook to :mod:`ocikit.compat`; ``skip_compat_check`` skips it).
5. Under DEST's lock, extract all layers in parallel into a staging tree beside DEST,
   streaming each blob through decompression into the safe extractor (every byte
   digest-verified), relocate a view to DEST's path, apply directory modes and times.
6. Switch the staging tree in and write the ready marker last.

With ``cache=DIR`` the tree is built (or found) in a :class:`~ocikit.pull.nodecache.NodeCache`
and published into DEST by reflink, hardlink or copy.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from .. import __version__
from ..content.base import Store
from ..errors import IncompatibleError, UnsupportedError
from ..extract.decompress import SizeBudget
from ..extract.layers import ExtractStats, extract_plan
from ..extract.plan import KIND_IMAGE, KIND_VIEW, ArtifactPlan, plan_artifact, resolve_manifest
from ..extract.safe_tar import ExtractPolicy, apply_directory_records
from ..options import DEFAULT_OPTIONS, Options
from ..progress import NULL_PROGRESS, Progress
from ..reference import LayoutReference, Reference, RegistryReference, parse_reference
from ..spec.descriptor import Descriptor, Platform
from .destination import Destination
from .ready import MARKER_SCHEMA


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pull(
    reference: "str | Reference",
    dest: str,
    *,
    options: Options = DEFAULT_OPTIONS,
    rootfs: bool = False,
    ready_file: str | None = None,
    relocate: bool = True,
    skip_compat_check: bool = False,
    max_size: int | None = None,
    allow_devices: bool = False,
    preserve_special_modes: bool = False,
    platform: "Platform | str | None" = None,
    cache: str | None = None,
    link_mode: str = "auto",
    store: Store | None = None,
    writer_threads: int | None = None,
    include: Sequence[str] = (),
    progress: Progress = NULL_PROGRESS,
) -> PullResult:
    """Pull ``reference`` into the directory ``dest`` and mark it ready.

    ``rootfs`` applies every layer as a container filesystem layer (whiteouts);
    ``relocate=False`` keeps a view's recorded root instead of rewriting paths to ``dest``;
    ``max_size`` caps the decompressed bytes (bomb guard); ``allow_devices`` permits device
    nodes and fifos; ``preserve_special_modes`` keeps setuid/setgid/sticky bits;
    ``platform`` (``os/arch[/variant]``) picks from an index (default: this host);
    ``cache`` builds the tree in a node cache and publishes it with ``link_mode``
    (``auto`` = reflink where possible, else copy; ``hardlink``; ``reflink``; ``copy``).
    ``store`` overrides the store the reference would open (tests, embedding).
    ``include`` (globs on root-relative paths) extracts only the matching subtree, fetching
    just the spans that hold it through the layers' zTOCs (built in memory when none is
    attached); the marker records the patterns, so a later full pull is not mistaken for done.
    """
    started = time.monotonic()
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    target = Destination(dest, ready_file)
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    include = tuple(sorted(set(include)))
    if include and cache:
        raise UnsupportedError("--include extracts a subset on demand and cannot be combined with --cache")
    if ref.digest and _marker_digest(target, {ref.digest}, include):
        return _unchanged(ref, target, ref.digest, started)
    if cache:
        from .nodecache import NodeCache

        node_cache = NodeCache(cache, options=options)
        entry = node_cache.ensure(
            ref, store=store, platform=wanted, rootfs=rootfs, max_size=max_size, allow_devices=allow_devices,
            preserve_special_modes=preserve_special_modes, skip_compat_check=skip_compat_check, progress=progress,
        )
        if _marker_digest(target, {entry.digest, entry.reference_digest}):
            return _unchanged(ref, target, entry.digest, started)
        downloaded = entry.downloaded
        published = node_cache.publish(
            entry, dest, mode=link_mode, relocate_to=dest if relocate else None, ready_file=ready_file, progress=progress
        )
        return PullResult(
            reference=str(ref), digest=entry.digest, dest=target.path, kind=entry.kind, unchanged=False,
            layers=entry.layers, files=published.files, directories=published.directories,
            symlinks=published.symlinks, bytes=published.bytes, downloaded=downloaded,
            relocated_to=published.relocated_to, ready_file=ready_file or "", cache=node_cache.root,
            seconds=time.monotonic() - started,
        )
    source = store or open_source(ref, options)
    resolved = resolve_manifest(source, ref.reference, platform=wanted, label=str(ref))
    if _marker_digest(target, resolved.digests(), include):
        return _unchanged(ref, target, resolved.descriptor.digest, started)
    plan = plan_artifact(source, resolved, rootfs=rootfs)
    if not skip_compat_check:
        check_compatibility(source, plan.manifest_desc)
    if include:
        return _pull_subset(source, plan, target, include, ref=ref, relocate=relocate, started=started, progress=progress)
    policy = extract_policy(
        plan, allow_devices=allow_devices, preserve_special_modes=preserve_special_modes, max_size=max_size
    )
    with target.lock():
        if _marker_digest(target, plan.digests()):  # another process finished it while we waited
            return _unchanged(ref, target, plan.digest, started)
        target.check_replaceable()
        staging = target.new_staging()
        try:
            stats = extract_plan(
                plan, source.fetch, staging.tree, staging.work, policy=policy, budget=SizeBudget(max_size),
                concurrency=options.concurrency, writer_threads=writer_threads, progress=progress,
            )
            relocated_to = finish_view(staging.tree, plan, target.path, relocate, progress)
            apply_records(staging.tree, stats)
            target.commit(staging, marker_document(plan, stats.layers, stats.files, stats.bytes, relocated_to))
        except BaseException:
            target.abort(staging)
            raise
    return PullResult(
        reference=str(ref), digest=plan.digest, dest=target.path, kind=plan.kind, unchanged=False,
        layers=stats.layers, files=stats.files, directories=stats.directories, symlinks=stats.symlinks,
        bytes=stats.bytes, downloaded=stats.compressed_bytes, relocated_to=relocated_to,
        ready_file=ready_file or "", seconds=time.monotonic() - started,
    )


def open_source(ref: Reference, options: Options) -> Store:
    """The store to read ``ref`` from: a layout, or a registry behind its configured mirrors."""
    if isinstance(ref, LayoutReference):
        from ..content.layout import LayoutStore

        return LayoutStore(ref.path, create=False)
    assert isinstance(ref, RegistryReference)
    from ..content.mirror import open_with_mirrors

    return open_with_mirrors(ref, options)


def extract_policy(
    plan: ArtifactPlan, *, allow_devices: bool, preserve_special_modes: bool, max_size: int | None = None
) -> ExtractPolicy:
    """The extraction rules for ``plan``: a view may link into its own (relocated) root."""
    roots: tuple[str, ...] = ()
    external: frozenset[str] = frozenset()
    if plan.kind == KIND_VIEW:
        record = plan.relocation
        roots = tuple(str(record[k]) for k in ("root", "viewPath", "placeholder") if record.get(k))
        listed = plan.config.get("externalSymlinks")
        external = frozenset(str(p) for p in listed) if isinstance(listed, list) else frozenset()
    return ExtractPolicy(
        allow_devices=allow_devices,
        preserve_special_modes=preserve_special_modes,
        symlink_roots=roots,
        external_symlinks=external,
        max_size=max_size,
    )


def check_compatibility(store: Store, manifest: Descriptor) -> None:
    """Refuse an artifact whose compatibility referrer this host fails (hook into ``ocikit.compat``).

    Reads only the referrer, never a layer. Without the compat module nothing is checked.
    """
    try:
        from ..compat.check import check_reference
    except ModuleNotFoundError as exc:  # a build without the compat package; anything else is a bug
        if (exc.name or "").startswith("ocikit.compat"):
            return
        raise
    report = check_reference(store, manifest)
    if report is not None and not getattr(report, "compatible", True):
        explain = getattr(report, "explain", None)
        raise IncompatibleError(explain() if explain else f"{manifest.digest} is not compatible with this host")


def finish_view(tree: str, plan: ArtifactPlan, dest: str, relocate: bool, progress: Progress = NULL_PROGRESS) -> str:
    """Relocate a staged view so it works at ``dest``; return the path it now refers to ("" if untouched)."""
    if plan.kind != KIND_VIEW:
        return ""
    return _finish_view(tree, plan.config, dest, relocate, progress)


def _finish_view(
    staging: str, config: Mapping[str, Any], dest: str, relocate: bool, progress: Progress = NULL_PROGRESS
) -> str:
    """The relocation hook: placeholder (or recorded root) → DEST, or → the recorded root with ``relocate=False``.

    ``config["relocation"]`` = ``{"root", "viewPath", "placeholder", "files", "relativeRpaths"}``
    (push-view's record). ``files`` lists every file that mentions the old prefix; when the
    key is absent the relocation engine scans the whole tree.
    """
    record = config.get("relocation")
    if not isinstance(record, Mapping):
        return ""
    root = str(record.get("root") or "")
    placeholder = str(record.get("placeholder") or "")
    old = placeholder or root
    new = os.path.abspath(dest) if relocate else root
    if not old or not new or old == new:
        return ""
    try:
        from ..relocate import relocate_tree
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("ocikit.relocate"):
            raise
        raise UnsupportedError(
            "this view must be relocated but ocikit.relocate is not available; install the full ocikit"
        ) from None
    files = record.get("files")
    relocate_tree(
        staging,
        old,
        new,
        files=[str(f) for f in files] if isinstance(files, list) else None,
        relative_rpaths=bool(record.get("relativeRpaths", True)),
        original_root=root if placeholder else None,  # errors name the built path, not the placeholder
        progress=progress,
    )
    return new


def marker_document(
    plan: ArtifactPlan, layers: int, files: int, size: int, relocated_to: str = "", include: Sequence[str] = ()
) -> dict[str, Any]:
    """The ready marker's content (documented in docs/pull.md); ``include`` only for subset pulls."""
    document = {
        "schemaVersion": MARKER_SCHEMA,
        "digest": plan.digest,
        "referenceDigest": plan.top_digest,
        "reference": plan.reference,
        "mediaType": plan.manifest_desc.media_type,
        "artifactType": plan.manifest.artifact_type or (plan.manifest.config.media_type if plan.manifest.config else ""),
        "kind": plan.kind,
        "layers": layers,
        "files": files,
        "bytes": size,
        "relocatedTo": relocated_to,
        "readyAt": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ocikit": __version__,
    }
    if include:
        document["include"] = list(include)
    return document


def apply_records(tree: str, stats: ExtractStats) -> None:
    """Directory modes and times of an extracted tree, applied last."""
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        apply_directory_records(fd, stats.dir_records)
    finally:
        os.close(fd)


def _marker_digest(target: Destination, digests: set[str], include: Sequence[str] = ()) -> bool:
    """Whether DEST is ready with one of ``digests`` and the same subset (all of it when ``include`` is empty)."""
    marker = target.marker()
    if marker is None or list(marker.get("include") or []) != list(include):
        return False
    return bool(digests & {marker.get("digest"), marker.get("referenceDigest")})


def _pull_subset(
    source: Store,
    plan: ArtifactPlan,
    target: Destination,
    include: Sequence[str],
    *,
    ref: Reference,
    relocate: bool,
    started: float,
    progress: Progress,
) -> PullResult:
    """``pull --include``: extract the matching subtree through zTOC range reads, then as a full pull."""
    from ..ztoc.extract import extract_matching  # loaded on use: FlatBuffers, libz

    with target.lock():
        if _marker_digest(target, plan.digests(), include):
            return _unchanged(ref, target, plan.digest, started)
        target.check_replaceable()
        staging = target.new_staging()
        try:
            report = extract_matching(
                source, plan.manifest_desc, list(include), staging.tree, progress,
                absolute_symlinks=plan.kind == KIND_IMAGE,
            )
            relocated_to = finish_view(staging.tree, _extracted_only(plan, staging.tree), target.path, relocate, progress)
            marker = marker_document(
                plan, len(plan.layers), report.files, report.bytes_written, relocated_to, include=include
            )
            target.commit(staging, marker)
        except BaseException:
            target.abort(staging)
            raise
    return PullResult(
        reference=str(ref), digest=plan.digest, dest=target.path, kind=plan.kind, unchanged=False,
        layers=len(plan.layers), files=report.files, directories=report.dirs,
        symlinks=report.symlinks + report.hardlinks, bytes=report.bytes_written,
        downloaded=report.stats.bytes_fetched, relocated_to=relocated_to, seconds=time.monotonic() - started,
    )


def _extracted_only(plan: ArtifactPlan, tree: str) -> ArtifactPlan:
    """``plan`` with its relocation record limited to the files a subset pull wrote."""
    record = plan.relocation
    files = record.get("files")
    if not isinstance(files, list):
        return plan
    present = [f for f in files if os.path.lexists(os.path.join(tree, str(f)))]
    config = {**plan.config, "relocation": {**record, "files": present}}
    return replace(plan, config=config)


def _unchanged(ref: Reference, target: Destination, digest: str, started: float) -> PullResult:
    marker = target.marker() or {}
    return PullResult(
        reference=str(ref), digest=str(marker.get("digest") or digest), dest=target.path,
        kind=str(marker.get("kind", "")), unchanged=True, layers=int(marker.get("layers", 0) or 0),
        files=int(marker.get("files", 0) or 0), bytes=int(marker.get("bytes", 0) or 0),
        relocated_to=str(marker.get("relocatedTo", "")), ready_file=target.ready_file or "",
        seconds=time.monotonic() - started,
    )
