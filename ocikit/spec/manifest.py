"""Manifests and indexes: build, serialize once, parse, and walk.

Serialization is compact JSON with sorted keys, done exactly once: the digest of a
manifest is the digest of the bytes that are pushed, and code that receives a manifest
keeps its original bytes (``ParsedManifest.raw``) instead of re-encoding it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..digest import digest_bytes
from ..errors import InvalidContentError, NotFoundError
from . import mediatypes as mt
from .descriptor import EMPTY_DESCRIPTOR, Descriptor, Platform


def canonical_json(document: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the one serialization ocikit produces."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def build_manifest(
    layers: Iterable[Descriptor],
    config: Descriptor = EMPTY_DESCRIPTOR,
    artifact_type: str = "",
    subject: Descriptor | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """An image manifest's bytes (image-spec v1.1 artifact guidance).

    With an empty config the ``artifactType`` is required by the spec, so it defaults to
    ORAS's ``application/vnd.unknown.artifact.v1``. A manifest with no layers gets one
    empty layer, as the spec recommends for portability.
    """
    layer_list = [d.to_dict() for d in layers] or [EMPTY_DESCRIPTOR.to_dict()]
    if config.media_type == mt.OCI_EMPTY and not artifact_type:
        artifact_type = mt.ORAS_UNKNOWN_ARTIFACT
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config.to_dict(),
        "layers": layer_list,
    }
    return canonical_json(_with_optional_fields(document, artifact_type, subject, annotations))


def build_index(
    manifests: Iterable[Descriptor],
    artifact_type: str = "",
    subject: Descriptor | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """An image index's bytes; ``manifests`` is never null (oras-go, distribution)."""
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [d.to_dict() for d in manifests],
    }
    return canonical_json(_with_optional_fields(document, artifact_type, subject, annotations))


def _with_optional_fields(
    document: dict[str, Any], artifact_type: str, subject: Descriptor | None, annotations: Mapping[str, str] | None
) -> dict[str, Any]:
    if artifact_type:
        document["artifactType"] = artifact_type
    if subject is not None:
        document["subject"] = _subject_dict(subject)
    if annotations:
        document["annotations"] = dict(annotations)
    return document


def _subject_dict(subject: Descriptor) -> dict[str, Any]:
    # The subject is a plain descriptor: media type, digest, size (no annotations or platform).
    return {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size}


@dataclass(frozen=True)
class ParsedManifest:
    """A manifest or index with its exact bytes; children are parsed descriptors."""

    raw: bytes
    media_type: str
    document: Mapping[str, Any]
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest_bytes(self.raw)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEX_TYPES

    def descriptor(self) -> Descriptor:
        """A descriptor for this manifest, with artifactType set the way referrers report it."""
        artifact_type = self.artifact_type or (self.config.media_type if self.config else "")
        return Descriptor(self.media_type, self.digest, len(self.raw), artifact_type=artifact_type)

    def successors(self) -> list[Descriptor]:
        """Content this node references and a copy must bring along: config, layers, children.

        The ``subject`` is not a successor: a referrer points at its subject, it does not own it.
        """
        if self.is_index:
            return list(self.manifests)
        out = [self.config] if self.config is not None else []
        return out + [layer for layer in self.layers if not layer.urls]


def parse_manifest(raw: bytes, media_type: str = "") -> ParsedManifest:
    """Parse manifest or index bytes; the media type comes from the document when present."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidContentError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidContentError("manifest is not a JSON object")
    kind = str(document.get("mediaType") or media_type or _guess_type(document))
    if kind not in mt.MANIFEST_OR_INDEX_TYPES:
        raise InvalidContentError(f"unsupported manifest media type {kind!r}")
    if document.get("schemaVersion") != 2:
        raise InvalidContentError(f"unsupported manifest schemaVersion {document.get('schemaVersion')!r}")
    subject = document.get("subject")
    common: dict[str, Any] = dict(
        raw=raw,
        media_type=kind,
        document=document,
        subject=Descriptor.from_dict(subject) if isinstance(subject, Mapping) else None,
        artifact_type=str(document.get("artifactType", "") or ""),
        annotations=dict(document.get("annotations") or {}),
    )
    if kind in mt.INDEX_TYPES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise InvalidContentError("index has no 'manifests' list")
        return ParsedManifest(manifests=tuple(Descriptor.from_dict(d) for d in entries), **common)
    config, layers = document.get("config"), document.get("layers")
    if not isinstance(config, Mapping) or not isinstance(layers, list):
        raise InvalidContentError("manifest needs a 'config' object and a 'layers' list")
    return ParsedManifest(
        config=Descriptor.from_dict(config), layers=tuple(Descriptor.from_dict(d) for d in layers), **common
    )


def _guess_type(document: Mapping[str, Any]) -> str:
    # A manifest without mediaType (allowed by image-spec) is told apart by its fields.
    return mt.OCI_INDEX if "manifests" in document else mt.OCI_MANIFEST


def select_platform(index: ParsedManifest, wanted: Platform) -> Descriptor:
    """The first index entry whose platform matches ``wanted`` (entries without platform never match)."""
    for entry in index.manifests:
        if entry.platform is not None and entry.platform.matches(wanted):
            return entry
    available = ", ".join(str(e.platform) for e in index.manifests if e.platform) or "none"
    raise NotFoundError(f"no manifest for platform {wanted} in index (available: {available})")
