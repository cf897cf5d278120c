"""An image's layers together with their zTOCs.

Reading files on demand needs each layer's TOC. zTOCs are found by
:func:`~ocikit.ztoc.soci.find_ztocs` (a bound SOCI v2 index first, then SOCI v1 and ocikit
zstd referrers); a layer without one — typically a small layer below ``--min-layer-size`` —
is read once and indexed in memory. ``ImageZtocs.cost`` counts every blob byte this took
(zTOC blobs and layers read whole), so what a reader reports as fetched is what the
registry served.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..content.base import Store, fetch_manifest
from ..errors import InvalidContentError
from ..extract.plan import KIND_IMAGE, classify
from ..progress import NULL_PROGRESS, Progress
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor, Platform
from ..spec.manifest import ParsedManifest, select_platform
from .build import DEFAULT_SPAN_SIZE, build_ztoc
from .fetch import FetchStats
from .soci import ZtocRecord, find_ztocs, load_ztoc
from .view import ImageTree
from .ztoc import GZIP, ZSTD, Ztoc

_DECLARED = {"gzip": GZIP, "zstd": ZSTD}


def image_manifest(
    store: Store, desc: Descriptor, platform: Platform | None = None
) -> tuple[Descriptor, ParsedManifest]:
    """The image manifest for ``desc``; an index is narrowed to ``platform`` (default: this host)."""
    parsed = fetch_manifest(store, desc)
    if parsed.is_index:
        desc = select_platform(parsed, platform or Platform.host())
        parsed = fetch_manifest(store, desc)
    if parsed.is_index:
        raise InvalidContentError(f"{desc.digest} is a nested index, not an image manifest")
    return desc, parsed


@dataclass
class ImageZtocs:
    manifest_desc: Descriptor
    layers: list[Descriptor]
    ztocs: list[Ztoc]
    built: list[str] = field(default_factory=list)  # layers indexed on the fly
    cost: FetchStats = field(default_factory=FetchStats)  # blob bytes read to get the zTOCs
    via: dict[str, str] = field(default_factory=dict)  # layer digest -> where its zTOC came from
    stacked: bool = True  # a container image's layers; a view's or ORAS artifact's lie side by side

    def entries(self) -> list[list]:  # type: ignore[type-arg]
        return [z.entries for z in self.ztocs]

    def tree(self) -> ImageTree:
        """The merged tree of the layers, merged as a pull of this artifact merges them."""
        return ImageTree(self.entries(), stacked=self.stacked)


def layer_ztoc_records(store: Store, manifest_desc: Descriptor) -> dict[str, ZtocRecord]:
    """The zTOC per layer digest, as :func:`~ocikit.ztoc.soci.find_ztocs` finds them."""
    manifest_desc, manifest = image_manifest(store, manifest_desc)
    return {r.layer_digest: r for r in find_ztocs(store, manifest_desc, manifest)}


def build_layer_ztoc(store: Store, layer: Descriptor, span_size: int, build_tool_id: str,
                     progress: Progress = NULL_PROGRESS) -> Ztoc:
    """Stream one layer from the store (verified) and index it."""
    declared = _DECLARED.get(mt.layer_compression(layer.media_type))
    task = f"ztoc:{layer.digest}"
    progress.start(task, f"index {layer.short()}", layer.size)
    with store.fetch(layer) as reader:
        ztoc = build_ztoc(reader, span_size, build_tool_id, declared, lambda n: progress.advance(task, n))
        reader.verify_to_end()
    progress.finish(task)
    return ztoc


def load_image_ztocs(
    store: Store,
    manifest_desc: Descriptor,
    platform: Platform | None = None,
    progress: Progress = NULL_PROGRESS,
) -> ImageZtocs:
    """Each layer's zTOC: attached ones fetched, missing ones built in memory from the layer."""
    manifest_desc, manifest = image_manifest(store, manifest_desc, platform)
    records = {r.layer_digest: r for r in find_ztocs(store, manifest_desc, manifest)}
    result = ImageZtocs(manifest_desc, list(manifest.layers), [], stacked=classify(manifest) == KIND_IMAGE)
    for layer in manifest.layers:
        record = records.get(layer.digest)
        result.cost.requests += 1
        if record is not None:
            result.ztocs.append(load_ztoc(store, record.ztoc))
            result.cost.bytes_fetched += record.ztoc.size
            result.via[layer.digest] = record.via
            continue
        progress.message(f"layer {layer.short()} has no zTOC: reading it once to index it")
        result.ztocs.append(build_layer_ztoc(store, layer, DEFAULT_SPAN_SIZE, "ocikit (in memory)", progress))
        result.cost.bytes_fetched += layer.size
        result.built.append(layer.digest)
        result.via[layer.digest] = "built"
    return result
