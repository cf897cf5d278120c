"""Attach compatibility metadata to an image as OCI 1.1 referrers, and read it back.

* The OCI image-compatibility WG artifact (proposals B/F/G/H): ``artifactType
  application/vnd.oci.image-compatibility.v1``, empty config, one layer
  ``application/vnd.oci.image-compatibility.spec.v1+json`` holding :mod:`.document`'s
  body, ``subject`` = the image manifest. Its manifest also carries the supercontainers
  labels and ``org.opencontainers.image.created``, so ``discover`` shows them and readers
  pick the newest artifact when several exist (the rule of proposal H and NFD).
* Optionally the NFD image-compatibility artifact (``application/vnd.nfd.image-compatibility.v1alpha1``)
  with rules ``nfd compat validate-node`` understands: the CPUID flags of the spack target
  and the GPU vendor's PCI devices. Its YAML layer is written as JSON, which is YAML too.

The image manifest itself is never rewritten (that would change its digest); on push-view
the caller puts ``ScanReport.annotations()`` into the manifest it builds.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any

from ..content.base import Store, fetch_manifest, read_all
from ..errors import InvalidContentError
from ..graph.attach import Blob, attach_referrer, newest_referrer
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import canonical_json
from .document import annotations_of, compat_document, has_compat_metadata
from .nfd import nfd_document
from .report import ScanReport

# Largest spec layer ocikit reads: the body of a 100k-file view is a few hundred KiB.
MAX_SPEC_SIZE = 4 << 20


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def attach_compat(
    store: Store,
    subject: Descriptor,
    report: ScanReport | Mapping[str, Any],
    nfd: bool = False,
    created: str | None = None,
) -> Descriptor:
    """Push the compatibility artifact for ``subject`` (and the NFD one if ``nfd``); return its descriptor.

    ``report`` is a :class:`ScanReport` or its saved JSON form (``ocikit compat scan --json``).
    ``created`` pins ``org.opencontainers.image.created`` (default: now). push-view pins it
    to the view's own timestamp, so re-pushing an unchanged view yields the same referrer
    (same digest, deduplicated) instead of one more artifact per push.
    """
    body = canonical_json(compat_document(report))
    descriptor = attach_referrer(
        store, subject, mt.IMAGE_COMPAT_ARTIFACT, [Blob(mt.IMAGE_COMPAT_SPEC_LAYER, body)],
        annotations=annotations_of(report), created=created or now_rfc3339(),
    )
    if nfd:
        attach_nfd(store, subject, report)
    return descriptor


def attach_nfd(store: Store, subject: Descriptor, report: ScanReport | Mapping[str, Any]) -> Descriptor | None:
    """Push the NFD image-compatibility artifact; None when no NFD rule expresses the requirements."""
    document = nfd_document(report)
    if document is None:
        return None
    body = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
    return attach_referrer(
        store, subject, mt.NFD_COMPAT_ARTIFACT, [Blob(mt.NFD_COMPAT_LAYER, body)], created=now_rfc3339()
    )


def read_compat_document(store: Store, subject: Descriptor) -> dict[str, Any] | None:
    """The newest compatibility spec body attached to ``subject``; None without one."""
    referrer = newest_referrer(store, subject, mt.IMAGE_COMPAT_ARTIFACT)
    if referrer is None:
        return None
    manifest = fetch_manifest(store, referrer)
    layers = [d for d in manifest.layers if d.media_type == mt.IMAGE_COMPAT_SPEC_LAYER]
    if not layers:
        return None
    raw = read_all(store, layers[0], limit=MAX_SPEC_SIZE)
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise InvalidContentError(f"compatibility spec {layers[0].short()} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidContentError(f"compatibility spec {layers[0].short()} is not a JSON object")
    return document if has_compat_metadata(document) else None
