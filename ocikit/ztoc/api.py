"""The zTOC verbs: build, list, inspect, fetch one file.

Each function takes a reference string (``oci:DIR:TAG``, ``host/repo:tag``) or, for the
``*_image`` variants, an open store and a manifest descriptor. They never print; progress
goes to a :class:`~ocikit.progress.Progress` and failures raise typed errors.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from ..content.base import Store
from ..content.open import open_store
from ..errors import InvalidContentError, InvalidReferenceError, NotFoundError, UnsupportedError
from ..extract.safe_tar import ExtractPolicy
from ..options import DEFAULT_OPTIONS, Options
from ..progress import NULL_PROGRESS, Progress
from ..reference import Reference
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor, Platform
from .build import DEFAULT_BUILD_TOOL, DEFAULT_MIN_LAYER_SIZE, DEFAULT_SPAN_SIZE, build_ztoc, check_build_sizes
from .convert import ConvertOptions, ConvertReport, convert_image
from .extract import FileResult, fetch_file, stream_file
from .image import build_layer_ztoc, image_manifest, layer_ztoc_records, load_image_ztocs
from .soci import ZtocRecord, attach_index, find_ztocs, load_ztoc, push_ztoc, reannotated_ztoc
from .ztoc import ZSTD, Ztoc, parse_ztoc

_COMPRESSION_NAMES = {"gzip": "gzip", "zstd": "zstd", "none": "uncompressed"}


def _platform(platform: "Platform | str | None") -> Platform | None:
    return Platform.parse(platform) if isinstance(platform, str) else platform


def _open_image(reference: str, options: Options) -> tuple[Store, Descriptor]:
    store, ref = open_store(reference, options, create=False)
    return store, store.resolve(ref.reference)


# -- build ------------------------------------------------------------------------------


@dataclass
class ZtocFileResult:
    """A zTOC built from a local layer file."""

    output: str
    digest: str
    size: int
    compression: str
    entries: int
    spans: int
    span_size: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def build_ztoc_file(
    layer_path: str,
    output: str,
    *,
    span_size: int = DEFAULT_SPAN_SIZE,
    build_tool_id: str = DEFAULT_BUILD_TOOL,
) -> ZtocFileResult:
    """Build the zTOC of a local layer blob (gzip, tar or zstd) and write it to ``output``."""
    from ..digest import digest_bytes
    from .extract import write_atomically

    try:
        source = open(layer_path, "rb")
    except OSError as exc:
        raise NotFoundError(f"cannot read layer {layer_path}: {exc.strerror}") from None
    with source:
        ztoc = build_ztoc(source, span_size, build_tool_id)
    data = ztoc.to_bytes()
    write_atomically(output, data)
    return ZtocFileResult(output, digest_bytes(data), len(data), ztoc.compression, len(ztoc.entries),
                          len(ztoc.span_digests), span_size)


@dataclass
class LayerOutcome:
    layer: str
    size: int
    status: str  # built | exists | skipped
    reason: str = ""
    ztoc: str = ""
    compression: str = ""


@dataclass
class BuildReport:
    manifest: str
    span_size: int
    layers: list[LayerOutcome] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)  # index manifests pushed

    def to_dict(self) -> dict[str, object]:
        return {
            "manifest": self.manifest,
            "spanSize": self.span_size,
            "layers": [dict(o.__dict__) for o in self.layers],
            "indexes": self.indexes,
        }


def index_image(
    store: Store,
    manifest_desc: Descriptor,
    *,
    span_size: int = DEFAULT_SPAN_SIZE,
    min_layer_size: int = DEFAULT_MIN_LAYER_SIZE,
    force: bool = False,
    build_tool_id: str = DEFAULT_BUILD_TOOL,
    platform: "Platform | str | None" = None,
    progress: Progress = NULL_PROGRESS,
) -> BuildReport:
    """zTOC every eligible layer of an image and attach SOCI v1 (and ocikit zstd) indexes.

    Layers smaller than ``min_layer_size`` (compressed) are skipped, so are layers that
    already have a zTOC with the same span size (unless ``force``), zstd layers that are a
    single frame (not seekable) and layers that are not tar archives. A new index replaces
    ocikit's earlier one for the image (:func:`~ocikit.ztoc.soci.attach_index`).
    """
    check_build_sizes(span_size, min_layer_size)
    manifest_desc, manifest = image_manifest(store, manifest_desc, _platform(platform))
    found = find_ztocs(store, manifest_desc, manifest)
    existing = {r.layer_digest: r for r in found if r.span_size == span_size}
    report = BuildReport(manifest_desc.digest, span_size)
    soci: list[Descriptor] = []
    zstd: list[Descriptor] = []
    reused: dict[int, Descriptor] = {}  # position in ``soci`` -> its layer
    new = {"soci": False, "zstd": False}
    for layer in manifest.layers:
        outcome = LayerOutcome(layer.digest, layer.size, "skipped")
        report.layers.append(outcome)
        if layer.size < min_layer_size:
            outcome.reason = f"smaller than the minimum layer size ({min_layer_size} bytes)"
            continue
        record = existing.get(layer.digest)
        if record is not None and not force:
            outcome.status, outcome.ztoc = "exists", record.ztoc.digest
            outcome.compression = _COMPRESSION_NAMES[mt.layer_compression(layer.media_type)]
            if record.kind == "soci":
                reused[len(soci)] = layer
            (zstd if record.kind == "zstd" else soci).append(record.ztoc)
            continue
        try:
            ztoc = build_layer_ztoc(store, layer, span_size, build_tool_id, progress)
        except (InvalidContentError, UnsupportedError) as exc:
            outcome.reason = str(exc)
            continue
        desc = push_ztoc(store, layer, ztoc)
        kind = "zstd" if ztoc.compression == ZSTD else "soci"
        (zstd if kind == "zstd" else soci).append(desc)
        new[kind] = True
        outcome.status, outcome.ztoc, outcome.compression = "built", desc.digest, ztoc.compression
    if new["soci"]:
        for i, layer in reused.items():  # the new index says what the zTOCs hold, by today's rules
            soci[i] = reannotated_ztoc(store, layer, soci[i])
        report.indexes.append(attach_index(store, manifest_desc, soci, build_tool_id).digest)
    if new["zstd"]:
        report.indexes.append(attach_index(store, manifest_desc, zstd, build_tool_id, zstd=True).digest)
    return report


def build_ztocs(
    reference: str,
    *,
    span_size: int = DEFAULT_SPAN_SIZE,
    min_layer_size: int = DEFAULT_MIN_LAYER_SIZE,
    force: bool = False,
    build_tool_id: str = DEFAULT_BUILD_TOOL,
    platform: "Platform | str | None" = None,
    options: Options = DEFAULT_OPTIONS,
    progress: Progress = NULL_PROGRESS,
) -> BuildReport:
    """:func:`index_image` for a reference (``oci:DIR:TAG`` or ``host/repo:tag``)."""
    store, desc = _open_image(reference, options)
    return index_image(store, desc, span_size=span_size, min_layer_size=min_layer_size, force=force,
                       build_tool_id=build_tool_id, platform=platform, progress=progress)


# -- convert (SOCI index manifest v2) ----------------------------------------------------


def convert_ztocs(
    reference: str,
    *,
    to: str | None = None,
    span_size: int = DEFAULT_SPAN_SIZE,
    min_layer_size: int = DEFAULT_MIN_LAYER_SIZE,
    platforms: "tuple[Platform | str, ...]" = (),
    all_platforms: bool = False,
    build_tool_id: str = DEFAULT_BUILD_TOOL,
    options: Options = DEFAULT_OPTIONS,
    progress: Progress = NULL_PROGRESS,
) -> ConvertReport:
    """``soci convert``: a SOCI-enabled image (v2) of ``reference``, tagged ``to``.

    ``to`` defaults to the same repository with ``-soci`` appended to the tag (``TAG-soci``);
    another repository or registry gets the source image copied along (layers once).
    """
    src, src_ref = open_store(reference, options, create=False)
    root = src.resolve(src_ref.reference)
    dst_ref = default_convert_target(src_ref) if to is None else _parse_target(to)
    same = str(dst_ref.repository_reference()) == str(src_ref.repository_reference())
    dst = src if same else open_store(dst_ref, options)[0]
    wanted = tuple(p if isinstance(p, Platform) else Platform.parse(p) for p in platforms)
    convert_options = ConvertOptions(span_size, min_layer_size, wanted, all_platforms, build_tool_id)
    converted, report = convert_image(src, root, dst, convert_options, progress)
    dst.tag(converted, dst_ref.push_tag)
    report.reference = str(dst_ref.with_tag(dst_ref.push_tag))
    return report


def default_convert_target(source: Reference) -> Reference:
    """Where ``convert`` tags by default: ``TAG-soci`` beside the source (``sha256-HEX12-soci`` if pinned)."""
    base = source.tag or (source.digest.replace(":", "-")[:19] if source.digest else "latest")
    return source.with_tag(f"{base}-soci")


def _parse_target(to: str) -> Reference:
    from ..reference import parse_reference

    ref = parse_reference(to)
    if ref.digest:
        raise InvalidReferenceError(f"--to {to!r} names a digest; the converted image needs a tag")
    return ref


# -- list and inspect -------------------------------------------------------------------


def list_ztocs(
    reference: str, *, platform: "Platform | str | None" = None, options: Options = DEFAULT_OPTIONS
) -> list[ZtocRecord]:
    """The zTOCs attached to the image ``reference`` names."""
    store, desc = _open_image(reference, options)
    desc, manifest = image_manifest(store, desc, _platform(platform))
    return find_ztocs(store, desc, manifest)


@dataclass
class ZtocInfo:
    """``soci ztoc info`` for one zTOC: header fields and each file's span range."""

    digest: str
    layer: str
    version: str
    build_tool: str
    compression: str
    compressed_size: int
    uncompressed_size: int
    span_size: int
    spans: int
    files: list[dict[str, object]]

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def describe_ztoc(ztoc: Ztoc, digest: str = "", layer: str = "") -> ZtocInfo:
    """Each entry with the spans that hold its data.

    ``end_span`` is the span of the file's *last* byte, so a file that ends exactly on a
    span boundary is not counted into the next span (``soci ztoc info`` uses the span of
    ``offset + size`` and over-counts those).
    """
    spans = ztoc.spans()
    files = []
    for e in ztoc.entries:
        start = spans.span_of(e.offset)
        end = spans.span_of(e.offset + e.size - 1) if e.size else start
        files.append({"name": e.name, "type": e.type, "offset": e.offset, "size": e.size,
                      "start_span": start, "end_span": end})
    return ZtocInfo(digest, layer, ztoc.version, ztoc.build_tool_identifier, ztoc.compression,
                    ztoc.compressed_archive_size, ztoc.uncompressed_archive_size, spans.span_size,
                    spans.span_count, files)


