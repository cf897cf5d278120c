"""Decide what a pull extracts: resolve the reference, classify the artifact, plan each layer.

Three kinds of artifact are told apart by their manifest:

``view``   an ocikit view (``artifactType``, or ocikit 0.1's config type ``application/vnd.ocikit.view…``;
           since 0.2 the config is an image config holding the view metadata, which
           :class:`~ocikit.spec.view_config.ViewConfig` reads in either shape):
           every layer is merged into DEST (a layer marked ``io.deis.oras.content.unpack``
           keeps its entries under ``<title>/``, which is stripped), then relocated.
``image``  a container image (an image config): layers applied in order with whiteouts;
           also any artifact pulled with ``rootfs=True``.
``oras``   anything else, unpacked the way ORAS clients do (oras-go ``content/file``): layers without
           a title are skipped; ``unpack == "true"`` (oras-go), or a ``tar+gzip`` layer without
           the annotation (oras-py's directory convention), is a directory archive whose
           entries must lie under ``<title>/``; any other layer is a file saved as ``<title>``.

Each layer also gets the digest its *uncompressed* stream must have, when the artifact
records one (the ORAS ``io.deis.oras.content.digest`` annotation, a view config's
``layers[].diffId``, an image config's ``rootfs.diff_ids``), and a view's declared tar size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..content.base import Store, fetch_manifest, read_all
from ..errors import InvalidContentError, NotFoundError, UnsafeContentError, UnsupportedError
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor, Platform
from ..spec.manifest import ParsedManifest, select_platform
from ..spec.view_config import ViewConfig
from .rules import check_reserved, normalize_name

KIND_VIEW, KIND_IMAGE, KIND_ORAS = "view", "image", "oras"
TREE, ROOTFS, TITLED, FILE = "tree", "rootfs", "titled", "file"

MAX_CONFIG_SIZE = 16 << 20
_IMAGE_CONFIGS = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})


@dataclass(frozen=True)
class LayerJob:
    """How to extract one layer."""

    index: int
    descriptor: Descriptor
    mode: str  # TREE | ROOTFS | TITLED | FILE
    title: str = ""
    strip_title: bool = False  # TREE layers whose entries are under <title>/ (ORAS-style)
    uncompressed_digest: str | None = None
    declared_size: int | None = None


@dataclass(frozen=True)
class ArtifactPlan:
    """A resolved artifact: which manifest, what kind, how each layer is extracted."""

    reference: str
    top_digest: str  # what the reference resolved to (an index when multi-platform)
    manifest_desc: Descriptor
    manifest: ParsedManifest
    kind: str
    config: Mapping[str, Any] = field(default_factory=dict)  # the raw config document
    layers: tuple[LayerJob, ...] = ()
    view: ViewConfig | None = None  # the parsed config of a view (kind == KIND_VIEW)

    @property
    def digest(self) -> str:
        return self.manifest_desc.digest

    @property
    def compressed_size(self) -> int:
        return sum(job.descriptor.size for job in self.layers)

    def digests(self) -> set[str]:
        """Digests a ready marker may be matched against (the manifest's, and the index's)."""
        return {self.digest, self.top_digest}


@dataclass(frozen=True)
class ResolvedManifest:
    """A reference resolved to one manifest (through an index when needed); no config read yet."""

    reference: str
    top_digest: str
    descriptor: Descriptor
    manifest: ParsedManifest

    def digests(self) -> set[str]:
        return {self.descriptor.digest, self.top_digest}


def resolve_manifest(
    store: Store, reference: str, *, platform: Platform | None = None, label: str = ""
) -> ResolvedManifest:
    """Resolve ``reference`` in ``store``; an index yields its manifest for ``platform`` (default: this host)."""
    top = store.resolve(reference)
    parsed = fetch_manifest(store, top)
    desc = top
    if parsed.is_index:
        desc = _pick_manifest(parsed, platform or Platform.host())
        parsed = fetch_manifest(store, desc)
        if parsed.is_index:
            raise UnsupportedError(f"{label or reference}: nested image indexes are not supported")
    return ResolvedManifest(label or reference, top.digest, desc, parsed)


def plan_artifact(store: Store, resolved: ResolvedManifest, *, rootfs: bool = False) -> ArtifactPlan:
    """Read the config, classify the artifact and plan every layer."""
    config = _read_config(store, resolved.manifest)
    kind = classify(resolved.manifest, rootfs)
    view = ViewConfig.from_document(config) if kind == KIND_VIEW else None
    return ArtifactPlan(
        reference=resolved.reference,
        top_digest=resolved.top_digest,
        manifest_desc=resolved.descriptor,
        manifest=resolved.manifest,
        kind=kind,
        config=config,
        layers=tuple(plan_layers(resolved.manifest, kind, config, view)),
        view=view,
    )


def _pick_manifest(index: ParsedManifest, platform: Platform) -> Descriptor:
    if all(entry.platform is None for entry in index.manifests) and len(index.manifests) == 1:
        return index.manifests[0]  # a single-entry index of an artifact (no platform to match)
    return select_platform(index, platform)


def classify(manifest: ParsedManifest, rootfs: bool = False) -> str:
    config_type = manifest.config.media_type if manifest.config else ""
    if manifest.artifact_type == mt.OCIKIT_VIEW_ARTIFACT or config_type == mt.OCIKIT_VIEW_CONFIG:
        return KIND_VIEW
    if rootfs or (config_type in _IMAGE_CONFIGS and not manifest.artifact_type):
        return KIND_IMAGE
    return KIND_ORAS


def _read_config(store: Store, manifest: ParsedManifest) -> Mapping[str, Any]:
    config = manifest.config
    if config is None or config.media_type == mt.OCI_EMPTY or not config.media_type.endswith("json"):
        return {}
    if config.size > MAX_CONFIG_SIZE:
        raise InvalidContentError(f"config {config.digest} is {config.size} bytes; at most {MAX_CONFIG_SIZE} allowed")
    try:
        document = json.loads(read_all(store, config, limit=MAX_CONFIG_SIZE))
    except NotFoundError:
        raise
    except ValueError as exc:
        raise InvalidContentError(f"config {config.digest} is not valid JSON: {exc}") from None
    return document if isinstance(document, dict) else {}


def plan_layers(
    manifest: ParsedManifest, kind: str, config: Mapping[str, Any], view: ViewConfig | None = None
) -> list[LayerJob]:
    layers = [d for d in manifest.layers if d.media_type != mt.OCI_EMPTY and d.digest != mt.EMPTY_DIGEST]
    for desc in layers:
        if desc.urls:
            raise UnsupportedError(f"layer {desc.digest} is a foreign layer (urls); ocikit does not fetch those")
    if kind == KIND_IMAGE:
        diff_ids = _image_diff_ids(config, manifest.layers)
        return [
            LayerJob(i, d, ROOTFS, uncompressed_digest=_annotated_digest(d) or diff_ids.get(d.digest))
            for i, d in enumerate(layers)
        ]
    if kind == KIND_VIEW:
        jobs = []
        for i, d in enumerate(layers):
            record = view.layer(d.digest) if view is not None else None
            titled = d.annotations.get(mt.ORAS_ANNOTATION_UNPACK) == "true" and bool(d.title)
            jobs.append(
                LayerJob(
                    i,
                    d,
                    TREE,
                    title=_checked_title(d) if titled else "",
                    strip_title=titled,
                    uncompressed_digest=_annotated_digest(d) or (record.diff_id if record and record.diff_id else None),
                    declared_size=record.tar_size if record and record.tar_size >= 0 else None,
                )
            )
        return jobs
    return _oras_layers(layers)


def _oras_layers(layers: list[Descriptor]) -> list[LayerJob]:
    jobs: list[LayerJob] = []
    titles: set[str] = set()
    for i, d in enumerate(layers):
        if not d.title:
            continue  # oras pull skips untitled layers
        title = _checked_title(d)
        if title in titles:
            raise InvalidContentError(f"two layers share the title {title!r}")
        titles.add(title)
        unpack = d.annotations.get(mt.ORAS_ANNOTATION_UNPACK)
        directory = unpack == "true" or (unpack is None and d.media_type == mt.OCI_LAYER_GZIP)
        jobs.append(
            LayerJob(i, d, TITLED if directory else FILE, title=title, uncompressed_digest=_annotated_digest(d))
        )
    return jobs


def _checked_title(desc: Descriptor) -> str:
    title = normalize_name(desc.title, desc.title)
    if not title:
        raise UnsafeContentError(desc.title, "invalid name (empty title)")
    check_reserved(title, desc.title)
    return title


def _annotated_digest(desc: Descriptor) -> str | None:
    value = desc.annotations.get(mt.ORAS_ANNOTATION_DIGEST)
    return value or None


def _image_diff_ids(config: Mapping[str, Any], layers: tuple[Descriptor, ...]) -> dict[str, str]:
    """Blob digest → ``diff_id`` (the image config lists them in layer order)."""
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        return {}
    return {layer.digest: str(diff_id) for layer, diff_id in zip(layers, diff_ids) if diff_id}
