"""Write files fetched through zTOCs: a matching subtree (``pull --include``) or one file (``get-file``).

Both go through the one safe extractor under an :class:`~ocikit.extract.safe_tar.ExtractPolicy`,
exactly as a full pull does, so the same rules hold: names that climb out or claim
``.ocikit`` are refused, nothing is written through a symlink, the symlink rule is checked
against the finished tree, set-id bits are dropped unless asked for, ``max_size`` caps each
file and the total, devices are refused (skipped in a root filesystem). :mod:`.subset`
turns the zTOC entries into the tar stream the extractor reads.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..content.base import Store
from ..errors import InvalidContentError, LocalIOError, UnsafeContentError, UnsupportedError
from ..extract.decompress import SizeBudget
from ..extract.layers import ExtractStats, finish_tree, refuse_deferred_links
from ..extract.safe_tar import ExtractPolicy, SafeExtractor
from ..extract.whiteout import remove_tree
from ..extract.writer import WriterPool
from ..progress import NULL_PROGRESS, Progress
from ..spec.descriptor import Descriptor, Platform
from .fetch import FetchStats
from .image import ImageZtocs, load_image_ztocs
from .subset import SubsetStream, file_item, matches, select, subset_items
from .toc import FileMetadata
from .view import ImageTree, Node

__all__ = [
    "ExtractReport", "FileResult", "extract_matching", "extract_subset", "fetch_file", "matches", "stream_file",
    "write_atomically",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class FileResult:
    """What ``get-file`` fetched."""

    path: str  # as asked
    resolved: str  # after symlinks inside the image
    output: str
    size: int
    mode: int
    layer: str
    layer_size: int
    bytes_fetched: int  # everything read from the store: range reads + index_bytes
    spans: list[int]
    built_ztocs: list[str] = field(default_factory=list)
    index_bytes: int = 0  # zTOC blobs fetched, and layers read whole to index them in memory
    paths_root: str = ""  # a view's file that names its root: the directory its paths name (works there as is)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class ExtractReport:
    """What a subset extraction wrote and what it cost."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    skipped: list[str] = field(default_factory=list)
    bytes_written: int = 0
    stats: FetchStats = field(default_factory=FetchStats)  # range reads and index_bytes together
    built_ztocs: list[str] = field(default_factory=list)
    index_bytes: int = 0  # zTOC blobs fetched, and layers read whole to index them in memory
    extract: ExtractStats = field(default_factory=ExtractStats, repr=False)

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("stats", "extract")}
        out.update(bytes_fetched=self.stats.bytes_fetched, spans=self.stats.spans, requests=self.stats.requests)
        return out


# -- a matching subtree ----------------------------------------------------------------