def ztoc_info(
    source: str, *, platform: "Platform | str | None" = None, options: Options = DEFAULT_OPTIONS
) -> list[ZtocInfo]:
    """Describe a local ``.ztoc`` file, or every zTOC attached to the image ``source`` names."""
    from ..digest import digest_bytes

    if os.path.isfile(source):
        with open(source, "rb") as fh:
            data = fh.read()
        return [describe_ztoc(parse_ztoc(data), digest_bytes(data))]
    store, desc = _open_image(source, options)
    desc, manifest = image_manifest(store, desc, _platform(platform))
    return [describe_ztoc(load_ztoc(store, r.ztoc), r.ztoc.digest, r.layer_digest)
            for r in find_ztocs(store, desc, manifest)]


# -- fetch ------------------------------------------------------------------------------


def get_file(
    reference: str,
    path: str,
    output: str | None = None,
    *,
    platform: "Platform | str | None" = None,
    rules: ExtractPolicy | None = None,
    options: Options = DEFAULT_OPTIONS,
    progress: Progress = NULL_PROGRESS,
) -> FileResult:
    """Fetch one file of an image with range reads of only its spans (default output: its basename).

    ``rules`` are the extraction rules the file is written under (``max_size``, whether set-id
    bits are kept); the default is the safe set a pull uses.
    """
    store, desc = _open_image(reference, options)
    target = output or os.path.basename(path.rstrip("/")) or "file"
    result = fetch_file(store, desc, path, target, _platform(platform), progress, rules)
    result.paths_root = _restore_view_root(store, desc, _platform(platform), result)
    return result


