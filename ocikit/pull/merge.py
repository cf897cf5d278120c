"""``pull --merge``: add a finished tree's paths to a DEST that holds files ocikit did not write.

Nothing of DEST is removed except what the artifact itself names: a path the artifact has is
added, or replaces DEST's file or symlink of that name; directories both have are merged
entry by entry; every other entry of DEST is left alone. A DEST *directory* where the artifact
has a file (or a link) would take the user's files with it, so it is a conflict, found by a
first pass over the tree before anything moves.

Both trees are walked with ``O_NOFOLLOW`` directory descriptors and entries are moved with
``renameat``: a symlink in DEST is replaced like a file, never followed. The staging tree is
on DEST's filesystem (the caller's :class:`~ocikit.pull.destination.Staging`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from ..errors import AlreadyExistsError, LocalIOError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def check_mergeable(source: str, dest: str, skip_top: frozenset[str]) -> None:
    """Raise :class:`AlreadyExistsError` if merging ``source`` into ``dest`` would replace a directory of DEST."""
    for _src_fd, dst_fd, where, entries in _shared_directories(source, dest, skip_top):
        for name, src_st in entries:
            dst_st = _lstat(dst_fd, name)
            if dst_st is not None and stat.S_ISDIR(dst_st.st_mode) and not stat.S_ISDIR(src_st.st_mode):
                path = os.path.join(dest, *where, name)
                raise AlreadyExistsError(
                    f"cannot merge into {dest}: {path} is a directory there and not one in the artifact "
                    "(ocikit never removes files it did not write)"
                )


def merge_into(source: str, dest: str, skip_top: frozenset[str]) -> None:
    """Move every entry of ``source`` into ``dest`` (call :func:`check_mergeable` first)."""
    for src_fd, dst_fd, _where, entries in _shared_directories(source, dest, skip_top):
        for name, src_st in entries:
            dst_st = _lstat(dst_fd, name)
            if dst_st is not None and stat.S_ISDIR(dst_st.st_mode) and stat.S_ISDIR(src_st.st_mode):
                continue  # both have it: merged when the walk reaches it
            try:
                if dst_st is not None and stat.S_ISDIR(src_st.st_mode):
                    os.unlink(name, dir_fd=dst_fd)  # DEST's file or link where the artifact has a directory
                os.rename(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except OSError as exc:
                raise LocalIOError(f"cannot merge {name!r} into {dest}: {exc.strerror}") from None


Shared = tuple[int, int, list[str], list[tuple[str, os.stat_result]]]


def _shared_directories(source: str, dest: str, skip_top: frozenset[str]) -> Iterator[Shared]:
    """``(source fd, dest fd, path, source entries)`` of every directory both trees have, top
    first. The directories to descend into are decided before the caller sees a pair, so it
    may move entries out of it."""
    pending: list[list[str]] = [[]]
    while pending:
        where = pending.pop()
        src_fd = _walk(source, where)
        try:
            dst_fd = _walk(dest, where)
        except BaseException:
            os.close(src_fd)
            raise
        try:
            entries = [(n, st) for n, st in _entries(src_fd) if where or n not in skip_top]
            for name, src_st in entries:
                dst_st = _lstat(dst_fd, name)
                if stat.S_ISDIR(src_st.st_mode) and dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
                    pending.append([*where, name])
            yield src_fd, dst_fd, where, entries
        finally:
            os.close(src_fd)
            os.close(dst_fd)


def _entries(dir_fd: int) -> list[tuple[str, os.stat_result]]:
    with os.scandir(dir_fd) as found:
        return [(entry.name, entry.stat(follow_symlinks=False)) for entry in found]


def _walk(root: str, parts: list[str]) -> int:
    fd = os.open(root, _DIR_FLAGS)
    for part in parts:
        try:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            raise LocalIOError(f"cannot merge into {os.path.join(root, *parts)}: {exc.strerror}") from None
        os.close(fd)
        fd = next_fd
    return fd


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
