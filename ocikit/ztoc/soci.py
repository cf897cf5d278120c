"""SOCI index manifests: attach zTOCs to an image, find them again.

A SOCI index (v1, soci-snapshotter ``soci/soci_index.go``) is an image manifest whose
``subject`` is the image manifest, whose config is the empty ``{}`` blob typed
``application/vnd.amazon.soci.index.v1+json`` (no top-level ``artifactType``), and whose
layers are the zTOC blobs (``application/octet-stream``) in image-layer order, each
annotated with the layer's digest, media type and span size. Pushing it with
:func:`~ocikit.graph.attach.attach_referrer` makes it a referrer of the image: the layout
store lists it in ``index.json``, registries serve it through the referrers API or the
tag-schema fallback the registry store maintains.

zstd zTOCs are ocikit's own format, which the SOCI snapshotter would not understand, so
they go into a separate referrer of artifact type ``application/vnd.ocikit.ztoc.zstd.v1``
with the same layer annotations; SOCI never sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..content.base import Store, SupportsReferrers, fetch_manifest, push_bytes
from ..errors import InvalidContentError, UnsupportedError
from ..graph.attach import attach_referrer
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from .ztoc import ZSTD, Ztoc, parse_ztoc

SOCI_CONFIG = Descriptor(mt.SOCI_INDEX_V1, mt.EMPTY_DIGEST, 2)
INDEX_ARTIFACT_TYPES = (mt.SOCI_INDEX_V1, mt.OCIKIT_ZSTD_TOC_ARTIFACT)
MAX_ZTOC_SIZE = 1 << 30  # a 100 GiB layer at 4 MiB spans has a ~850 MB zTOC


@dataclass(frozen=True)
class ZtocRecord:
    """One zTOC attached to an image: which layer it indexes and where it is stored."""

    layer_digest: str
    layer_media_type: str
    span_size: int
    ztoc: Descriptor
    index_digest: str  # the SOCI index (or ocikit zstd index) manifest that lists it

    @property
    def kind(self) -> str:
        return "zstd" if self.ztoc.media_type == mt.OCIKIT_ZSTD_TOC_LAYER else "soci"

    def to_dict(self) -> dict[str, object]:
        return {
            "layer": self.layer_digest,
            "layerMediaType": self.layer_media_type,
            "spanSize": self.span_size,
            "ztoc": self.ztoc.digest,
            "ztocSize": self.ztoc.size,
            "kind": self.kind,
            "index": self.index_digest,
        }


def ztoc_descriptor(ztoc_blob: Descriptor, layer: Descriptor, ztoc: Ztoc) -> Descriptor:
    """The zTOC's descriptor as SOCI lists it in an index (annotations name the layer)."""
    annotations = {
        mt.SOCI_ANNOTATION_LAYER_MEDIATYPE: layer.media_type,
        mt.SOCI_ANNOTATION_LAYER_DIGEST: layer.digest,
        mt.SOCI_ANNOTATION_SPAN_SIZE: str(ztoc.span_size),
    }
    if not any(e.xattrs() for e in ztoc.entries):
        annotations[mt.SOCI_ANNOTATION_DISABLE_XATTRS] = "true"  # SOCI's XAttrOptimization
    return Descriptor(ztoc_blob.media_type, ztoc_blob.digest, ztoc_blob.size, annotations)


def push_ztoc(store: Store, layer: Descriptor, ztoc: Ztoc) -> Descriptor:
    """Store a zTOC blob; return its annotated descriptor for an index."""
    data = ztoc.to_bytes()
    blob = push_bytes(store, mt.OCIKIT_ZSTD_TOC_LAYER if ztoc.compression == ZSTD else mt.SOCI_ZTOC_BLOB, data)
    return ztoc_descriptor(blob, layer, ztoc)


def attach_index(
    store: Store, subject: Descriptor, ztocs: list[Descriptor], build_tool_id: str, zstd: bool = False
) -> Descriptor:
    """Push a SOCI v1 index (or the ocikit zstd index) for ``subject``; return its descriptor."""
    annotations = {mt.SOCI_ANNOTATION_BUILD_TOOL: build_tool_id}
    if zstd:
        return attach_referrer(store, subject, mt.OCIKIT_ZSTD_TOC_ARTIFACT, ztocs, annotations=annotations)
    # SOCI v1 has no artifactType: the typed config says what the manifest is
    return attach_referrer(store, subject, "", ztocs, config=SOCI_CONFIG, annotations=annotations)


def attached_ztocs(store: Store, subject: Descriptor) -> list[ZtocRecord]:
    """All zTOCs attached to ``subject`` through SOCI v1 indexes and ocikit zstd indexes."""
    if not isinstance(store, SupportsReferrers):
        raise UnsupportedError(f"{store.describe()} cannot list referrers, so attached zTOCs cannot be found")
    records: list[ZtocRecord] = []
    for referrer in store.referrers(subject):
        if referrer.artifact_type not in INDEX_ARTIFACT_TYPES:
            continue
        index = fetch_manifest(store, referrer)
        for layer in index.layers:
            digest = layer.annotations.get(mt.SOCI_ANNOTATION_LAYER_DIGEST)
            if not digest or layer.media_type not in (mt.SOCI_ZTOC_BLOB, mt.OCIKIT_ZSTD_TOC_LAYER):
                continue  # prefetch artifacts and the like
            try:
                span = int(layer.annotations.get(mt.SOCI_ANNOTATION_SPAN_SIZE, "0"))
            except ValueError:
                span = 0
            records.append(
                ZtocRecord(digest, layer.annotations.get(mt.SOCI_ANNOTATION_LAYER_MEDIATYPE, ""), span, layer,
                           referrer.digest)
            )
    # a rebuild lists reused zTOCs again in its new index: report each zTOC once
    unique: dict[tuple[str, int, str], ZtocRecord] = {}
    for record in records:
        unique.setdefault((record.layer_digest, record.span_size, record.ztoc.digest), record)
    return list(unique.values())


def load_ztoc(store: Store, desc: Descriptor) -> Ztoc:
    """Fetch (verified) and parse a zTOC blob."""
    if desc.size > MAX_ZTOC_SIZE:
        raise InvalidContentError(f"zTOC {desc.digest} is {desc.size} bytes, more than {MAX_ZTOC_SIZE} allowed")
    with store.fetch(desc) as reader:
        data = reader.readall()
    return parse_ztoc(data)
