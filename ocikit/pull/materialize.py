"""Copy a finished tree to another place by hardlink, reflink or copy (node cache → pod volume).

``hardlink``  no data is copied; the target shares inodes with the source, so it must be
              treated as read-only (a write would change the cached tree for every pod).
``reflink``   copy-on-write clones (``FICLONE``; btrfs, XFS, bcachefs, overlayfs on those):
              as cheap as hardlinks on disk, but independent files. Raises
              :class:`~ocikit.errors.UnsupportedError` where the filesystem cannot clone.
``copy``      ordinary copies (``copy_file_range``/``sendfile`` in the kernel).
``auto``      reflink where the filesystem supports it, else copy.

Symlinks are recreated, directories created fresh; modes and times are copied, directory
metadata last (deepest first). The source is walked with ``O_NOFOLLOW`` descriptors,
iteratively: no depth is too deep.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from dataclasses import dataclass

from ..errors import InvalidContentError, LocalIOError, UnsupportedError
from ..extract.dirwalk import MAX_OPEN_LEVELS, walk_post_order
from ..extract.rules import RESERVED_TOP

MODES = ("auto", "hardlink", "reflink", "copy")
_FICLONE = 0x40049409  # _IOW(0x94, 9, int)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class MaterializeStats:
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    bytes: int = 0
    mode: str = ""


def materialize(source: str, target: str, mode: str = "auto", exclude_top: frozenset[str] = frozenset()) -> MaterializeStats:
    """Fill the empty directory ``target`` with the tree at ``source`` (top-level names in ``exclude_top`` skipped).

    Iterative, over directory descriptors (at most ``MAX_OPEN_LEVELS`` levels open, the others
    reopened through ``..`` and checked by inode), so a tree of any depth is copied; each
    directory gets its mode and times when everything below it is done (deepest first).
    """
    if mode not in MODES:
        raise InvalidContentError(f"unknown link mode {mode!r} (choose from {', '.join(MODES)})")
    stats = MaterializeStats(mode=mode)
    levels = [_Level.open_root(source, target)]
    try:
        levels[0].subdirs = _copy_entries(levels[0], mode, stats, exclude_top)
        while levels:
            level = levels[-1]
            if level.subdirs:
                child = level.descend(level.subdirs.pop())
                levels.append(child)
                child.subdirs = _copy_entries(child, mode, stats, frozenset())
                stats.directories += 1
                if len(levels) > MAX_OPEN_LEVELS:
                    levels[len(levels) - MAX_OPEN_LEVELS - 1].close()
                continue
            levels.pop()
            level.finish()
            if levels:
                levels[-1].reopen_from(level)
            level.close()
    finally:
        for level in levels:
            level.close()
    return stats


class _Level:
    """One directory being copied: descriptors of the source and target directory (None while
    closed to save descriptors), their identities, the source's metadata, subdirectories left."""

    def __init__(self, src_fd: int, dst_fd: int) -> None:
        self.src_fd: int | None = src_fd
        self.dst_fd: int | None = dst_fd
        self.st = os.fstat(src_fd)
        dst_st = os.fstat(dst_fd)
        self.ids = ((self.st.st_dev, self.st.st_ino), (dst_st.st_dev, dst_st.st_ino))
        self.subdirs: list[str] = []

    @classmethod
    def open_root(cls, source: str, target: str) -> "_Level":
        src_fd = os.open(source, _DIR_FLAGS)
        try:
            return cls(src_fd, os.open(target, _DIR_FLAGS))
        except BaseException:
            os.close(src_fd)
            raise

    def fds(self) -> tuple[int, int]:
        assert self.src_fd is not None and self.dst_fd is not None, "only the deepest levels are used"
        return self.src_fd, self.dst_fd

    def descend(self, name: str) -> "_Level":
        src_fd, dst_fd = self.fds()
        os.mkdir(name, 0o700, dir_fd=dst_fd)
        sub_src = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
        try:
            return _Level(sub_src, os.open(name, _DIR_FLAGS, dir_fd=dst_fd))
        except BaseException:
            os.close(sub_src)
            raise

    def reopen_from(self, child: "_Level") -> None:
        """Reopen this level's descriptors as ``..`` of ``child`` if they were closed."""
        if self.src_fd is not None:
            return
        child_src, child_dst = child.fds()
        src_fd = os.open("..", _DIR_FLAGS, dir_fd=child_src)
        dst_fd = os.open("..", _DIR_FLAGS, dir_fd=child_dst)
        self.src_fd, self.dst_fd = src_fd, dst_fd
        found = tuple((st.st_dev, st.st_ino) for st in (os.fstat(src_fd), os.fstat(dst_fd)))
        if found != self.ids:
            raise LocalIOError("cannot publish: a directory was moved while it was being copied")

    def finish(self) -> None:
        """The directory's own mode and times, once everything below it exists."""
        _src_fd, dst_fd = self.fds()
        os.fchmod(dst_fd, stat.S_IMODE(self.st.st_mode))
        os.utime(dst_fd, ns=(self.st.st_atime_ns, self.st.st_mtime_ns))

    def close(self) -> None:
        for fd in (self.src_fd, self.dst_fd):
            if fd is not None:
                os.close(fd)
        self.src_fd = self.dst_fd = None


