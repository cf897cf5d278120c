"""The view artifact's own documents: the view metadata, the relocation record, the pinned
creation time (and ocikit 0.1's placeholder).

The view metadata describes what a puller needs without opening any layer: where the view
lived (``viewPath``, ``realRoot``, ``storeRoot``), which packages it holds and in which
layers, counts and sizes, each layer's uncompressed digest, and the relocation record. It
travels inside the image config (:meth:`ViewConfig.to_image_config`); JSON Schema
``schemas/ocikit.view.config.v2.schema.json``.

**Relocation contract.** Every file that names the real root is relocated to the mount path
``P`` while it is packed (``relocation.mountPath``), so the layers run at ``P`` and do not
depend on where the environment lived: two environments meant for the same ``P`` share
their unchanged packages' layers. ``relocation.files`` lists (sorted, view-relative) the
files that hold ``P`` afterwards; a puller relocates ``P`` to its destination in exactly
those. Binary strings keep the length of the real root (left-padded with ``/``, as spack
does), so a destination up to that length fits. ocikit 0.1 replaced the root by a
same-length :func:`placeholder_for` instead; pullers still restore such artifacts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..errors import InvalidContentError
from ..spec.descriptor import Descriptor
from ..spec.view_config import PackageRef, RelocationRecord, ViewConfig, ViewLayer
from .layering import PACKAGES, LayerPlan
from .view import View


class LayerResultLike(Protocol):
    """What the config needs of a pushed layer (``ocikit.push.pusher.LayerResult``)."""

    @property
    def descriptor(self) -> Descriptor: ...
    @property
    def diff_id(self) -> str: ...
    @property
    def tar_size(self) -> int: ...


PLACEHOLDER_PATTERN = "__ocikit_root_placeholder__"
MIN_PLACEHOLDER_LENGTH = 10


def placeholder_for(root: str) -> str:
    """The same-length stand-in for ``root``: ``/__ocikit_root_placeholder__…`` cut to ``len(root)``.

    It depends only on the root's length (in UTF-8 bytes), so two environments whose roots
    have the same length (``/opt/._view/<32-char hash>``) produce identical layers. Roots
    shorter than 10 bytes raise ``ValueError``: a placeholder that short would be too
    likely to occur in real files.
    """
    length = len(root.encode())
    if length < MIN_PLACEHOLDER_LENGTH:
        raise ValueError(f"root {root!r} is shorter than {MIN_PLACEHOLDER_LENGTH} bytes")
    text = "/" + PLACEHOLDER_PATTERN * (length // len(PLACEHOLDER_PATTERN) + 1)
    return text[:length]


def created_timestamp(plans: list[LayerPlan]) -> str:
    """RFC 3339 UTC time: ``SOURCE_DATE_EPOCH`` if set, else the newest mtime the layers store."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            seconds = int(epoch)
        except ValueError:
            raise InvalidContentError(f"SOURCE_DATE_EPOCH={epoch!r} is not an integer") from None
    else:
        seconds = max((m.mtime for plan in plans for m in plan.members), default=0)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(seconds, 0)))


def build_config(
    view: View,
    mode: str,
    plans: list[LayerPlan],
    results: Sequence[LayerResultLike],
    compression: Mapping[str, Any],
    relocation: RelocationRecord,
    created: str,
) -> ViewConfig:
    """The view's config (see :mod:`ocikit.spec.view_config` and the JSON Schema).

    ``results`` are the pushed layers in plan order: their descriptors, uncompressed digests
    and tar sizes (which relocation to a mount path may make differ from the plan's).
    """
    layers = [r.descriptor for r in results]
    return ViewConfig(
        name=view.name,
        kind=view.kind,
        view_path=view.view_path,
        real_root=view.real_root,
        store_root=view.store_root,
        created=created,
        layering=mode,
        compression=dict(compression),
        mtimes="install-manifest" if view.kind == "spack" and mode == PACKAGES else "filesystem",
        packages=tuple(_package_docs(view, mode, plans, layers)),
        layers=tuple(_view_layer(plan, result) for plan, result in zip(plans, results, strict=True)),
        totals=_totals(view, results),
        external_symlinks=tuple(view.external_symlinks),
        relocation=relocation,
        spack_version=view.spack_version or "",
    )


def relocation_record(view: View, mount_path: str, files: list[str], relative_rpaths: bool) -> RelocationRecord:
    """The record of a push that relocated the files naming the real root to ``mount_path``."""
    return RelocationRecord(
        root=view.real_root,
        view_path=view.view_path,
        mount_path=mount_path,
        files=tuple(sorted(set(files))),
        relative_rpaths=relative_rpaths,
        store_root=view.store_root or "",
    )


def _view_layer(plan: LayerPlan, result: LayerResultLike) -> ViewLayer:
    package = None
    if plan.package is not None:
        package = PackageRef(plan.package.name, plan.package.version, plan.package.hash)
    desc = result.descriptor
    return ViewLayer(
        digest=desc.digest, size=desc.size, media_type=desc.media_type, diff_id=result.diff_id,
        tar_size=result.tar_size,
        title=plan.title, role=plan.role, part=plan.part, parts=plan.parts, package=package, counts=dict(plan.counts),
    )


def _package_docs(view: View, mode: str, plans: list[LayerPlan], layers: list[Descriptor]) -> list[dict[str, Any]]:
    stats: dict[str, dict[str, int]] = {p.key: {"files": 0, "symlinks": 0, "bytes": 0} for p in view.packages}
    for entry in view.entries:
        if entry.owner in stats and entry.kind in ("file", "symlink"):
            stats[entry.owner]["files" if entry.kind == "file" else "symlinks"] += 1
            stats[entry.owner]["bytes"] += entry.stat.st_size if entry.kind == "file" else 0
    docs = []
    for package in view.packages:
        if mode == PACKAGES:
            digests = [
                d.digest
                for p, d in zip(plans, layers, strict=True)
                if p.package is not None and p.package.key == package.key
            ]
        else:
            digests = [d.digest for d in layers]
        docs.append(
            {
                "name": package.name,
                "version": package.version,
                "hash": package.hash,
                "prefix": package.prefix,
                "layers": digests,
                **stats[package.key],
            }
        )
    return docs


def _totals(view: View, results: Sequence[LayerResultLike]) -> dict[str, int]:
    totals = {"files": 0, "symlinks": 0, "directories": 0, "bytes": 0}
    for entry in view.entries:
        if entry.kind == "file":
            totals["files"] += 1
            totals["bytes"] += entry.stat.st_size
        elif entry.kind == "symlink":
            totals["symlinks"] += 1
        else:
            totals["directories"] += 1
    totals["tarBytes"] = sum(r.tar_size for r in results)
    return totals
