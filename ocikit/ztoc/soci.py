"""SOCI index manifests (v1 referrers and v2 bound indexes): write them, find zTOCs through them.

Both versions are image manifests whose config is the empty ``{}`` blob typed with the
index's artifact type (no top-level ``artifactType``) and whose layers are the zTOC blobs
(``application/octet-stream``) in image-layer order, each annotated with the layer's
digest, media type and span size (soci-snapshotter ``soci/soci_index.go``). They differ in
how a node finds them:

* **v1** (``application/vnd.amazon.soci.index.v1+json``) has the image manifest as its
  ``subject`` and is found through the referrers API. Pushed with
  :func:`~ocikit.graph.attach.attach_referrer`; a rebuild *replaces* ocikit's earlier v1
  index of the same image (SOCI would otherwise pick one of them, not necessarily the new).
  soci-snapshotter ≥ 0.10 ignores v1 unless ``[pull_modes.soci_v1] enable = true``.
* **v2** (``application/vnd.amazon.soci.index.v2+json``) has no subject: the image manifest
  names it in its ``com.amazon.soci.index-digest`` annotation, and both sit in one OCI index
  (``soci convert``; written by :mod:`.convert`).

zstd zTOCs are ocikit's own format, which SOCI would not understand, so they go into a
separate v1-style referrer of artifact type ``application/vnd.ocikit.ztoc.zstd.v1`` with
the same layer annotations; SOCI never sees them.

:func:`find_ztocs` is the one discovery every zTOC reader goes through: v2 first, then v1
referrers (for the layers v2 does not cover).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..content.base import Store, SupportsReferrers, fetch_manifest, push_bytes, read_all
from ..errors import InvalidContentError, NotFoundError, UnsupportedError
from ..graph.attach import attach_referrer
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import ParsedManifest
from .ztoc import ZSTD, Ztoc, parse_ztoc

SOCI_CONFIG = Descriptor(mt.SOCI_INDEX_V1, mt.EMPTY_DIGEST, 2)
SOCI_CONFIG_V2 = Descriptor(mt.SOCI_INDEX_V2, mt.EMPTY_DIGEST, 2)
INDEX_ARTIFACT_TYPES = (mt.SOCI_INDEX_V1, mt.OCIKIT_ZSTD_TOC_ARTIFACT)
MAX_ZTOC_SIZE = 1 << 30  # a 100 GiB layer at 4 MiB spans has a ~850 MB zTOC
OWN_BUILD_TOOL_PREFIX = "ocikit"  # build-tool-identifier of the indexes ocikit writes
WHITEOUT_OPAQUE = ".wh..wh..opq"

# Where a zTOC was found (ZtocRecord.via)
VIA_V2 = "soci-v2"
VIA_V1 = "soci-v1"
VIA_ZSTD = "ocikit-zstd"


@dataclass(frozen=True)
class ZtocRecord:
    """One zTOC of an image: which layer it indexes, where it is stored, how it was found."""

    layer_digest: str
    layer_media_type: str
    span_size: int
    ztoc: Descriptor
    index_digest: str  # the SOCI index (or ocikit zstd index) manifest that lists it
    via: str = VIA_V1

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
            "via": self.via,
        }


def should_disable_xattrs(ztoc: Ztoc) -> bool:
    """SOCI's ``shouldDisableXattrs``: only when no entry has xattrs *and* none is an opaque whiteout.

    Without xattrs SOCI's FUSE layer cannot mark a directory opaque (``trusted.overlay.opaque``),
    so a ``.wh..wh..opq`` layer keeps them, or lower-layer files would show through.
    """
    return not any(e.xattrs() or e.name.endswith(WHITEOUT_OPAQUE) for e in ztoc.entries)


def ztoc_descriptor(ztoc_blob: Descriptor, layer: Descriptor, ztoc: Ztoc) -> Descriptor:
    """The zTOC's descriptor as SOCI lists it in an index (annotations name the layer)."""
    annotations = {
        mt.SOCI_ANNOTATION_LAYER_MEDIATYPE: layer.media_type,
        mt.SOCI_ANNOTATION_LAYER_DIGEST: layer.digest,
        mt.SOCI_ANNOTATION_SPAN_SIZE: str(ztoc.span_size),
    }
    if should_disable_xattrs(ztoc):
        annotations[mt.SOCI_ANNOTATION_DISABLE_XATTRS] = "true"  # SOCI's XAttrOptimization
    return Descriptor(ztoc_blob.media_type, ztoc_blob.digest, ztoc_blob.size, annotations)


def reannotated_ztoc(store: Store, layer: Descriptor, blob: Descriptor, dst: Store | None = None) -> Descriptor:
    """An existing zTOC's descriptor annotated anew from its (verified) content, and the blob
    copied to ``dst`` if given: an index written before SOCI's opaque-whiteout rule was
    followed may say ``disable-xattrs`` where it must not."""
    raw = read_all(store, blob, limit=MAX_ZTOC_SIZE)
    ztoc = parse_ztoc(raw)
    if dst is not None and dst is not store:
        push_bytes(dst, blob.media_type, raw)
    return ztoc_descriptor(Descriptor(blob.media_type, blob.digest, blob.size), layer, ztoc)


def push_ztoc(store: Store, layer: Descriptor, ztoc: Ztoc) -> Descriptor:
    """Store a zTOC blob; return its annotated descriptor for an index."""
    data = ztoc.to_bytes()
    blob = push_bytes(store, mt.OCIKIT_ZSTD_TOC_LAYER if ztoc.compression == ZSTD else mt.SOCI_ZTOC_BLOB, data)
    return ztoc_descriptor(blob, layer, ztoc)