def _copy_entries(level: _Level, mode: str, stats: MaterializeStats, exclude: frozenset[str]) -> list[str]:
    """Copy every non-directory entry of the level; return the names of its subdirectories."""
    src_fd, dst_fd = level.fds()
    with os.scandir(src_fd) as entries:
        items = [(e.name, e.stat(follow_symlinks=False)) for e in entries if e.name not in exclude]
    subdirs = []
    for name, st in items:
        if stat.S_ISDIR(st.st_mode):
            subdirs.append(name)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)
            stats.symlinks += 1
        elif stat.S_ISREG(st.st_mode):
            _file(src_fd, dst_fd, name, st, mode, stats)
            stats.files += 1
            stats.bytes += st.st_size
        else:
            _special(dst_fd, name, st)
    return subdirs


def _file(src_fd: int, dst_fd: int, name: str, st: os.stat_result, mode: str, stats: MaterializeStats) -> None:
    if mode == "hardlink":
        try:
            os.link(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
            return
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise UnsupportedError("hardlink publishing needs the cache and the target on one filesystem") from None
            raise LocalIOError(f"cannot link {name}: {exc.strerror}") from None
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    try:
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst_fd)
        try:
            if mode in ("reflink", "auto") and _clone(src, dst, mode, stats):
                pass
            else:
                _copy_data(src, dst, st.st_size)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _clone(src: int, dst: int, mode: str, stats: MaterializeStats) -> bool:
    """Reflink ``src`` into ``dst``; in ``auto`` mode remember a failure and stop trying."""
    if stats.mode == "copy":
        return False
    try:
        fcntl.ioctl(dst, _FICLONE, src)
        stats.mode = "reflink"
        return True
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS):
            raise LocalIOError(f"cannot clone a file: {exc.strerror}") from None
        if mode == "reflink":
            raise UnsupportedError("reflink publishing needs a filesystem with copy-on-write clones (btrfs, XFS)") from None
        stats.mode = "copy"
        return False


def _copy_data(src: int, dst: int, size: int) -> None:
    copied = 0
    try:
        while copied < size:
            n = os.copy_file_range(src, dst, size - copied)
            if n == 0:
                break
            copied += n
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise LocalIOError(f"cannot copy a file: {exc.strerror}") from None
    os.lseek(src, copied, os.SEEK_SET)
    with open(src, "rb", closefd=False) as fin, open(dst, "wb", closefd=False) as fout:
        fout.seek(copied)
        shutil.copyfileobj(fin, fout, 1 << 20)


def _special(dst_fd: int, name: str, st: os.stat_result) -> None:
    try:
        if stat.S_ISFIFO(st.st_mode):
            os.mkfifo(name, stat.S_IMODE(st.st_mode), dir_fd=dst_fd)
        else:
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst_fd)
    except PermissionError:
        raise LocalIOError(f"cannot recreate device {name}: needs privileges") from None


def make_read_only(root: str, files: bool = True, keep: frozenset[str] = frozenset({RESERVED_TOP})) -> None:
    """Drop write permission below ``root``: directories, and files too when ``files``.

    ``root`` itself and the top-level names in ``keep`` stay writable, so ocikit can still
    switch the tree, write its marker and later replace it; mount the volume read-only for
    protection against the application itself. Walked over descriptors, at any depth.
    """

    def enter(fd: int, depth: int) -> list[str]:
        subdirs = []
        with os.scandir(fd) as entries:
            items = [(e.name, e.stat(follow_symlinks=False)) for e in entries if depth or e.name not in keep]
        for name, st in items:
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(name)
            elif files and stat.S_ISREG(st.st_mode) and st.st_mode & 0o222:
                file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
                try:
                    os.fchmod(file_fd, stat.S_IMODE(st.st_mode) & ~0o222)
                finally:
                    os.close(file_fd)
        return subdirs

    def leave(fd: int, _name: str, _parent_fd: int, depth: int) -> None:
        if depth:  # root itself stays writable
            os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) & ~0o222)

    parent, name = os.path.split(os.path.abspath(root))
    parent_fd = os.open(parent, _DIR_FLAGS)
    try:
        walk_post_order(parent_fd, name, enter, leave)
    finally:
        os.close(parent_fd)
