"""The steps of a pull that a direct pull and a node-cache fill share.

:func:`ocikit.pull.api.pull` and :meth:`ocikit.pull.nodecache.NodeCache.ensure` both open
the source, resolve and plan the artifact, check compatibility, extract every layer into a
staging tree under the policy's rules, and describe the result in a ready marker. Those
steps live here, below both, so the two paths cannot drift apart (and neither imports the
other).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any, BinaryIO

from .. import __version__
from ..content.base import Store
from ..errors import IncompatibleError, UnsupportedError
from ..extract.decompress import SizeBudget
from ..extract.layers import ExtractStats, extract_plan, finish_tree
from ..extract.plan import KIND_VIEW, ArtifactPlan, plan_artifact, resolve_manifest
from ..options import Options
from ..progress import NULL_PROGRESS, Progress
from ..reference import LayoutReference, Reference, RegistryReference
from ..spec.descriptor import Descriptor
from ..spec.view_config import RelocationRecord
from .policy import PullPolicy
from .ready import MARKER_SCHEMA

BlobOpener = Callable[[Descriptor], BinaryIO]


def open_source(ref: Reference, options: Options) -> Store:
    """The store to read ``ref`` from: a layout, or a registry behind its configured mirrors."""
    if isinstance(ref, LayoutReference):
        from ..content.layout import LayoutStore

        return LayoutStore(ref.path, create=False)
    assert isinstance(ref, RegistryReference)
    from ..content.mirror import open_with_mirrors

    return open_with_mirrors(ref, options)


def plan_pull(source: Store, ref: Reference, policy: PullPolicy) -> ArtifactPlan:
    """Resolve ``ref`` (an index to the policy's platform), read the config, plan every layer."""
    resolved = resolve_manifest(source, ref.reference, platform=policy.platform, label=str(ref))
    return plan_artifact(source, resolved, rootfs=policy.rootfs)


def check_compatibility(
    store: Store, manifest: Descriptor, policy: PullPolicy | None = None, options: Options | None = None,
    facts_cache: str | None = None,
) -> None:
    """Refuse an artifact whose compatibility referrer this host — or, with ``policy.against``,
    the application image that will load it — fails (hook into ``ocikit.compat``).

    Reads only the referrer, never a layer of the artifact; an app image's facts are read
    from its layers' few library files once and cached in ``facts_cache`` (default: the
    user's cache). Without the compat module nothing is checked.
    """
    if policy is not None and not policy.check_compat:
        return
    try:
        from ..compat.check import check_reference
    except ModuleNotFoundError as exc:  # a build without the compat package; anything else is a bug
        if (exc.name or "").startswith("ocikit.compat"):
            if policy is not None and policy.against:
                raise UnsupportedError("--against needs ocikit.compat, which this build lacks") from None
            return
        raise
    against = None
    if policy is not None and policy.against:
        # only here: reading an app image's facts pulls in the ELF and zTOC readers (~20 ms of imports)
        from ..compat.app_image import AppImage

        against = AppImage(policy.against, options or Options(), facts_cache, platform=policy.platform)
    report = check_reference(store, manifest, against=against)
    if report is not None and not getattr(report, "compatible", True):
        explain = getattr(report, "explain", None)
        raise IncompatibleError(explain() if explain else f"{manifest.digest} is not compatible with this host")


def extract_tree(
    plan: ArtifactPlan,
    open_blob: BlobOpener,
    tree: str,
    work: str,
    policy: PullPolicy,
    *,
    concurrency: int,
    writer_threads: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> ExtractStats:
    """Extract every layer of ``plan`` into the empty directory ``tree`` under ``policy``'s rules;
    directory modes and times are applied last."""
    stats = extract_plan(
        plan, open_blob, tree, work, policy=policy.extract_policy(plan), budget=SizeBudget(policy.max_size),
        concurrency=concurrency, writer_threads=writer_threads, progress=progress,
    )
    finish_tree(tree, stats, policy.extract_policy(plan))
    if stats.skipped:
        progress.message(f"skipped {len(stats.skipped)} device node(s) or fifo(s), e.g. {stats.skipped[0]}")
    return stats


def relocate_view(
    tree: str, record: RelocationRecord | None, dest: str | None, progress: Progress = NULL_PROGRESS,
    only_present: bool = False,
) -> str:
    """Rewrite a staged view so it works at ``dest`` (None: where it works as stored, see
    :attr:`RelocationRecord.home`); return the path
    it now refers to ("" when nothing needed rewriting). ``only_present`` limits the record's
    file list to the files the tree holds (a subset pull)."""
    if record is None:
        return ""
    old = record.stored_prefix
    new = os.path.abspath(dest) if dest is not None else record.home
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
    files = list(record.files)
    if only_present:
        files = [f for f in files if os.path.lexists(os.path.join(tree, f))]
    relocate_tree(
        tree,
        old,
        new,
        files=files,
        relative_rpaths=record.relative_rpaths,
        original_root=record.root if record.placeholder else None,  # errors name a path it runs at
        progress=progress,
    )
    return new


def view_record(plan: ArtifactPlan) -> RelocationRecord | None:
    return plan.view.relocation if plan.kind == KIND_VIEW and plan.view is not None else None


def marker_document(
    plan: ArtifactPlan, policy: PullPolicy, stats: ExtractStats | None = None, *, files: int = 0, size: int = 0,
    relocated_to: str = "", relocate: bool | None = None,
) -> dict[str, Any]:
    """The ready marker's content (documented in docs/pull.md): what was pulled, and the
    policy's tree key and relocation choice (``relocate``, default the policy's), which a
    re-pull must match to be a no-op; ``include`` only for subset pulls."""
    document: dict[str, Any] = {
        "schemaVersion": MARKER_SCHEMA,
        "digest": plan.digest,
        "referenceDigest": plan.top_digest,
        "reference": plan.reference,
        "mediaType": plan.manifest_desc.media_type,
        "artifactType": plan.manifest.artifact_type or (plan.manifest.config.media_type if plan.manifest.config else ""),
        "kind": plan.kind,
        "layers": len(plan.layers),
        "files": stats.files if stats is not None else files,
        "bytes": stats.bytes if stats is not None else size,
        "relocatedTo": relocated_to,
        "relocate": policy.relocate if relocate is None else relocate,
        "treeKey": policy.tree_key(),
        "readyAt": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ocikit": __version__,
    }
    if policy.include:
        document["include"] = list(policy.include)
    return document
