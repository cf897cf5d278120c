"""``pull --include``: only the matching subtree, fetched through the layers' zTOCs.

The subset is written into a staging tree under DEST's lock like a full pull, relocated
(only the record's files that the subset holds), and committed with a marker that records
the patterns, so a later full pull is not mistaken for done.
"""

from __future__ import annotations

from typing import Any

from ..content.base import Store
from ..extract.plan import KIND_IMAGE, ArtifactPlan
from ..progress import Progress
from .destination import Destination
from .policy import PullPolicy
from .steps import marker_document, relocate_view, view_record


def pull_subset(
    source: Store, plan: ArtifactPlan, target: Destination, policy: PullPolicy, progress: Progress
) -> tuple[Any, str]:
    """Extract the subset into ``target``; returns (report, relocated_to), or (None, "") when
    DEST already holds this digest and subset."""
    from ..ztoc.extract import extract_matching  # loaded on use: FlatBuffers, libz

    with target.lock():
        if target.ready_with(plan.digests(), policy.include):
            return None, ""
        target.check_replaceable()
        staging = target.new_staging()
        try:
            report = extract_matching(
                source, plan.manifest_desc, list(policy.include), staging.tree, progress,
                absolute_symlinks=plan.kind == KIND_IMAGE,
            )
            relocated_to = relocate_view(
                staging.tree, view_record(plan), target.path if policy.relocate else None, progress,
                only_present=True,
            )
            marker = marker_document(
                plan, files=report.files, size=report.bytes_written, relocated_to=relocated_to,
                include=policy.include,
            )
            target.commit(staging, marker)
        except BaseException:
            target.abort(staging)
            raise
    return report, relocated_to
