"""The image's file tree as its layers' TOCs describe it, without reading any layer.

Layers are applied bottom to top with the OCI rules (image-spec layer.md): a later entry
replaces an earlier one; ``.wh.NAME`` deletes ``NAME`` (and what is under it) from lower
layers; ``.wh..wh..opq`` hides the lower layers' contents of its directory; a
non-directory replaces a directory together with its children.

Paths are normalised the way tar names are read (``./usr/bin/`` → ``usr/bin``). Symlinks
are resolved inside the tree: relative targets against the link's directory, absolute
targets against the image root; a target that climbs above the root is refused with
:class:`~ocikit.errors.UnsafeContentError`.

The merge follows the one a pull makes on disk (:mod:`ocikit.extract.whiteout`), rule for rule
and through the same functions (:mod:`ocikit.extract.rules`), so a mount, ``--include`` and
``get-file`` see the tree a full pull writes, or refuse what it refuses: each layer's entries
are read in archive order (a later one replaces an earlier one, never a directory the layer
made, nothing below a file the layer made); opaque markers then whiteouts hide lower entries,
never through a file or link; directories a layer only implies replace lower files and refuse
lower symlinks. Hard links name a regular file of their layer that came before them (as it was
then), or else a lower layer's file in the tree as merged with their layer; they share its
data. A view's or ORAS artifact's layers lie side by side instead (``stacked=False``). The
differential fuzz test ``tests/test_layer_merge_fuzz.py`` holds the two merges together.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from ..errors import InvalidContentError, NotFoundError, UnsafeContentError
from ..extract.rules import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    admit_entry,
    check_hardlink_name,
    check_not_a_listed_directory,
    check_reserved,
    check_side_by_side_directory,
    check_whiteout,
)
from .toc import FileMetadata

if TYPE_CHECKING:
    from ..extract.safe_tar import ExtractPolicy

_MAX_LINKS = 40  # like the kernel's MAXSYMLINKS
WHITEOUT, OPAQUE = WHITEOUT_PREFIX, OPAQUE_MARKER  # the names this module and its readers use


def normalize(name: str) -> str:
    """A tar or user path as a root-relative path without ``.``/empty parts ('' = root)."""
    if name.startswith("./"):
        name = name[2:]
    name = name.strip("/")
    if "//" not in name and "/./" not in name and not name.endswith("/.") and not name.startswith("./"):
        return "" if name == "." else name  # the common case: already clean (one scan, no split)
    parts = [p for p in name.split("/") if p and p != "."]
    return "/".join(parts)


class Node(NamedTuple):
    """An entry of the merged tree: which layer holds it, and its TOC entry (a tuple: 60 000 are made per mount)."""

    layer: int
    entry: FileMetadata
    path: str


def _non_directory_above(directory: str, names: dict[str, FileMetadata]) -> FileMetadata | None:
    """The file or link the layer's entries so far made of ``directory`` or a parent of it, if any."""
    while directory:
        earlier = names.get(directory)
        if earlier is not None and earlier.type != "dir":
            return earlier
        directory = directory.rpartition("/")[0]
    return None


def _add_with_parents(directories: dict[str, FileMetadata], directory: str, entry: FileMetadata) -> None:
    """Record ``directory`` and its parents (up to the first one already recorded) as made by ``entry``.
    Upward by ``rpartition``: a path thousands of levels deep costs one pass, not one per level."""
    while directory and directory not in directories:
        directories[directory] = entry
        directory = directory.rpartition("/")[0]


def _link_target(path: str, entry: FileMetadata, names: dict[str, FileMetadata],
                 made: dict[str, FileMetadata]) -> FileMetadata | None:
    """A hard link as the extractor meets it: its target among the entries the layer has so far
    (None: not there, maybe a lower layer's); refused when it names itself, climbs out, or is no file."""
    target = check_hardlink_name(path, entry.linkname, entry.name)
    blocker = _non_directory_above(target.rpartition("/")[0], names)
    if blocker is not None:  # the extractor cannot reach it (ENOTDIR/ELOOP) and says so
        raise UnsafeContentError(entry.name, "path through symlink")
    earlier = names.get(target)
    if target in made or (earlier is not None and earlier.type not in ("reg", "hardlink")):
        raise UnsafeContentError(entry.name, f"hardlink target {target!r} is not a regular file")
    return earlier


@dataclass
class _LayerState:
    """What one layer's entries have made so far, while the layer is read."""

    names: dict[str, FileMetadata] = field(default_factory=dict)  # path -> its latest entry in the layer
    upper: dict[str, Node] = field(default_factory=dict)  # what the layer puts in the tree
    made: dict[str, FileMetadata] = field(default_factory=dict)  # directories listed or implied -> by which entry
    hiding: dict[str, FileMetadata] = field(default_factory=dict)  # directories (and parents) holding whiteouts
    links: dict[str, tuple[FileMetadata, FileMetadata | None]] = field(default_factory=dict)  # -> (entry, target then)
    opaque: list[tuple[str, str]] = field(default_factory=list)  # (directory, entry name)
    whiteouts: list[tuple[str, str]] = field(default_factory=list)  # (hidden path, entry name)

    def take_whiteout(self, parent: str, base: str, name: str) -> None:
        if base == OPAQUE:
            self.opaque.append((parent, name))
            return
        check_whiteout(base[len(WHITEOUT) :], name)
        hidden = posixpath.join(parent, base[len(WHITEOUT) :])
        check_reserved(hidden, name)
        self.whiteouts.append((hidden, name))


