"""``ztoc convert``: a SOCI-enabled image (SOCI index manifest v2), as ``soci convert`` lays it out.

soci-snapshotter ≥ 0.10 lazily loads an image only through a v2 index by default. The
layout (``soci/soci_convert.go``, ``docs/soci-index-manifest-v2.md``):

* the result is an OCI image index: the source's index (media type forced to OCI, its
  annotations kept), or for a single-manifest image a new index holding that manifest
  with the platform read from its config;
* each indexed image manifest is rewritten as an OCI manifest (a Docker config descriptor
  becomes ``application/vnd.oci.image.config.v1+json``) with the annotation
  ``com.amazon.soci.index-digest`` naming its SOCI index; its entry in the index takes the
  new digest and size, the manifest's annotations, and keeps its platform. Config and
  layers are shared with the source image, never copied or changed;
* each SOCI index is an image manifest without ``subject`` or ``artifactType``: config the
  ``{}`` blob typed ``application/vnd.amazon.soci.index.v2+json``, layers the zTOCs, the
  annotation ``com.amazon.soci.build-tool-identifier``. It is listed in the OCI index after
  the images with ``artifactType`` v2, its image's ``platform`` and the annotation
  ``com.amazon.soci.image-manifest-digest`` (the rewritten manifest's digest); an earlier
  v2 entry for the same platform is replaced, which makes converting twice a fixed point.

Platforms: a single-manifest image is indexed for its own platform; for a multi-platform
image the caller lists platforms, or asks for all of them, and the default is this host's
(``soci convert`` does the same). A platform whose layers are all skipped keeps its
original entry. Entries ocikit does not index stay byte for byte, except Docker manifests,
which become OCI ones as in ``soci convert`` (registries dislike mixing the two).

zTOCs are built as ``ztoc build`` builds them (gzip and tar layers, from
``min_layer_size`` up); zstd layers are skipped (SOCI cannot read them). zTOCs the source
already has for the same span size (v2 or v1, found by :func:`~ocikit.ztoc.soci.find_ztocs`)
are reused — fetched and re-annotated, never rebuilt — so a second conversion gives the same
digests without reading the layers.
ocikit serializes manifests as canonical JSON, so digests differ from ``soci convert``'s
(Go field order); the structure is the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..content.base import Store, ensure_empty_blob, fetch_manifest, push_manifest, read_all
from ..errors import InvalidContentError, UnsupportedError
from ..progress import NULL_PROGRESS, Progress
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor, Platform
from ..spec.manifest import ParsedManifest, build_index, build_manifest, canonical_json, is_image_entry, match_platform
from .build import DEFAULT_BUILD_TOOL, DEFAULT_MIN_LAYER_SIZE, DEFAULT_SPAN_SIZE, check_build_sizes
from .image import build_layer_ztoc
from .soci import SOCI_CONFIG_V2, find_ztocs, push_ztoc, reannotated_ztoc


@dataclass(frozen=True)
class ConvertOptions:
    """What a conversion indexes: span size, smallest layer, platforms, build tool name."""

    span_size: int = DEFAULT_SPAN_SIZE
    min_layer_size: int = DEFAULT_MIN_LAYER_SIZE
    platforms: tuple[Platform, ...] = ()  # none: the image's own (single) or this host's (multi)
    all_platforms: bool = False
    build_tool_id: str = DEFAULT_BUILD_TOOL

    def __post_init__(self) -> None:
        check_build_sizes(self.span_size, self.min_layer_size)


@dataclass
class ConvertLayer:
    layer: str
    size: int
    status: str  # built | reused | skipped
    reason: str = ""
    ztoc: str = ""


@dataclass
class ConvertPlatform:
    platform: str
    manifest: str  # the source image manifest
    converted: str = ""  # the rewritten manifest ("" when nothing could be indexed)
    index: str = ""  # its SOCI v2 index
    layers: list[ConvertLayer] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k != "layers"}
        out["layers"] = [dict(layer.__dict__) for layer in self.layers]
        return out


@dataclass
class ConvertReport:
    source: str  # digest of what was converted
    digest: str  # the converted image (an OCI index)
    size: int
    reference: str = ""  # where it was tagged
    platforms: list[ConvertPlatform] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "digest": self.digest, "size": self.size, "reference": self.reference,
                "platforms": [p.to_dict() for p in self.platforms]}


def convert_image(
    src: Store,
    root: Descriptor,
    dst: Store,
    options: ConvertOptions = ConvertOptions(),
    progress: Progress = NULL_PROGRESS,
) -> tuple[Descriptor, ConvertReport]:
    """Convert the image ``root`` of ``src`` into a SOCI-enabled image in ``dst`` (untagged).

    When ``dst`` is another store the source image is copied there first (layers once).
    """
    if dst is not src:
        from ..graph.copy import copy_graph

        copy_graph(src, dst, root, progress=progress)
    top = fetch_manifest(src, root)
    entries = list(top.manifests) if top.is_index else [_with_config_platform(src, root, top)]
    report = ConvertReport(root.digest, "", 0)
    chosen = _chosen(entries, top.is_index, options)
    socis: list[Descriptor] = []
    for i, entry in enumerate(entries):
        if not is_image_entry(entry):
            continue  # SOCI indexes of an earlier conversion, attestations, nested indexes
        if entry.digest in chosen:
            outcome, entries[i], soci = _index_platform(src, dst, entry, options, progress)
            report.platforms.append(outcome)
            if soci is not None:
                socis.append(soci)
        elif entry.media_type == mt.DOCKER_MANIFEST:
            entries[i] = _rewrite(dst, entry, fetch_manifest(src, entry), None)
    if not socis:
        raise UnsupportedError(
            f"no layer of {root.short()} could be indexed for the chosen platforms "
            f"(layers smaller than {options.min_layer_size} bytes, zstd or not tar): nothing to convert"
        )
    for soci in socis:
        entries = _replace_soci_entry(entries, soci)
    raw = build_index(entries, annotations=top.annotations if top.is_index else None)
    converted = push_manifest(dst, raw)
    report.digest, report.size = converted.digest, converted.size
    return converted, report


def _with_config_platform(store: Store, root: Descriptor, manifest: ParsedManifest) -> Descriptor:
    """A single manifest's descriptor with the platform its config declares (``soci convert`` does this)."""
    if manifest.config is None:
        raise InvalidContentError(f"{root.digest} has no config")
    try:
        config = json.loads(read_all(store, manifest.config))
    except ValueError:
        raise InvalidContentError(f"the config of {root.short()} is not JSON") from None
    if not isinstance(config, Mapping) or not config.get("os") or not config.get("architecture"):
        raise InvalidContentError(f"the config of {root.short()} names no os/architecture")
    platform = Platform.from_dict(config)
    return Descriptor(root.media_type, root.digest, root.size, platform=platform)


