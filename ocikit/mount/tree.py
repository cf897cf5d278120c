"""What a mount shows: the merged zTOC tree, held to the rules a pull is held to.

The entries come from :class:`~ocikit.ztoc.view.ImageTree` (layers merged with the OCI
whiteout rules) and pass through the same rule functions the safe extractor calls
(:mod:`ocikit.extract.rules`): names that climb out or claim ``.ocikit`` refuse the mount,
set-id bits are dropped unless the policy keeps them, devices are refused (skipped in a
root filesystem), ``max_size`` caps every file and the total, and symlinks are checked when
they arrive (and against the mounted tree once it is up, as a pull checks its finished tree).
A mount that a pull would refuse is refused before anything is mounted.

Ownership is not shown from the archive: like the files of a pull, every entry belongs to
the user who mounted it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from ..errors import UnsafeContentError
from ..extract.decompress import SizeBudget
from ..extract.rules import admit_entry, check_declared_size, clamp_mtime_ns, kept_mode_bits
from ..extract.safe_tar import ExtractPolicy
from ..formats.tar.reader import BLOCKDEV, CHARDEV, DIRECTORY, FIFO, FILE, HARDLINK, SYMLINK
from ..ztoc.gotime import rfc3339_to_unix
from ..ztoc.toc import FileMetadata
from ..ztoc.view import ImageTree

_TYPE_BITS = {DIRECTORY: stat.S_IFDIR, FILE: stat.S_IFREG, SYMLINK: stat.S_IFLNK, CHARDEV: stat.S_IFCHR,
              BLOCKDEV: stat.S_IFBLK, FIFO: stat.S_IFIFO}


@dataclass(slots=True)
class MountEntry:
    """One path of the mounted tree. Regular files name where their bytes are: ``layer`` and the
    ``offset`` of the data in that layer's uncompressed tar."""

    kind: str  # DIRECTORY | FILE | SYMLINK | CHARDEV | BLOCKDEV | FIFO
    mode: int  # permission bits, after the policy's rules
    size: int = 0
    mtime_ns: int = 0
    layer: int = -1
    offset: int = 0
    target: str = ""  # a symlink's target
    nlink: int = 1
    rdev: int = 0
    children: list[str] | None = None  # a directory's names, sorted

    @property
    def st_mode(self) -> int:
        return _TYPE_BITS[self.kind] | self.mode


@dataclass
class MountTree:
    """The paths a mount shows ('' is the root) and what the rules asked to check later."""

    entries: dict[str, MountEntry]
    links: list[tuple[str, str]] = field(default_factory=list)  # symlinks to resolve against the mounted tree
    skipped: list[str] = field(default_factory=list)  # left out on purpose (a rootfs's device nodes)
    data_bytes: int = 0  # distinct file bytes

    def lookup(self, path: str) -> MountEntry | None:
        return self.entries.get(path.strip("/"))


def build_mount_tree(tree: ImageTree, rules: ExtractPolicy, mtime_ns: int = 0) -> MountTree:
    """The mount's view of ``tree`` under ``rules`` (UnsafeContentError when a pull would refuse it)."""
    tree.check_replaced(rules)  # an image a full pull refuses is refused here too
    keep = kept_mode_bits(rules.preserve_special_modes)
    budget = SizeBudget(rules.max_size)
    times: dict[str, int] = {}  # the files of one install share a handful of times: parse each once
    result = MountTree({"": MountEntry(DIRECTORY, 0o755, mtime_ns=mtime_ns, children=[])})
    data_paths: dict[tuple[int, int], list[str]] = {}  # hard links: the paths sharing one file's bytes
    for path in sorted(tree.nodes):
        node = tree.nodes[path]
        entry = _admitted(path, node.entry, rules, keep, result, times)
        if entry is None:
            continue
        if node.entry.type in (FILE, HARDLINK):
            holder = tree.data_node(node, rules.rootfs)  # a hard link's bytes may be a lower layer's
            data = holder.entry
            check_declared_size(data.size, rules.max_size, node.entry.name)
            entry.kind, entry.size, entry.layer, entry.offset = FILE, data.size, holder.layer, data.offset
            entry.mode = data.mode & keep
            sharing = data_paths.setdefault((holder.layer, data.offset), [])
            if not sharing:
                if rules.max_size is not None:  # the pull's bomb guard on the total
                    budget.take(data.size, node.entry.name)
                result.data_bytes += data.size
            sharing.append(path)
        _add(result, path, entry, mtime_ns)
    for sharing in data_paths.values():
        for path in sharing:
            result.entries[path].nlink = len(sharing)
    for path, entry in result.entries.items():
        if entry.children is not None:
            entry.children.sort()
            prefix = f"{path}/" if path else ""
            entry.nlink = 2 + sum(1 for name in entry.children if result.entries[prefix + name].kind == DIRECTORY)
    return result


def _admitted(path: str, meta: FileMetadata, rules: ExtractPolicy, keep: int, result: MountTree,
              times: dict[str, int]) -> MountEntry | None:
    """The entry for one TOC record, or None when the rules leave it out; raises when they refuse it."""
    clean, admission = admit_entry(meta.name, meta.type, meta.linkname, meta.size, rules)
    if clean != path:
        raise UnsafeContentError(meta.name, "path traversal")
    if admission == "skip":
        result.skipped.append(path)
        return None
    mtime_ns = times.get(meta.mod_time)
    if mtime_ns is None:
        seconds, nanos = rfc3339_to_unix(meta.mod_time)
        mtime_ns = times[meta.mod_time] = clamp_mtime_ns(seconds * 1_000_000_000 + nanos)
    kind = meta.type
    if kind == SYMLINK:
        if admission == "resolve":
            result.links.append((path, meta.linkname))
        return MountEntry(SYMLINK, 0o777, len(meta.linkname.encode("utf-8", "surrogateescape")), mtime_ns,
                          target=meta.linkname)
    if kind in (CHARDEV, BLOCKDEV, FIFO):
        return MountEntry(kind, meta.mode & keep & 0o777, mtime_ns=mtime_ns,
                          rdev=os.makedev(meta.devmajor, meta.devminor))
    if kind == DIRECTORY:
        return MountEntry(DIRECTORY, meta.mode & keep, mtime_ns=mtime_ns, children=[])
    return MountEntry(FILE, meta.mode & keep, mtime_ns=mtime_ns)  # a file or hard link: data filled in by the caller


def _add(result: MountTree, path: str, entry: MountEntry, mtime_ns: int) -> None:
    """Insert ``entry`` under its parent, making parent directories that the archives omit."""
    implied = result.entries.get(path)
    result.entries[path] = entry
    if implied is not None:  # a directory made for an earlier child: keep its children
        entry.children = implied.children if entry.children is not None else None
        return
    parent, _, name = path.rpartition("/")
    holder = result.entries.get(parent)
    if holder is None:
        holder = MountEntry(DIRECTORY, 0o755, mtime_ns=mtime_ns, children=[])
        _add(result, parent, holder, mtime_ns)
    if holder.children is None:
        rule = "path through symlink" if holder.kind == SYMLINK else "parent is not a directory"
        raise UnsafeContentError(path, rule)
    holder.children.append(name)
