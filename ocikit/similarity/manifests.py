"""Read just what the similarity needs from an image manifest, fast.

:func:`ocikit.spec.parse_manifest` builds a full :class:`Descriptor` for every layer
(annotations, platform, inline data, unknown fields). Over 10,000 manifests that was
half of the collection time, and the similarity only needs each layer's digest and size.
So image manifests are read here with the same checks that matter — schemaVersion 2, a
manifest media type, a config object, well-formed digests and non-negative integer
sizes — and indexes still go through ``parse_manifest`` (platform selection needs the
full entries; there are few of them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidContentError
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import ParsedManifest, parse_manifest

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")


@dataclass(frozen=True)
class ImageManifest:
    """An image manifest reduced to its layers and config."""

    digest: str
    layers: tuple[str, ...]
    sizes: tuple[int, ...]
    config: Descriptor


def read_document(raw: bytes, digest: str, media_type: str = "") -> ImageManifest | ParsedManifest:
    """An :class:`ImageManifest`, or the parsed index when ``raw`` is an index."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidContentError(f"manifest {digest} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidContentError(f"manifest {digest} is not a JSON object")
    kind = document.get("mediaType") or media_type or (mt.OCI_INDEX if "manifests" in document else mt.OCI_MANIFEST)
    if kind in mt.INDEX_TYPES:
        return parse_manifest(raw, media_type)
    if kind not in mt.MANIFEST_TYPES:
        raise InvalidContentError(f"{digest}: unsupported manifest media type {kind!r}")
    if document.get("schemaVersion") != 2:
        raise InvalidContentError(f"{digest}: unsupported manifest schemaVersion {document.get('schemaVersion')!r}")
    config, layers = document.get("config"), document.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise InvalidContentError(f"manifest {digest} needs a 'config' object and a 'layers' list")
    digests, sizes = [], []
    for layer in layers:
        layer_digest, size = _digest_and_size(layer, digest)
        digests.append(layer_digest)
        sizes.append(size)
    config_digest, config_size = _digest_and_size(config, digest)
    config_desc = Descriptor(str(config.get("mediaType", "")), config_digest, config_size)
    return ImageManifest(digest, tuple(digests), tuple(sizes), config_desc)


def _digest_and_size(layer: Any, manifest: str) -> tuple[str, int]:
    if isinstance(layer, dict):
        digest, size = layer.get("digest"), layer.get("size")
        if isinstance(digest, str) and _DIGEST.fullmatch(digest) and type(size) is int and size >= 0:
            return digest, size
    raise InvalidContentError(f"manifest {manifest} has an invalid descriptor: {layer!r}"[:300])
