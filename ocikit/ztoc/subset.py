"""Part of an image's tree, read through zTOC range reads, as a tar stream for the safe extractor.

``pull --include`` and ``get-file`` write untrusted files like a pull does, so they go
through the same extractor (:class:`~ocikit.extract.safe_tar.SafeExtractor`) under the same
policy: this module only turns the entries of the merged zTOC tree
(:class:`~ocikit.ztoc.view.ImageTree`) into :class:`~ocikit.formats.tar.reader.TarEntry`
objects and feeds their data, fetched span by span (each span verified before it is
decoded), through the same ``next_entry`` / ``read_data`` / ``iter_data`` calls a
:class:`~ocikit.formats.tar.reader.TarStream` answers.

Order: directories (parents first), then regular files layer by layer in data order (one
pass over each layer's spans), then hard links, symlinks and special files. Paths that share
one file's data (hard links, in one layer or, in a container rootfs, to a lower layer's file)
are written once, under the first such path, and linked to it; so a hard link whose target is
not part of the subset is a file with the target's data.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..content.base import Store
from ..errors import InvalidContentError
from ..extract.decompress import SizeBudget
from ..formats.tar.reader import FILE, HARDLINK, SYMLINK, TarEntry
from .fetch import FetchStats, LayerReader, Want
from .gotime import rfc3339_to_unix
from .image import ImageZtocs
from .toc import FileMetadata
from .view import ImageTree, Node, normalize

ByteCallback = Callable[[int], None]


def matches(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` or one of its parent directories matches a glob."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pattern) for pattern in patterns for p in prefixes)


def select(tree: ImageTree, patterns: list[str]) -> list[str]:
    """The tree's paths matching any glob (root-relative: a leading ``/`` or ``./`` is ignored),
    and everything under matching directories."""
    wanted = [normalize(p) for p in patterns if normalize(p)]
    return sorted(path for path in tree.nodes if matches(path, wanted))


@dataclass
class _Item:
    entry: TarEntry
    layer: int = -1  # the layer holding the data (-1: no data)
    data_offset: int = 0


def tar_entry(path: str, metadata: FileMetadata, kind: str | None = None, linkname: str | None = None) -> TarEntry:
    """A zTOC entry as the tar member the extractor expects."""
    seconds, nanos = rfc3339_to_unix(metadata.mod_time)
    return TarEntry(
        name=path,
        kind=kind or metadata.type,
        size=metadata.size if (kind or metadata.type) == FILE else 0,
        mode=metadata.mode,
        mtime=seconds,
        mtime_nanos=nanos,
        linkname=metadata.linkname if linkname is None else linkname,
        devmajor=metadata.devmajor,
        devminor=metadata.devminor,
        raw_type=metadata.type,
    )


def subset_items(tree: ImageTree, paths: list[str], lower_links: bool = False) -> list[_Item]:
    """The entries to extract for ``paths``, in the order described in the module docstring
    (``lower_links``: hard links may name a lower layer's file, as in a container rootfs)."""
    dirs: list[_Item] = []
    files: list[_Item] = []
    links: list[_Item] = []
    others: list[_Item] = []
    written: dict[tuple[int, int], str] = {}  # (layer, data offset) -> the path that holds those bytes
    for path in paths:
        node = tree.nodes[path]
        kind = node.entry.type
        if kind == "dir":
            dirs.append(_Item(tar_entry(path, node.entry)))
        elif kind in ("reg", "hardlink"):
            holder = tree.data_node(node, lower_links)
            data = holder.entry
            first = written.setdefault((holder.layer, data.offset), path)
            if first != path:  # the same bytes twice: the second is a link to the first
                links.append(_Item(tar_entry(path, data, HARDLINK, first)))
            else:
                files.append(_Item(tar_entry(path, data, FILE, ""), holder.layer, data.offset))
        elif kind == "symlink":
            links.append(_Item(tar_entry(path, node.entry, SYMLINK)))
        else:
            others.append(_Item(tar_entry(path, node.entry)))
    files.sort(key=lambda item: (item.layer, item.data_offset))
    return dirs + files + links + others


def file_item(node: Node, data: FileMetadata, name: str) -> _Item:
    """One regular file (``get-file``), named ``name`` in the extraction directory."""
    return _Item(tar_entry(name, data, FILE, ""), node.layer, data.offset)


class SubsetStream:
    """Answers the extractor's calls for a list of items, fetching file data layer by layer."""

    def __init__(
        self,
        store: Store,
        image: ImageZtocs,
        items: list[_Item],
        budget: SizeBudget | None = None,
        on_bytes: ByteCallback | None = None,
    ) -> None:
        self._store = store
        self._image = image
        self._items = iter(items)
        self._all = items
        self._budget = budget or SizeBudget()
        self._on_bytes = on_bytes
        self._pieces: Iterator[tuple[Want, bytes]] | None = None
        self._layer = -1
        self._reader: LayerReader | None = None
        self._current: _Item | None = None
        self.stats = FetchStats()

    @property
    def total_bytes(self) -> int:
        return sum(item.entry.size for item in self._all if item.layer >= 0)

    def next_entry(self) -> TarEntry | None:
        self._current = next(self._items, None)
        if self._current is None:
            self._close_layer()
            return None
        if self._current.layer >= 0 and self._current.layer != self._layer:
            self._open_layer(self._current.layer)
        return self._current.entry

    def read_data(self, entry: TarEntry) -> list[bytes]:
        return list(self.iter_data(entry))

    def iter_data(self, entry: TarEntry) -> Iterator[bytes]:
        item = self._current
        if item is None or item.layer < 0 or not entry.size:
            return
        left = entry.size
        while left:
            want, piece = self._next_piece(entry)
            if want.offset != item.data_offset:
                raise InvalidContentError(f"{entry.name!r}: the zTOC's data ranges are out of order")
            self._budget.take(len(piece), entry.name)
            if self._on_bytes is not None:
                self._on_bytes(len(piece))
            left -= len(piece)
            yield piece

    def drain(self, limit: int) -> int:
        return 0

    def _next_piece(self, entry: TarEntry) -> tuple[Want, bytes]:
        assert self._pieces is not None
        try:
            return next(self._pieces)
        except StopIteration:
            raise InvalidContentError(f"{entry.name!r}: the layer ended before the data its zTOC lists") from None

    def _open_layer(self, layer: int) -> None:
        self._close_layer()
        self._layer = layer
        wants = [
            Want(item.data_offset, item.entry.size) for item in self._all if item.layer == layer and item.entry.size
        ]
        self._reader = LayerReader(self._store, self._image.layers[layer], self._image.ztocs[layer])
        self._pieces = self._reader.pieces(wants)

    def _close_layer(self) -> None:
        if self._reader is not None:
            self.stats.add(self._reader.stats)
            self.stats.span_ids.extend(self._reader.stats.span_ids)
        if self._pieces is not None:
            self._pieces.close()  # type: ignore[attr-defined]
        self._reader = self._pieces = None
