"""``pull --include``: only the matching subtree, fetched through the layers' zTOCs.

The subset is extracted by the one safe extractor under the pull's policy, into a staging
tree under DEST's lock like a full pull, relocated (only the record's files that the subset
holds), and committed with a marker that records the patterns, so a later full pull is not
mistaken for done.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..content.base import Store
from ..errors import UnsafeContentError
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
    from ..ztoc.extract import extract_subset  # loaded on use: FlatBuffers, libz
    from ..ztoc.image import load_image_ztocs
    from ..ztoc.subset import select

    image = load_image_ztocs(source, plan.manifest_desc, policy.platform, progress)
    tree = merged_tree(image, plan)
    paths = select(tree, list(policy.include))
    rules = replace(policy.extract_policy(plan), rootfs=plan.kind == KIND_IMAGE)
    with target.lock():  # pull() checked DEST's ownership before anything was created in it
        if target.ready_with(plan.digests(), policy):
            return None, ""
        target.check_ownership()
        staging = target.new_staging()
        try:
            report = extract_subset(
                source, image, tree, paths, staging.tree, rules, max_size=policy.max_size, progress=progress
            )
            relocated_to = relocate_view(
                staging.tree, view_record(plan), target.path if policy.relocate else None, progress,
                only_present=True,
            )
            marker = marker_document(
                plan, policy, files=report.files, size=report.bytes_written, relocated_to=relocated_to
            )
            target.commit(staging, marker)
        except BaseException:
            target.abort(staging)
            raise
    return report, relocated_to


def merged_tree(image: Any, plan: ArtifactPlan) -> Any:
    """The merged zTOC tree, with the title directory of ORAS-style view layers removed from
    names (what a full pull strips), so patterns match the paths DEST will hold."""
    from ..ztoc.view import ImageTree, normalize

    titles = {job.descriptor.digest: job.title for job in plan.layers if job.strip_title}
    tocs = []
    for layer, ztoc in zip(image.layers, image.ztocs):
        title = titles.get(layer.digest)
        if not title:
            tocs.append(ztoc.entries)
            continue
        stripped = []
        for entry in ztoc.entries:
            name = normalize(entry.name)
            if name == title:
                continue  # the title directory itself is DEST
            if not name.startswith(title + "/"):
                raise UnsafeContentError(entry.name, f"outside title directory {title!r}")
            link = entry.linkname
            if entry.type == "hardlink" and normalize(link).startswith(title + "/"):
                link = normalize(link)[len(title) + 1 :]
            stripped.append(replace(entry, name=name[len(title) + 1 :], linkname=link))
        tocs.append(stripped)
    return ImageTree(tocs, stacked=plan.kind == KIND_IMAGE)  # a view's layers lie side by side
