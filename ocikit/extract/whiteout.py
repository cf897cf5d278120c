"""Container-image layers: apply one extracted layer on top of the layers below it.

OCI image-spec (layer.md): a file ``.wh.NAME`` hides ``NAME`` of the lower layers, and
``.wh..wh..opq`` in a directory hides everything the lower layers put there; both apply
only to lower layers, never to entries of the same layer. Layers are extracted in
parallel, each into its own directory (the extractor records whiteouts instead of writing
them), and merged in order with :func:`merge_layer`: first hide what the layer hides, then
move its entries over with ``rename(2)`` — a whole directory at a time when the lower
layers do not have it, so the merge costs a few system calls per *new* directory, not
per file. Hardlinks to files of lower layers are made last, against the merged tree.

Every path is walked from the merged root with ``O_NOFOLLOW`` directory descriptors: a
symlink left by a lower layer never redirects a removal or a move.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import LocalIOError, UnsafeContentError
from .dirwalk import walk_post_order
from .safe_tar import LayerOutcome

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def merge_layer(merged_fd: int, layer_fd: int, outcome: LayerOutcome) -> list[str]:
    """Apply the layer extracted at ``layer_fd`` (with its recorded whiteouts) onto ``merged_fd``.

    Returns the paths of the merged tree it removed or replaced (with all below them): the lower
    layers' directory metadata there belongs to directories that are gone."""
    removed: list[str] = []
    for directory in outcome.opaque:
        parent_fd = _walk(merged_fd, directory)
        if parent_fd is not None:
            try:
                for name in os.listdir(parent_fd):
                    remove_entry(parent_fd, name)
                    removed.append(f"{directory}/{name}" if directory else name)
            finally:
                _close(parent_fd, merged_fd)
    for path in outcome.whiteouts:
        parent, _, name = path.rpartition("/")
        parent_fd = _walk(merged_fd, parent)
        if parent_fd is not None:
            try:
                remove_entry(parent_fd, name)
                removed.append(path)
            finally:
                _close(parent_fd, merged_fd)
    move_entries(layer_fd, merged_fd, {record.path for record in outcome.dir_records}, removed=removed)
    for link, target in outcome.lower_links:
        _link_lower(merged_fd, link, target)
    return removed


def move_entries(src_fd: int, dst_fd: int, listed: set[str], prefix: str = "", removed: list[str] | None = None) -> None:
    """Move every entry of directory ``src_fd`` into ``dst_fd``, merging directories, replacing the rest.

    ``listed`` holds the directories the layer lists (the others it has only as parents): a
    listed directory replaces a lower symlink of that name, as any listed entry replaces
    what is below it; an unlisted one would mean writing through the symlink, which is refused.
    """
    with os.scandir(src_fd) as entries:
        names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for name, is_dir in names:
        existing = _lstat(dst_fd, name)
        if is_dir and existing is not None and stat.S_ISDIR(existing.st_mode):
            sub_src = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
            sub_dst = os.open(name, _DIR_FLAGS, dir_fd=dst_fd)
            try:
                move_entries(sub_src, sub_dst, listed, f"{prefix}{name}/", removed)
            finally:
                os.close(sub_src)
                os.close(sub_dst)
            continue
        if is_dir and existing is not None and stat.S_ISLNK(existing.st_mode) and f"{prefix}{name}" not in listed:
            # containerd would resolve the symlink inside the rootfs; ocikit never writes through one.
            raise UnsafeContentError(name, "path through symlink (a lower layer made this directory a symlink)")
        if existing is not None and (is_dir or stat.S_ISDIR(existing.st_mode)):
            remove_entry(dst_fd, name)  # a file replaces a directory or vice versa (or a listed one a symlink)
            if removed is not None:
                removed.append(f"{prefix}{name}")
        try:
            os.rename(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        except OSError as exc:
            raise LocalIOError(f"cannot merge layer entry {name!r}: {exc.strerror}") from None


def remove_entry(dir_fd: int, name: str) -> None:
    """Remove ``name`` (a file, a symlink, or a whole directory tree) from ``dir_fd``; absent is fine.

    Iterative over descriptors (:func:`~ocikit.extract.dirwalk.walk_post_order`), so neither
    Python's recursion limit nor PATH_MAX nor the descriptor limit bounds the depth of a tree
    it can remove: a 10,000-level staging leftover goes like any other.
    """
    st = _lstat(dir_fd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    walk_post_order(dir_fd, name, _empty_files, _remove_directory)


def _empty_files(fd: int, _depth: int) -> list[str]:
    """Make the directory writable, unlink every non-directory; return its subdirectories."""
    st = os.fstat(fd)
    if not st.st_mode & stat.S_IWUSR or not st.st_mode & stat.S_IXUSR:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
    subdirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    return subdirs


def _remove_directory(_fd: int, name: str, parent_fd: int, _depth: int) -> None:
    os.rmdir(name, dir_fd=parent_fd)


def remove_tree(path: str) -> None:
    """Remove a directory tree without following symlinks (also trees with read-only directories)."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        parent_fd = os.open(parent, _DIR_FLAGS)
    except FileNotFoundError:
        return
    try:
        remove_entry(parent_fd, name)
    finally:
        os.close(parent_fd)


def _link_lower(merged_fd: int, link: str, target: str) -> None:
    link_parent, _, link_name = link.rpartition("/")
    target_parent, _, target_name = target.rpartition("/")
    target_fd = _walk(merged_fd, target_parent)
    if target_fd is None:
        raise UnsafeContentError(link, f"hardlink target missing ({target!r} is in no layer)")
    found = _lstat(target_fd, target_name)
    if found is None or not stat.S_ISREG(found.st_mode):  # a link names a file, never a symlink or directory
        _close(target_fd, merged_fd)
        if found is None:
            raise UnsafeContentError(link, f"hardlink target missing ({target!r} is in no layer)")
        raise UnsafeContentError(link, f"hardlink target {target!r} is not a regular file")
    link_fd = _walk(merged_fd, link_parent)
    try:
        if link_fd is None:
            raise UnsafeContentError(link, "hardlink target missing (its directory was removed)")
        remove_entry(link_fd, link_name)
        os.link(target_name, link_name, src_dir_fd=target_fd, dst_dir_fd=link_fd, follow_symlinks=False)
    except PermissionError:
        raise UnsafeContentError(link, "hardlink target outside destination (not a regular file)") from None
    finally:
        _close(target_fd, merged_fd)
        if link_fd is not None:
            _close(link_fd, merged_fd)


def _walk(root_fd: int, path: str) -> int | None:
    """A descriptor for ``path`` under ``root_fd`` (``root_fd`` itself for ""), None if absent.

    Raises UnsafeContentError when a component is a symlink or not a directory.
    """
    if not path:
        return root_fd
    fd = root_fd
    for part in path.split("/"):
        try:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            _close(fd, root_fd)
            return None
        except OSError as exc:
            _close(fd, root_fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeContentError(path, "path through symlink") from None
            raise
        _close(fd, root_fd)
        fd = next_fd
    return fd


def _close(fd: int, root_fd: int) -> None:
    if fd != root_fd:
        os.close(fd)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