def _add_parents(directories: set[str], path: str) -> None:
    parent = path.rpartition("/")[0]
    while parent and parent not in directories:
        directories.add(parent)
        parent = parent.rpartition("/")[0]


class ImageTree:
    """The merged tree of several layers' TOCs (``tocs[0]`` is the bottom layer).

    ``stacked`` (a container image): layers apply in order with whiteouts. Otherwise (a view,
    an ORAS directory artifact) the layers are merged side by side as a pull extracts them:
    ``.wh.`` names are plain files, and a path one layer has as a file, link or device may
    not be in another layer too (directories may be shared; the last layer's metadata wins).
    """

    def __init__(self, tocs: list[list[FileMetadata]], stacked: bool = True) -> None:
        self.nodes: dict[str, Node] = {}
        self._stacked = stacked
        self._links: dict[tuple[int, str], Node] = {}  # (layer, hard link path) -> the node whose data it shares
        self._parents: set[str] = set()  # directories with (or once with) nodes below, listed or implied
        # entries the tree does not show: (layer, path, entry, whether it outlived its own layer)
        self._shadowed: list[tuple[int, str, FileMetadata, bool]] = []
        self._link_found: dict[int, bool] = {}  # id of a hard link entry -> its target was in its layer before it
        for layer, entries in enumerate(tocs):
            self._apply(layer, entries)

    def _apply(self, layer: int, entries: list[FileMetadata]) -> None:
        """Merge one layer: read its entries as the extractor meets them, hide what it hides,
        add the directories it implies, then let its entries replace the lower ones."""
        state = _LayerState()
        for entry in entries:
            self._arrive(layer, entry, state)
        self._hide(state.opaque, state.whiteouts)
        if not self._stacked:
            self._check_side_by_side(state.upper)
        self._imply_directories(layer, state)
        for path, node in state.upper.items():
            if node.entry.type != "dir" and path in self._parents:
                # a file or link replaces a lower directory, even one no entry listed (``c/a/``
                # implies ``c``): what was below it is gone, as when the layers are merged
                self._remove_below(path, keep_dir=True)
            old = self.nodes.get(path)
            if old is not None:
                self._shadowed.append((old.layer, path, old.entry, True))
            self.nodes[path] = node
        for path in state.upper:
            _add_parents(self._parents, path)
        self._resolve_links(layer, state.links, state.names)

    def _arrive(self, layer: int, entry: FileMetadata, state: _LayerState) -> None:
        """One entry of a layer, in archive order, held to the rules the extractor applies as it writes."""
        path = normalize(entry.name)
        parent, _, base = path.rpartition("/")
        blocker = None  # a file or link this layer made of the parent: nothing can be written below it
        if parent and parent not in state.made:  # (below a directory the layer made, nothing is in the way)
            blocker = _non_directory_above(parent, state.names)
            if blocker is None:
                _add_with_parents(state.made, parent, entry)
        if self._stacked and base.startswith(WHITEOUT):  # side by side, ``.wh.`` names are files
            if parent and blocker is None and parent not in state.hiding:
                _add_with_parents(state.hiding, parent, entry)
            state.take_whiteout(parent, base, entry.name)
            return
        if not path:
            return  # the archive's root: the tree's own
        if blocker is not None:  # the extractor's words for what it refuses to write through
            rule = "path through symlink" if blocker.type == "symlink" else "parent is not a directory"
            raise UnsafeContentError(entry.name, rule)
        earlier = state.names.get(path)
        if entry.type == "dir":
            check_side_by_side_directory(earlier is not None and earlier.type != "dir", self._stacked, entry.name)
            state.made[path] = entry
        else:
            check_not_a_listed_directory(path in state.made, entry.name)
        if entry.type == "hardlink":  # its target as the layer has it so far (what the extractor links)
            target = _link_target(path, entry, state.names, state.made)
            state.links[path] = (entry, target)
            self._link_found[id(entry)] = target is not None
        if earlier is not None:
            self._shadowed.append((layer, path, earlier, False))
        state.names[path] = entry
        state.upper[path] = Node(layer, entry, path)

    def _resolve_links(self, layer: int, links: dict[str, tuple[FileMetadata, FileMetadata | None]],
                       names: dict[str, FileMetadata]) -> None:
        """Bind each hard link the layer keeps to the node whose data it shares: the target as the
        layer had it when the link arrived, else a lower layer's file in the tree as merged with this
        layer (the extractor links those last, against the merged tree). Unbound links are refused
        when their data is asked for (:meth:`data_node`)."""
        for path, (entry, earlier) in links.items():
            if names.get(path) is not entry:
                continue  # replaced later in the layer: never linked (:meth:`check_replaced` checks it)
            target = normalize(entry.linkname)
            if earlier is not None:
                self._links[(layer, path)] = Node(layer, earlier, target)
                continue
            merged = self.nodes.get(target)
            if merged is not None and merged.layer != layer:
                self._links[(layer, path)] = merged

    def check_replaced(self, policy: ExtractPolicy) -> None:
        """Hold the entries the tree does not show (a later entry or layer replaced or hid them)
        to the rules an entry meets on arrival. A full pull writes them before it replaces them
        and refuses an image when one breaks a rule; a mount or ``--include`` refuses it too."""
        for layer, path, entry, outlived_its_layer in self._shadowed:
            admit_entry(entry.name, entry.type, entry.linkname, entry.size, policy)
            if entry.type != "hardlink":
                continue
            if not self._link_found.get(id(entry), True) and not policy.rootfs:
                raise UnsafeContentError(entry.name, f"hardlink target missing ({entry.linkname!r} is not in the archive)")
            if outlived_its_layer:  # linked when its layer was merged, replaced only later
                self.data_node(Node(layer, entry, path), policy.rootfs)

    def _check_side_by_side(self, upper: dict[str, Node]) -> None:
        """Layers merged side by side may share directories, nothing else (the extractor finds the
        other layer's entry in its way, whichever layer comes first)."""
        for path, node in upper.items():
            is_dir = node.entry.type == "dir"
            lower = self.nodes.get(path)
            if lower is not None and not (is_dir and lower.entry.type == "dir"):
                clash = True  # two layers have the path, not both as a directory
            elif not is_dir and path in self._parents:
                clash = True  # a file where another layer has a directory (with entries below)
            else:  # below a file or link of another layer
                clash = self._node_above(path.rpartition("/")[0]) is not None
            if clash:
                raise InvalidContentError(
                    f"{node.entry.name!r} is provided by more than one layer; layers of a merged artifact must not overlap")

    def _hide(self, opaque: list[tuple[str, str]], whiteouts: list[tuple[str, str]]) -> None:
        """What the layer hides of the lower layers, in the merge's order: opaque directories,
        then whiteouts (the order of the entries in the layer does not matter)."""
        for directory, name in opaque:
            self._check_hidden_parent(directory, name)
            self._remove_below(directory, keep_dir=True)
        for hidden, name in whiteouts:
            self._check_hidden_parent(hidden.rpartition("/")[0], name)
            self._remove_below(hidden, keep_dir=False)

    def _check_hidden_parent(self, parent: str, name: str) -> None:
        """A whiteout is applied to the lower tree without following links (the merge's rule):
        one whose directory is a symlink or a file there is refused, as the merge refuses it."""
        if self._node_above(parent) is not None:
            raise UnsafeContentError(name, "path through symlink")

    def _node_above(self, directory: str) -> Node | None:
        """The file or link the tree has at ``directory`` or a parent of it, if any."""
        while directory:
            node = self.nodes.get(directory)
            if node is not None and node.entry.type != "dir":
                return node
            directory = directory.rpartition("/")[0]
        return None

    def _imply_directories(self, layer: int, state: _LayerState) -> None:
        """The directories a layer has without listing them (parents of its entries and of its
        whiteouts), as its extraction creates them: one replaces a lower file of that name, and a
        lower symlink there is refused (the merge never writes through one). Those holding
        entries need no node (a pull and a mount make parents); one that may hold only whiteouts
        gets one, as it is a directory of the layer all the same."""
        for path, entry in state.made.items():
            lower = self.nodes.get(path)
            if path in state.names or (lower is not None and lower.entry.type == "dir"):
                continue
            if lower is not None and lower.entry.type == "symlink":
                raise UnsafeContentError(path, "path through symlink (a lower layer made this directory a symlink)")
            if lower is not None:
                del self.nodes[path]  # a lower file: the layer's directory replaces it
                self._shadowed.append((lower.layer, path, lower.entry, True))
            if path in state.hiding:
                implied = FileMetadata(name=f"{path}/", type="dir", offset=0, size=0, mode=0o755,
                                       mod_time=entry.mod_time)
                state.upper[path] = Node(layer, implied, path)

    def _remove_below(self, path: str, keep_dir: bool) -> None:
        prefix = f"{path}/" if path else ""
        doomed = [p for p in self.nodes if p.startswith(prefix) or (not keep_dir and p == path)]
        for p in doomed:
            node = self.nodes.pop(p)
            self._shadowed.append((node.layer, p, node.entry, True))

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
        bound = self._links.get((node.layer, node.path))
        if bound is None or (bound.layer != node.layer and not lower_links):
            # the extractor's words: a broken link is the archive's fault
            where = "is in no layer" if lower_links else "is not in its layer"
            raise UnsafeContentError(node.path, f"hardlink target missing ({entry.linkname!r} {where})")
        data = self.data_node(bound, lower_links) if bound.entry.type == "hardlink" else bound
        if data.entry.type != "reg":
            raise UnsafeContentError(node.path, f"hardlink target {entry.linkname!r} is not a regular file")
        return data