def _chosen(entries: list[Descriptor], multi: bool, options: ConvertOptions) -> set[str]:
    """Digests of the image manifests to index."""
    images = [e for e in entries if is_image_entry(e)]
    if not multi or options.all_platforms:
        return {e.digest for e in images}
    wanted = options.platforms or (Platform.host(),)
    return {match_platform(images, platform).digest for platform in wanted}


def _index_platform(
    src: Store, dst: Store, entry: Descriptor, options: ConvertOptions, progress: Progress
) -> tuple[ConvertPlatform, Descriptor, Descriptor | None]:
    """zTOC one platform's layers; push its SOCI index and rewritten manifest.

    Returns the outcome, the entry for the converted index and the SOCI index's entry
    (None, with the entry unchanged, when no layer could be indexed).
    """
    manifest = fetch_manifest(src, entry)
    if manifest.is_index:
        raise InvalidContentError(f"{entry.digest} is a nested index, not an image manifest")
    outcome = ConvertPlatform(str(entry.platform or ""), entry.digest)
    ztocs = _layer_ztocs(src, dst, entry, manifest, options, progress, outcome)
    if not ztocs:
        return outcome, entry, None
    ensure_empty_blob(dst)  # the SOCI index's config
    index_raw = build_manifest(ztocs, config=SOCI_CONFIG_V2,
                               annotations={mt.SOCI_ANNOTATION_BUILD_TOOL: options.build_tool_id})
    index = push_manifest(dst, index_raw)
    converted = _rewrite(dst, entry, manifest, index.digest)
    soci = Descriptor(
        mt.OCI_MANIFEST, index.digest, index.size, artifact_type=mt.SOCI_INDEX_V2, platform=entry.platform,
        annotations={mt.SOCI_ANNOTATION_IMAGE_MANIFEST_DIGEST: converted.digest},
    )
    outcome.converted, outcome.index = converted.digest, index.digest
    return outcome, converted, soci