def _restore_view_root(store: Store, desc: Descriptor, platform: Platform | None, result: FileResult) -> str:
    """For a view's file that names the view's root, the directory its paths name (or "").

    A version-1 view stored such files with a same-length placeholder for the root: it is
    swapped back here, so the file reads as in the view that was pushed.
    """
    found = _view_paths(store, desc, platform, result.resolved)
    if found is None:
        return ""
    home, swap = found
    if swap is not None:
        _swap_in_place(result.output, *swap)
    return home


def _swap_in_place(path: str, old: bytes, new: bytes) -> None:
    before = os.stat(path)
    os.chmod(path, before.st_mode | 0o200)  # a read-only file (0555 binaries) too
    try:
        with open(path, "r+b") as fh:  # same length: rewritten in place
            data = fh.read()
            fh.seek(0)
            fh.write(data.replace(old, new))
    finally:
        os.chmod(path, before.st_mode)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _view_paths(
    store: Store, desc: Descriptor, platform: Platform | None, path: str
) -> tuple[str, tuple[bytes, bytes] | None] | None:
    """(the root the file's paths name, (placeholder, root) to swap or None) for a view file
    listed in the relocation record; None for any other file.

    Views are stored relocated to their mount path (version 2) or with a same-length
    placeholder for their root (version 1, so views at different roots shared layers).
    """
    import json

    from ..content.base import read_all
    from ..extract.plan import KIND_VIEW, classify
    from ..spec.view_config import ViewConfig

    _, manifest = image_manifest(store, desc, platform)
    if manifest.config is None or classify(manifest) != KIND_VIEW:  # the one rule for "is a view"
        return None
    record = ViewConfig.from_document(json.loads(read_all(store, manifest.config))).relocation
    if posixpath.normpath(path).lstrip("/") not in record.files:
        return None
    if record.placeholder and not record.mount_path:
        return record.root, (record.placeholder.encode(), record.root.encode())
    return record.home, None


