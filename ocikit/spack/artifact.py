"""The view artifact's own documents: the config (``application/vnd.ocikit.view.config.v1+json``),
the relocation record and placeholder, and the pinned creation time.

The config describes what a puller needs without opening any layer: where the view lived
(``viewPath``, ``realRoot``, ``storeRoot``), which packages it holds and in which layers,
counts and sizes, each layer's uncompressed digest, and the relocation record. Its JSON
Schema is ``schemas/ocikit.view.config.v1.schema.json`` (``$id`` = the media type).

**Relocation contract.** In ``packages`` mode every occurrence of the real root inside a
regular file is replaced by :func:`placeholder_for` ``(real_root)``, a string of the same
length, so the layer no longer depends on where the environment lived and two
environments share a package's layer. ``relocation.files`` lists (sorted, view-relative)
every file that contained the root. To restore, a puller replaces ``placeholder`` — or,
when ``placeholder`` is ``""`` (``single`` mode, or a root too short for a safe
placeholder), ``root`` — by the destination path in exactly those files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidContentError
from ..spec.descriptor import Descriptor
from ..spec.view_config import PackageRef, RelocationRecord, ViewConfig, ViewLayer
from .layering import PACKAGES, LayerPlan
from .view import View

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
    layers: list[Descriptor],
    diff_ids: list[str],
    compression: Mapping[str, Any],
    relocation: RelocationRecord,
    created: str,
) -> ViewConfig:
    """The view's config (see :mod:`ocikit.spec.view_config` and the JSON Schema)."""
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
        layers=tuple(_view_layer(plan, desc, diff_id) for plan, desc, diff_id in zip(plans, layers, diff_ids, strict=True)),
        totals=_totals(view, plans),
        external_symlinks=tuple(view.external_symlinks),
        relocation=relocation,
        spack_version=view.spack_version or "",
    )


def relocation_record(view: View, placeholder: str, files: list[str], relative_rpaths: bool) -> RelocationRecord:
    return RelocationRecord(
        root=view.real_root,
        view_path=view.view_path,
        placeholder=placeholder,
        files=tuple(sorted(set(files))),
        relative_rpaths=relative_rpaths,
        store_root=view.store_root or "",
    )


def _view_layer(plan: LayerPlan, desc: Descriptor, diff_id: str) -> ViewLayer:
    package = None
    if plan.package is not None:
        package = PackageRef(plan.package.name, plan.package.version, plan.package.hash)
    return ViewLayer(
        digest=desc.digest, size=desc.size, media_type=desc.media_type, diff_id=diff_id, tar_size=plan.tar_size,
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


def _totals(view: View, plans: list[LayerPlan]) -> dict[str, int]:
    totals = {"files": 0, "symlinks": 0, "directories": 0, "bytes": 0}
    for entry in view.entries:
        if entry.kind == "file":
            totals["files"] += 1
            totals["bytes"] += entry.stat.st_size
        elif entry.kind == "symlink":
            totals["symlinks"] += 1
        else:
            totals["directories"] += 1
    totals["tarBytes"] = sum(p.tar_size for p in plans)
    return totals