def extract_subset(
    store: Store,
    image: ImageZtocs,
    tree: ImageTree,
    paths: list[str],
    dest_dir: str,
    rules: ExtractPolicy,
    *,
    max_size: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> ExtractReport:
    """Extract the tree entries at ``paths`` into the empty directory ``dest_dir`` under ``rules``."""
    tree.check_replaced(rules)  # an image a full pull refuses is refused here too
    items = subset_items(tree, paths, lower_links=rules.rootfs)
    stream = SubsetStream(store, image, items, SizeBudget(max_size), lambda n: progress.advance("extract", n))
    progress.start("extract", "extract", stream.total_bytes)
    stats = ExtractStats(layers=len(image.layers))
    fd = os.open(dest_dir, _DIR_FLAGS)
    try:
        with WriterPool(0) as pool:
            outcome = SafeExtractor(fd, rules, pool, "subset").extract(stream)  # type: ignore[arg-type]
    finally:
        os.close(fd)
    refuse_deferred_links(outcome)
    stats.take(outcome)
    finish_tree(dest_dir, stats, rules)
    progress.finish("extract")
    stream.stats.add(image.cost)
    return ExtractReport(
        files=stats.files, dirs=stats.directories, symlinks=stats.symlinks, hardlinks=stats.hardlinks,
        skipped=stats.skipped, bytes_written=stats.bytes, stats=stream.stats, built_ztocs=image.built,
        index_bytes=image.cost.bytes_fetched, extract=stats,
    )


def extract_matching(
    store: Store,
    manifest_desc: Descriptor,
    patterns: list[str],
    dest_dir: str,
    progress: Progress | None = None,
    *,
    platform: "Platform | str | None" = None,
    rules: ExtractPolicy | None = None,
    max_size: int | None = None,
) -> ExtractReport:
    """Extract the entries matching any glob (and everything under matching directories) into
    ``dest_dir`` (created if missing), fetching only the spans that hold them.

    ``rules`` default to the strict ones of a tree used in place (no absolute symlinks);
    ``pull --include`` passes a container image's (absolute symlinks resolve inside the rootfs).
    """
    progress = progress or NULL_PROGRESS
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    image = load_image_ztocs(store, manifest_desc, wanted, progress)
    tree = image.tree()
    os.makedirs(dest_dir, exist_ok=True)
    rules = rules or ExtractPolicy(max_size=max_size)
    return extract_subset(store, image, tree, select(tree, patterns), dest_dir, rules, max_size=max_size,
                          progress=progress)


# -- one file ----------------------------------------------------------------------------


def stream_file(
    store: Store,
    image: ImageZtocs,
    path: str,
    write: Callable[[bytes], object],
    max_size: int | None = None,
) -> tuple[Node, FileMetadata, FetchStats]:
    """Fetch a regular file (following symlinks and hard links) and pass its bytes to ``write``."""
    node, data = _regular_file(image, path, max_size)
    stream = SubsetStream(store, image, [file_item(node, data, "file")], SizeBudget(max_size))
    entry = stream.next_entry()
    assert entry is not None
    for piece in stream.iter_data(entry):
        write(bytes(piece))
    stream.next_entry()
    return node, data, stream.stats


def fetch_file(
    store: Store,
    manifest_desc: Descriptor,
    path: str,
    output: str,
    platform: Platform | None = None,
    progress: Progress = NULL_PROGRESS,
    rules: ExtractPolicy | None = None,
) -> FileResult:
    """Fetch ``path`` from the image into ``output``: extracted by the safe extractor into a
    directory beside ``output``, then renamed over it, so a failure leaves ``output`` untouched."""
    rules = rules or ExtractPolicy()
    image = load_image_ztocs(store, manifest_desc, platform, progress)
    node, data = _regular_file(image, path, rules.max_size)
    directory = os.path.dirname(os.path.abspath(output))
    try:
        work = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.", suffix=".ocikit-tmp", dir=directory)
    except OSError as exc:
        raise LocalIOError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        stream = SubsetStream(store, image, [file_item(node, data, "file")], SizeBudget(rules.max_size))
        fd = os.open(work, _DIR_FLAGS)
        try:
            with WriterPool(0) as pool:
                SafeExtractor(fd, replace(rules, rootfs=False), pool, path).extract(stream)  # type: ignore[arg-type]
        finally:
            os.close(fd)
        try:
            os.replace(os.path.join(work, "file"), output)
        except OSError as exc:
            raise LocalIOError(f"cannot write {output}: {exc.strerror}") from None
        mode = os.lstat(output).st_mode & 0o7777
    finally:
        remove_tree(work)
    layer = image.layers[node.layer]
    return FileResult(
        path, node.path, output, data.size, mode, layer.digest, layer.size,
        stream.stats.bytes_fetched + image.cost.bytes_fetched, stream.stats.span_ids, image.built,
        image.cost.bytes_fetched,
    )


def _regular_file(image: ImageZtocs, path: str, max_size: int | None) -> tuple[Node, FileMetadata]:
    tree = image.tree()
    node = tree.lookup(path)
    if node.entry.type not in ("reg", "hardlink"):
        raise UnsupportedError(f"{path!r} is a {node.entry.type}, not a regular file")
    holder = tree.data_node(node)  # a hard link: the node (maybe in a lower layer) holding the bytes
    data = holder.entry
    if data.size < 0:
        raise InvalidContentError(f"{path!r} has a negative size in its zTOC")
    if max_size is not None and data.size > max_size:
        raise UnsafeContentError(path, f"size limit exceeded (declares {data.size} bytes, max_size {max_size})")
    return Node(holder.layer, data, node.path), data


def write_atomically(output: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``output`` through a temporary file beside it (a local file ocikit made)."""
    directory = os.path.dirname(os.path.abspath(output))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(output)}.", suffix=".ocikit-tmp", dir=directory)
    except OSError as exc:
        raise LocalIOError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, output)
    except OSError as exc:
        raise LocalIOError(f"cannot write {output}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

