"""Referrer artifacts: attach files to a subject, and discover what refers to a subject.

``attach`` is ``oras attach``: files become layers (titled by their base name), the config
is the empty descriptor, the manifest carries ``artifactType`` and a ``subject``, and it is
pushed untagged — the store makes it discoverable. ``discover`` walks referrers of
referrers into a tree with a visited set (a cycle cannot loop forever).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..content.base import Store, SupportsReferrers, ensure_empty_blob, push_manifest
from ..digest import digest_file
from ..errors import InvalidReferenceError, LocalIOError, UnsupportedError
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import build_manifest

# oras-go's check of RFC 6838 type/subtype syntax
ARTIFACT_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


def attach(
    store: Store,
    subject: Descriptor,
    artifact_type: str,
    files: Iterable[str] = (),
    annotations: Mapping[str, str] | None = None,
    file_media_type: str = "application/octet-stream",
) -> Descriptor:
    """Push a referrer of ``subject`` holding ``files``; return the referrer's descriptor."""
    if not ARTIFACT_TYPE_RE.match(artifact_type):
        raise InvalidReferenceError(f"invalid artifact type {artifact_type!r} (expected type/subtype)")
    layers = [_push_file(store, path, file_media_type) for path in files]
    config = ensure_empty_blob(store)  # distribution 2.8 checks that referenced blobs exist
    if not layers:
        layers = [config]  # the spec's recommended single empty layer
    raw = build_manifest(layers, config=config, artifact_type=artifact_type, subject=subject, annotations=annotations)
    return push_manifest(store, raw)


def _push_file(store: Store, path: str, media_type: str) -> Descriptor:
    try:
        digest, size = digest_file(path)
        desc = Descriptor(media_type, digest, size, annotations={mt.ANNOTATION_TITLE: os.path.basename(path)})
        if not store.exists(desc):
            with open(path, "rb") as fh:
                store.push(desc, fh)
    except OSError as exc:
        raise LocalIOError(f"cannot read {path}: {exc.strerror}") from None
    return desc


@dataclass
class ReferrerNode:
    """One referrer and the referrers that point at it."""

    descriptor: Descriptor
    children: list["ReferrerNode"] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        out = self.descriptor.to_dict()
        out["referrers"] = [child.to_dict() for child in self.children]
        return out


def discover(store: Store, subject: Descriptor, artifact_type: str = "", depth: int = 8) -> list[ReferrerNode]:
    """Referrers of ``subject`` as a tree (only the top level is filtered by ``artifact_type``)."""
    if not isinstance(store, SupportsReferrers):
        raise UnsupportedError(f"{store.describe()} cannot list referrers")
    visited = {subject.digest}

    def walk(node: Descriptor, level: int, kind: str) -> list[ReferrerNode]:
        if level >= depth:
            return []
        out = []
        for ref in store.referrers(node, artifact_type=kind):
            if ref.digest in visited:
                continue
            visited.add(ref.digest)
            out.append(ReferrerNode(ref, walk(ref, level + 1, "")))
        return out

    return walk(subject, 0, artifact_type)