def attach_index(
    store: Store, subject: Descriptor, ztocs: list[Descriptor], build_tool_id: str, zstd: bool = False
) -> Descriptor:
    """Push a SOCI v1 index (or the ocikit zstd index) for ``subject``; return its descriptor.

    It replaces ocikit's earlier index of the same kind for ``subject`` (whatever its span
    size): SOCI picks one v1 index per image, and the rebuilt one must be that one.
    Indexes other tools wrote are left alone.
    """
    annotations = {mt.SOCI_ANNOTATION_BUILD_TOOL: build_tool_id}
    if zstd:
        return attach_referrer(store, subject, mt.OCIKIT_ZSTD_TOC_ARTIFACT, ztocs, annotations=annotations,
                               replace=_own_index(mt.OCIKIT_ZSTD_TOC_ARTIFACT))
    # SOCI v1 has no artifactType: the typed config says what the manifest is
    return attach_referrer(store, subject, "", ztocs, config=SOCI_CONFIG, annotations=annotations,
                           replace=_own_index(mt.SOCI_INDEX_V1))


def _own_index(artifact_type: str):  # type: ignore[no-untyped-def]
    def picks(desc: Descriptor) -> bool:
        tool = desc.annotations.get(mt.SOCI_ANNOTATION_BUILD_TOOL, "")
        return desc.artifact_type == artifact_type and tool.startswith(OWN_BUILD_TOOL_PREFIX)

    return picks


def index_records(index: ParsedManifest, index_digest: str, via: str) -> list[ZtocRecord]:
    """The zTOCs a SOCI (v1 or v2) or ocikit zstd index lists, in its order (prefetch artifacts skipped)."""
    records = []
    for blob in index.layers:
        digest = blob.annotations.get(mt.SOCI_ANNOTATION_LAYER_DIGEST)
        if not digest or blob.media_type not in (mt.SOCI_ZTOC_BLOB, mt.OCIKIT_ZSTD_TOC_LAYER):
            continue
        try:
            span = int(blob.annotations.get(mt.SOCI_ANNOTATION_SPAN_SIZE, "0"))
        except ValueError:
            span = 0
        layer_type = blob.annotations.get(mt.SOCI_ANNOTATION_LAYER_MEDIATYPE, "")
        records.append(ZtocRecord(digest, layer_type, span, blob, index_digest, via))
    return records


def bound_index(store: Store, manifest: ParsedManifest) -> tuple[str, ParsedManifest] | None:
    """The SOCI v2 index an image manifest names in ``com.amazon.soci.index-digest``.

    None if it names none, or one the store lacks (a platform manifest copied without its
    image index): like soci-snapshotter, the reader then goes on without it.
    """
    digest = manifest.annotations.get(mt.SOCI_ANNOTATION_INDEX_DIGEST)
    if not digest:
        return None
    try:
        index = fetch_manifest(store, digest)
    except NotFoundError:
        return None
    if index.is_index or index.config is None or index.config.media_type != mt.SOCI_INDEX_V2:
        raise InvalidContentError(f"{digest} named by {mt.SOCI_ANNOTATION_INDEX_DIGEST} is not a SOCI v2 index")
    return digest, index


def referrer_ztocs(store: Store, subject: Descriptor) -> list[ZtocRecord]:
    """All zTOCs attached to ``subject`` through SOCI v1 indexes and ocikit zstd indexes."""
    if not isinstance(store, SupportsReferrers):
        raise UnsupportedError(f"{store.describe()} cannot list referrers, so attached zTOCs cannot be found")
    records: list[ZtocRecord] = []
    for referrer in store.referrers(subject):
        if referrer.artifact_type not in INDEX_ARTIFACT_TYPES:
            continue
        via = VIA_ZSTD if referrer.artifact_type == mt.OCIKIT_ZSTD_TOC_ARTIFACT else VIA_V1
        records += index_records(fetch_manifest(store, referrer), referrer.digest, via)
    # an index a store could not delete may list the same zTOC again: report each zTOC once
    unique: dict[tuple[str, int, str], ZtocRecord] = {}
    for record in records:
        unique.setdefault((record.layer_digest, record.span_size, record.ztoc.digest), record)
    return list(unique.values())


def find_ztocs(store: Store, manifest_desc: Descriptor, manifest: ParsedManifest) -> list[ZtocRecord]:
    """The one zTOC discovery: a bound SOCI v2 index first, then v1 referrers for the other layers.

    One record per layer at most, in layer order; layers neither covers are left out (the
    caller decides whether to build them in memory). A store that cannot list referrers
    only has v2 to offer.
    """
    found: dict[str, ZtocRecord] = {}
    bound = bound_index(store, manifest)
    if bound is not None:
        for record in index_records(bound[1], bound[0], VIA_V2):
            found.setdefault(record.layer_digest, record)
    if isinstance(store, SupportsReferrers):
        for record in referrer_ztocs(store, manifest_desc):
            found.setdefault(record.layer_digest, record)
    return [found[layer.digest] for layer in manifest.layers if layer.digest in found]


def load_ztoc(store: Store, desc: Descriptor) -> Ztoc:
    """Fetch (verified) and parse a zTOC blob."""
    if desc.size > MAX_ZTOC_SIZE:
        raise InvalidContentError(f"zTOC {desc.digest} is {desc.size} bytes, more than {MAX_ZTOC_SIZE} allowed")
    with store.fetch(desc) as reader:
        data = reader.readall()
    return parse_ztoc(data)
