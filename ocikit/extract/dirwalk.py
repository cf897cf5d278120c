"""Walk a directory tree of any depth, deepest directories finished first, over descriptors.

Trees written from untrusted archives can be deeper than Python's recursion limit and
longer than PATH_MAX (a 10,000-level path is 20,000 bytes). :func:`walk_post_order` never
recurses and never builds a path: every directory is opened relative to its parent with
``O_NOFOLLOW | O_DIRECTORY``. At most ``MAX_OPEN_LEVELS`` levels keep their descriptor; a
closed level is reopened as ``..`` of its child on the way back up and checked by inode, so
a directory moved meanwhile is an error, never a walk somewhere else.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import LocalIOError

MAX_OPEN_LEVELS = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# enter(fd, depth) handles a directory's other entries and returns the subdirectories to walk;
# leave(fd, name, parent_fd, depth) finishes a directory once everything below it is done.
Enter = Callable[[int, int], list[str]]
Leave = Callable[[int, str, int, int], None]


class _Level:
    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.fd: int | None = fd
        st = os.fstat(fd)
        self.identity = (st.st_dev, st.st_ino)
        self.subdirs: list[str] = []

    def descriptor(self) -> int:
        assert self.fd is not None, "only the deepest levels are ever used"
        return self.fd

    def reopen_from(self, child: "_Level") -> int:
        if self.fd is None:
            fd = os.open("..", _DIR_FLAGS, dir_fd=child.descriptor())
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self.identity:
                os.close(fd)
                raise LocalIOError(f"directory {self.name!r} was moved while it was being walked")
            self.fd = fd
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def walk_post_order(parent_fd: int, name: str, enter: Enter, leave: Leave) -> None:
    """Walk the directory ``name`` of ``parent_fd``: ``enter`` each directory top-down, ``leave``
    it when all its subdirectories are done (so the top one is left last)."""
    levels = [_Level(name, os.open(name, _DIR_FLAGS, dir_fd=parent_fd))]
    try:
        levels[0].subdirs = enter(levels[0].descriptor(), 0)
        while levels:
            level = levels[-1]
            if level.subdirs:
                sub = level.subdirs.pop()
                child = _Level(sub, os.open(sub, _DIR_FLAGS, dir_fd=level.descriptor()))
                levels.append(child)
                child.subdirs = enter(child.descriptor(), len(levels) - 1)
                if len(levels) > MAX_OPEN_LEVELS:
                    levels[len(levels) - MAX_OPEN_LEVELS - 1].close()
                continue
            levels.pop()
            up_fd = levels[-1].reopen_from(level) if levels else parent_fd
            leave(level.descriptor(), level.name, up_fd, len(levels))
            level.close()
    finally:
        for level in levels:
            level.close()