def _layer_ztocs(
    src: Store, dst: Store, entry: Descriptor, manifest: ParsedManifest, options: ConvertOptions,
    progress: Progress, outcome: ConvertPlatform,
) -> list[Descriptor]:
    """The zTOC descriptors of the eligible layers, in layer order (reused where the source has them)."""
    existing = {r.layer_digest: r for r in find_ztocs(src, entry, manifest)
                if r.span_size == options.span_size and r.kind == "soci"}
    ztocs = []
    for layer in manifest.layers:
        result = ConvertLayer(layer.digest, layer.size, "skipped")
        outcome.layers.append(result)
        if layer.size < options.min_layer_size:
            result.reason = f"smaller than the minimum layer size ({options.min_layer_size} bytes)"
            continue
        if mt.layer_compression(layer.media_type) == "zstd":
            result.reason = "zstd: SOCI cannot read it lazily (ocikit's zstd zTOCs are v1 referrers: ztoc build)"
            continue
        record = existing.get(layer.digest)
        if record is not None:
            ztocs.append(reannotated_ztoc(src, layer, record.ztoc, dst))
            result.status, result.ztoc = "reused", record.ztoc.digest
            continue
        try:
            ztoc = build_layer_ztoc(src, layer, options.span_size, options.build_tool_id, progress)
        except (InvalidContentError, UnsupportedError) as exc:
            result.reason = str(exc)
            continue
        desc = push_ztoc(dst, layer, ztoc)
        ztocs.append(desc)
        result.status, result.ztoc = "built", desc.digest
    return ztocs


def _rewrite(dst: Store, entry: Descriptor, manifest: ParsedManifest, index_digest: str | None) -> Descriptor:
    """``entry``'s manifest as an OCI manifest, bound to ``index_digest`` (if any); its new index entry.

    An OCI manifest that needs no change keeps its exact bytes (and digest).
    """
    document: dict[str, Any] = json.loads(manifest.raw)
    annotations = dict(document.get("annotations") or {})
    if index_digest:
        annotations[mt.SOCI_ANNOTATION_INDEX_DIGEST] = index_digest
    docker_config = manifest.config is not None and manifest.config.media_type == mt.DOCKER_CONFIG
    if manifest.media_type == mt.OCI_MANIFEST and not docker_config and annotations == manifest.annotations:
        return entry
    document["mediaType"] = mt.OCI_MANIFEST
    if docker_config:
        document["config"] = dict(document["config"], mediaType=mt.OCI_CONFIG)
    if annotations:
        document["annotations"] = annotations
    pushed = push_manifest(dst, canonical_json(document))
    # the entry keeps its other fields (platform, artifactType…), as soci convert edits it in place
    return entry.replace(media_type=mt.OCI_MANIFEST, digest=pushed.digest, size=pushed.size, annotations=annotations)


def _replace_soci_entry(entries: list[Descriptor], soci: Descriptor) -> list[Descriptor]:
    """``entries`` with ``soci`` in place of an earlier v2 index of the same platform, else appended."""
    for i, entry in enumerate(entries):
        if _is_soci_entry(entry) and entry.platform == soci.platform:
            return entries[:i] + [soci] + entries[i + 1 :]
    return entries + [soci]


def _is_soci_entry(entry: Descriptor) -> bool:
    # the annotation too: skopeo 1.9 copies drop artifactType from index entries
    return entry.artifact_type == mt.SOCI_INDEX_V2 or mt.SOCI_ANNOTATION_IMAGE_MANIFEST_DIGEST in entry.annotations
