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
from .layering import PACKAGES, LayerPlan
from .view import View

CONFIG_SCHEMA_VERSION = 1
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
    relocation: Mapping[str, Any],
    created: str,
) -> dict[str, Any]:
    """The config document (see the module docstring and the JSON Schema)."""
    layer_docs = [_layer_doc(plan, desc, diff_id) for plan, desc, diff_id in zip(plans, layers, diff_ids, strict=True)]
    document: dict[str, Any] = {
        "schemaVersion": CONFIG_SCHEMA_VERSION,
        "name": view.name,
        "kind": view.kind,
        "viewPath": view.view_path,
        "realRoot": view.real_root,
        "storeRoot": view.store_root,
        "created": created,
        "layering": mode,
        "compression": dict(compression),
        "mtimes": "install-manifest" if view.kind == "spack" and mode == PACKAGES else "filesystem",
        "packages": _package_docs(view, mode, plans, layers),
        "layers": layer_docs,
        "totals": _totals(view, plans),
        "externalSymlinks": view.external_symlinks,
        "relocation": dict(relocation),
    }
    if view.spack_version:
        document["spackVersion"] = view.spack_version
    return document


def relocation_record(view: View, placeholder: str, files: list[str], relative_rpaths: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "root": view.real_root,
        "viewPath": view.view_path,
        "placeholder": placeholder,
        "files": sorted(set(files)),
        "relativeRpaths": relative_rpaths,
    }
    if view.store_root:
        record["storeRoot"] = view.store_root
    return record


def _layer_doc(plan: LayerPlan, desc: Descriptor, diff_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "digest": desc.digest,
        "size": desc.size,
        "mediaType": desc.media_type,
        "diffId": diff_id,
        "tarSize": plan.tar_size,
        "title": plan.title,
        "role": plan.role,
        "part": plan.part,
        "parts": plan.parts,
        **plan.counts,
    }
    if plan.package is not None:
        doc["package"] = {"name": plan.package.name, "version": plan.package.version, "hash": plan.package.hash}
    return doc


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
