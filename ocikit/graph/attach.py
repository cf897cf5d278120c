"""Referrer artifacts: the one way ocikit attaches something to a subject, and finds it again.

Every referrer ocikit writes — ``ocikit attach`` files, SOCI and zstd zTOC indexes,
compatibility documents, NFD rules, labels — is pushed by :func:`attach_referrer`: its
blobs are pushed unless present, the config defaults to the empty descriptor (whose ``{}``
blob registries such as distribution 2.8 want uploaded first), the manifest is serialized
once by :func:`~ocikit.spec.manifest.build_manifest` and pushed untagged. Making it
discoverable is the store's part of any push of a manifest with a ``subject`` (a copy
pushes referrers too): the layout store lists it in ``index.json``, the registry store
relies on the referrers API or maintains the tag-schema index (``registry/referrers.py``).

``replace`` retires earlier referrers of the same subject that a predicate picks (a
rebuilt index of the same image and parameters): the new one is pushed first, then the
old ones are deleted where the store allows it. A store that cannot delete keeps them;
readers then pick the newest by its ``created`` annotation (:func:`newest_referrer`),
because the order a store lists referrers in is its own (``index.json`` order, the
tag-schema index's order, or whatever a registry's API answers).

``discover`` walks referrers of referrers into a tree with a visited set (a cycle cannot
loop forever).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..content.base import Store, SupportsDelete, SupportsReferrers, ensure_empty_blob, push_bytes, push_manifest
from ..digest import digest_file
from ..errors import InvalidReferenceError, LocalIOError, NotFoundError, RegistryError, UnsupportedError
from ..spec import mediatypes as mt
from ..spec.descriptor import EMPTY_DESCRIPTOR, Descriptor
from ..spec.manifest import build_manifest

# oras-go's check of RFC 6838 type/subtype syntax
ARTIFACT_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")

# A registry that refuses a delete (deletion disabled: 405; a token without delete scope: 403)
# leaves a replaced referrer in place, which discovery tolerates.
_DELETE_REFUSED = (403, 405)


@dataclass(frozen=True)
class Blob:
    """A layer given as bytes: pushed by :func:`attach_referrer` unless the store has it."""

    media_type: str
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict)


ReplacePredicate = Callable[[Descriptor], bool]


def check_artifact_type(artifact_type: str) -> None:
    if not ARTIFACT_TYPE_RE.match(artifact_type):
        raise InvalidReferenceError(f"invalid artifact type {artifact_type!r} (expected type/subtype)")


def attach_referrer(
    store: Store,
    subject: Descriptor,
    artifact_type: str,
    layers: Sequence[Descriptor | Blob] = (),
    *,
    config: Descriptor = EMPTY_DESCRIPTOR,
    annotations: Mapping[str, str] | None = None,
    created: str | None = None,
    replace: ReplacePredicate | None = None,
) -> Descriptor:
    """Push a referrer of ``subject``; return its descriptor as the store's referrers list it.

    ``layers`` are :class:`Blob` (pushed if missing) or descriptors already in the store;
    none gives the spec's single empty layer. An empty ``artifact_type`` suits a typed
    ``config`` (a SOCI v1 index); with the empty config it becomes ORAS's "unknown artifact"
    (:func:`~ocikit.spec.manifest.build_manifest`'s rule). ``created`` pins the
    ``org.opencontainers.image.created`` annotation, so attaching the same content twice
    yields the same manifest. ``replace`` picks earlier referrers (as :meth:`referrers`
    describes them) to delete once this one is pushed.
    """
    if artifact_type:
        check_artifact_type(artifact_type)
    descriptors = [_pushed(store, layer) for layer in layers]
    if config.digest == mt.EMPTY_DIGEST or not descriptors:
        ensure_empty_blob(store)  # distribution 2.8 checks that referenced blobs exist
    manifest_annotations = dict(annotations or {})
    if created:
        manifest_annotations[mt.ANNOTATION_CREATED] = created
    raw = build_manifest(
        descriptors, config=config, artifact_type=artifact_type, subject=subject, annotations=manifest_annotations
    )
    referrer = push_manifest(store, raw)
    if replace is not None and _retire(store, subject, referrer, replace):
        # Pushing the manifest again makes the store index the subject's referrers anew; a
        # registry without the referrers API then drops the deleted ones from its tag-schema index.
        store.push(referrer, raw)
    return referrer.replace(annotations=manifest_annotations)


def _pushed(store: Store, layer: Descriptor | Blob) -> Descriptor:
    if isinstance(layer, Descriptor):
        return layer
    return push_bytes(store, layer.media_type, layer.data, **layer.annotations)


def _retire(store: Store, subject: Descriptor, kept: Descriptor, replace: ReplacePredicate) -> bool:
    """Delete the earlier referrers ``replace`` picks, where the store lets us; True if any went."""
    if not isinstance(store, SupportsReferrers) or not isinstance(store, SupportsDelete):
        return False
    picked = [d for d in store.referrers(subject) if d.digest != kept.digest and replace(d)]
    deleted = [d for d in picked if _delete_if_allowed(store, d)]
    return bool(deleted)


def _delete_if_allowed(store: SupportsDelete, desc: Descriptor) -> bool:
    try:
        store.delete(desc)
    except (NotFoundError, UnsupportedError):
        return False  # already gone, or this store cannot delete: the newest still wins in discovery
    except RegistryError as exc:
        if exc.status not in _DELETE_REFUSED:
            raise
        return False
    return True


def attach(
    store: Store,
    subject: Descriptor,
    artifact_type: str,
    files: Iterable[str] = (),
    annotations: Mapping[str, str] | None = None,
    file_media_type: str = "application/octet-stream",
) -> Descriptor:
    """``oras attach``: push a referrer of ``subject`` holding ``files`` (titled by base name)."""
    check_artifact_type(artifact_type)  # before any file is pushed
    layers = [_push_file(store, path, file_media_type) for path in files]
    return attach_referrer(store, subject, artifact_type, layers, annotations=annotations)


def _push_file(store: Store, path: str, media_type: str) -> Descriptor:
    # Files are streamed from disk rather than read into a Blob: an attached file may be large.
    try:
        digest, size = digest_file(path)
        desc = Descriptor(media_type, digest, size, annotations={mt.ANNOTATION_TITLE: os.path.basename(path)})
        if not store.exists(desc):
            with open(path, "rb") as fh:
                store.push(desc, fh)
    except OSError as exc:
        raise LocalIOError(f"cannot read {path}: {exc.strerror}") from None
    return desc


def referrer_age(desc: Descriptor) -> tuple[str, str]:
    """Sort key, oldest first: RFC 3339 UTC ``created`` sorts as a string; the digest breaks ties."""
    return (desc.annotations.get(mt.ANNOTATION_CREATED, ""), desc.digest)


def newest_referrer(store: Store, subject: Descriptor, artifact_type: str) -> Descriptor | None:
    """The referrer of ``artifact_type`` with the latest ``created`` annotation (None if none)."""
    if not isinstance(store, SupportsReferrers):
        return None
    found = [d for d in store.referrers(subject, artifact_type=artifact_type) if d.artifact_type == artifact_type]
    return max(found, key=referrer_age) if found else None


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
