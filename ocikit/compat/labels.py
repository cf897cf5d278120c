"""``ocikit label REF key=value…``: arbitrary metadata attached as a referrer.

The labels go twice into one small artifact (``artifactType application/vnd.ocikit.labels.v1``):
as the manifest's annotations, so ``discover`` and registries' UIs show them without a
second request, and as the JSON layer ``application/vnd.ocikit.labels.v1+json``
(``{"labels": {...}}``; schema ``schemas/labels.v1.schema.json``), the durable form. The
image is never rewritten. Labelling twice adds a second referrer; readers merge them
oldest first, so the newest value of a key wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from ..content.base import Store, SupportsReferrers, fetch_manifest, read_all
from ..errors import InvalidContentError
from ..graph.attach import Blob, attach_referrer, referrer_age
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import canonical_json

LABELS_VERSION = 1
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")
MAX_VALUE = 4096
MAX_LABEL_BODY = 1 << 20


def validate_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Check keys (``[A-Za-z0-9][A-Za-z0-9._/-]*``) and values (strings up to 4 KiB)."""
    if not labels:
        raise InvalidContentError("no labels given")
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise InvalidContentError(f"invalid label key {key!r}: use letters, digits and . _ / - (max 255)")
        if not isinstance(value, str):
            raise InvalidContentError(f"label {key!r}: value must be a string")
        if len(value) > MAX_VALUE:
            raise InvalidContentError(f"label {key!r}: value longer than {MAX_VALUE} characters")
        if key == mt.ANNOTATION_CREATED:
            raise InvalidContentError(f"label {key!r} is set by ocikit")
        out[key] = value
    return out


def parse_label_arguments(arguments: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` → ``{"a": "1", "b": "x=y"}`` (the first ``=`` splits)."""
    labels: dict[str, str] = {}
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if not sep:
            raise InvalidContentError(f"label {argument!r} is not key=value")
        labels[key] = value
    return validate_labels(labels)


def add_labels(store: Store, subject: Descriptor, labels: Mapping[str, str]) -> Descriptor:
    """Attach ``labels`` to ``subject`` as a labels referrer; return the referrer's descriptor."""
    from .artifact import now_rfc3339

    labels = validate_labels(labels)
    body = canonical_json({"labels": labels, "schemaVersion": LABELS_VERSION})
    return attach_referrer(
        store, subject, mt.OCIKIT_LABELS_ARTIFACT, [Blob(mt.OCIKIT_LABELS_LAYER, body)],
        annotations=labels, created=now_rfc3339(),
    )


def read_labels(store: Store, subject: Descriptor) -> dict[str, str]:
    """All labels attached to ``subject``, merged oldest first (newest value wins)."""
    if not isinstance(store, SupportsReferrers):
        return {}
    referrers = sorted(store.referrers(subject, artifact_type=mt.OCIKIT_LABELS_ARTIFACT), key=referrer_age)
    merged: dict[str, str] = {}
    for referrer in referrers:
        manifest = fetch_manifest(store, referrer)
        for layer in manifest.layers:
            if layer.media_type != mt.OCIKIT_LABELS_LAYER:
                continue
            try:
                document = json.loads(read_all(store, layer, limit=MAX_LABEL_BODY))
                merged.update({str(k): str(v) for k, v in document["labels"].items()})
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise InvalidContentError(f"labels {layer.short()} are malformed: {exc}") from None
    return merged
