"""The image's file tree as its layers' TOCs describe it, without reading any layer.

Layers are applied bottom to top with the OCI rules (image-spec layer.md): a later entry
replaces an earlier one; ``.wh.NAME`` deletes ``NAME`` (and what is under it) from lower
layers; ``.wh..wh..opq`` hides the lower layers' contents of its directory; a
non-directory replaces a directory together with its children.

Paths are normalised the way tar names are read (``./usr/bin/`` → ``usr/bin``). Symlinks
are resolved inside the tree: relative targets against the link's directory, absolute
targets against the image root; a target that climbs above the root is refused with
:class:`~ocikit.errors.UnsafeContentError`. Hard links name another entry of the same
layer, or else a file of the tree the lower layers left (after this layer's whiteouts), as
when a pull merges the layers; they share its data.
"""

from __future__ import annotations

import posixpath
from typing import NamedTuple

from ..errors import NotFoundError, UnsafeContentError
from .toc import FileMetadata

_MAX_LINKS = 40  # like the kernel's MAXSYMLINKS
WHITEOUT, OPAQUE = ".wh.", ".wh..wh..opq"


def normalize(name: str) -> str:
    """A tar or user path as a root-relative path without ``.``/empty parts ('' = root)."""
    if name.startswith("./"):
        name = name[2:]
    name = name.strip("/")
    if "//" not in name and "/./" not in name and not name.endswith("/.") and not name.startswith("./"):
        return "" if name == "." else name  # the common case: already clean (one scan, no split)
    parts = [p for p in name.split("/") if p and p != "."]
    return "/".join(parts)


def is_unsafe(path: str) -> bool:
    """Whether a normalised entry name climbs out of the root."""
    return path == ".." or path.startswith("../") or "/../" in f"/{path}/"


class Node(NamedTuple):
    """An entry of the merged tree: which layer holds it, and its TOC entry (a tuple: 60 000 are made per mount)."""

    layer: int
    entry: FileMetadata
    path: str


class ImageTree:
    """The merged tree of several layers' TOCs (``tocs[0]`` is the bottom layer)."""

    def __init__(self, tocs: list[list[FileMetadata]]) -> None:
        self.nodes: dict[str, Node] = {}
        self._by_layer: list[dict[str, FileMetadata]] = []
        self._lower_links: dict[tuple[int, str], Node] = {}  # (layer, link path) -> the lower node it names
        self._parents: set[str] = set()  # directories with (or once with) nodes below, listed or implied
        for layer, entries in enumerate(tocs):
            self._apply(layer, entries)

    def _apply(self, layer: int, entries: list[FileMetadata]) -> None:
        names: dict[str, FileMetadata] = {}
        upper: dict[str, Node] = {}
        for entry in entries:
            path = normalize(entry.name)
            parent, _, base = path.rpartition("/")
            if base == OPAQUE:
                self._remove_below(parent, keep_dir=True)
            elif base.startswith(WHITEOUT):
                self._remove_below(posixpath.join(parent, base[len(WHITEOUT) :]), keep_dir=False)
            elif path:
                names[path] = entry
                upper[path] = Node(layer, entry, path)
        for path, entry in names.items():
            if entry.type == "hardlink":
                target = normalize(entry.linkname)
                lower = self.nodes.get(target)
                if target not in names and lower is not None:  # resolved before this layer replaces it
                    self._lower_links[(layer, path)] = lower
        for path, node in upper.items():
            if node.entry.type != "dir" and path in self._parents:
                # a file or link replaces a lower directory, even one no entry listed (``c/a/``
                # implies ``c``): what was below it is gone, as when the layers are merged
                self._remove_below(path, keep_dir=True)
            self.nodes[path] = node
        for path in upper:
            parent = path.rpartition("/")[0]
            while parent and parent not in self._parents:
                self._parents.add(parent)
                parent = parent.rpartition("/")[0]
        self._by_layer.append(names)

    def _remove_below(self, path: str, keep_dir: bool) -> None:
        prefix = f"{path}/" if path else ""
        doomed = [p for p in self.nodes if p.startswith(prefix) or (not keep_dir and p == path)]
        for p in doomed:
            del self.nodes[p]

    # -- lookups -------------------------------------------------------------------------

    def lookup(self, path: str, follow: bool = True) -> Node:
        """The node at ``path``; symlinks in parents (and at the end if ``follow``) are resolved."""
        resolved = self.resolve(path, follow)
        node = self.nodes.get(resolved)
        if node is None:
            raise NotFoundError(f"{path!r} is not in the image's table of contents")
        return node

    def resolve(self, path: str, follow: bool = True) -> str:
        """``path`` with every symlink resolved inside the tree (the final one if ``follow``)."""
        remaining = normalize(path).split("/") if normalize(path) else []
        done: list[str] = []
        hops = 0
        while remaining:
            part = remaining.pop(0)
            if part == "..":
                if not done:
                    raise UnsafeContentError(path, "resolves above the image root")
                done.pop()
                continue
            candidate = "/".join(done + [part])
            node = self.nodes.get(candidate)
            if node is not None and node.entry.type == "symlink" and (remaining or follow):
                hops += 1
                if hops > _MAX_LINKS:
                    raise UnsafeContentError(path, "too many levels of symbolic links")
                target = node.entry.linkname
                if target.startswith("/"):
                    done = []
                remaining = [p for p in target.split("/") if p and p != "."] + remaining
                continue
            done.append(part)
        return "/".join(done)

    def data_node(self, node: Node, lower_links: bool = True) -> Node:
        """The node whose bytes a regular file or hard link has: hard links share a file's data,
        in their own layer or, when ``lower_links`` (a container rootfs, as the extractor's
        ``rootfs`` rule says), in the tree below it. ``layer`` and ``entry.offset`` locate the bytes."""
        entry = node.entry
        if entry.type != "hardlink":
            return node
        target_path = normalize(entry.linkname)
        target = self._by_layer[node.layer].get(target_path)
        if target is not None:
            data = Node(node.layer, target, target_path)
        else:
            lower = self._lower_links.get((node.layer, node.path)) if lower_links else None
            if lower is None:  # the extractor's words: a broken link is the archive's fault
                where = "is in no layer" if lower_links else "is not in its layer"
                raise UnsafeContentError(node.path, f"hardlink target missing ({entry.linkname!r} {where})")
            data = self.data_node(lower) if lower.entry.type == "hardlink" else lower
        if data.entry.type != "reg":
            raise UnsafeContentError(node.path, f"hardlink target {entry.linkname!r} is not a regular file")
        return data

    def data_entry(self, node: Node) -> FileMetadata:
        """The entry whose bytes a regular file or hard link has (see :meth:`data_node`)."""
        return self.data_node(node).entry