class _SwappingWriter:
    """Replace ``old`` by the same-length ``new`` in a stream, across chunk boundaries."""

    def __init__(self, write: Callable[[bytes], object], old: bytes, new: bytes) -> None:
        self._write, self._old, self._new, self._pending = write, old, new, b""

    def __call__(self, chunk: bytes) -> None:
        data = (self._pending + chunk).replace(self._old, self._new)
        keep = len(self._old) - 1  # a placeholder may start in these bytes and end in the next chunk
        self._pending = data[-keep:] if keep else b""
        self._write(data[: len(data) - len(self._pending)])

    def flush(self) -> None:
        self._write(self._pending)
        self._pending = b""


def get_file_stream(
    reference: str,
    path: str,
    write: Callable[[bytes], object],
    *,
    platform: "Platform | str | None" = None,
    max_size: int | None = None,
    options: Options = DEFAULT_OPTIONS,
    progress: Progress = NULL_PROGRESS,
) -> int:
    """Like :func:`get_file` but hand the bytes to ``write`` (e.g. stdout); returns the size."""
    store, desc = _open_image(reference, options)
    image = load_image_ztocs(store, desc, _platform(platform), progress)
    found = _view_paths(store, desc, _platform(platform), path)
    swapping = _SwappingWriter(write, *found[1]) if found and found[1] else None
    _, data, _ = stream_file(store, image, path, swapping or write, max_size)
    if swapping:
        swapping.flush()
    return data.size


__all__ = [
    "BuildReport",
    "ConvertReport",
    "convert_ztocs",
    "ZtocFileResult",
    "ZtocInfo",
    "build_ztoc_file",
    "build_ztocs",
    "describe_ztoc",
    "get_file",
    "get_file_stream",
    "index_image",
    "layer_ztoc_records",
    "list_ztocs",
    "ztoc_info",
]
