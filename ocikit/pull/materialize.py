"""Copy a finished tree to another place by hardlink, reflink or copy (node cache → pod volume).

``hardlink``  no data is copied; the target shares inodes with the source, so it must be
              treated as read-only (a write would change the cached tree for every pod).
``reflink``   copy-on-write clones (``FICLONE``; btrfs, XFS, bcachefs, overlayfs on those):
              as cheap as hardlinks on disk, but independent files. Raises
              :class:`~ocikit.errors.UnsupportedError` where the filesystem cannot clone.
``copy``      ordinary copies (``copy_file_range``/``sendfile`` in the kernel).
``auto``      reflink where the filesystem supports it, else copy.

Symlinks are recreated, directories created fresh; modes and times are copied, directory
metadata last (deepest first). The source is walked with ``O_NOFOLLOW`` descriptors.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
from dataclasses import dataclass

from ..errors import InvalidContentError, LocalIOError, UnsupportedError

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
    """Fill the empty directory ``target`` with the tree at ``source`` (top-level names in ``exclude_top`` skipped)."""
    if mode not in MODES:
        raise InvalidContentError(f"unknown link mode {mode!r} (choose from {', '.join(MODES)})")
    stats = MaterializeStats(mode=mode)
    src_fd = os.open(source, _DIR_FLAGS)
    dst_fd = os.open(target, _DIR_FLAGS)
    dirs: list[tuple[int, str, os.stat_result]] = []
    try:
        _copy_dir(src_fd, dst_fd, "", mode, stats, dirs, exclude_top)
        for _depth, path, st in sorted(dirs, key=lambda d: d[0], reverse=True):
            fd = os.open(path, _DIR_FLAGS, dir_fd=dst_fd) if path else os.dup(dst_fd)
            try:
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    return stats


def _copy_dir(
    src_fd: int,
    dst_fd: int,
    path: str,
    mode: str,
    stats: MaterializeStats,
    dirs: list[tuple[int, str, os.stat_result]],
    exclude: frozenset[str],
) -> None:
    dirs.append((path.count("/") + (1 if path else 0), path, os.fstat(src_fd)))
    with os.scandir(src_fd) as entries:
        items = [(e.name, e.stat(follow_symlinks=False)) for e in entries if not (not path and e.name in exclude)]
    for name, st in items:
        child = f"{path}/{name}" if path else name
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst_fd)
            sub_src = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
            sub_dst = os.open(name, _DIR_FLAGS, dir_fd=dst_fd)
            try:
                _copy_dir(sub_src, sub_dst, child, mode, stats, dirs, frozenset())
            finally:
                os.close(sub_src)
                os.close(sub_dst)
            stats.directories += 1
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


def make_read_only(root: str, files: bool = True, keep: frozenset[str] = frozenset({".ocikit"})) -> None:
    """Drop write permission below ``root``: directories, and files too when ``files``.

    ``root`` itself and the top-level names in ``keep`` stay writable, so ocikit can still
    switch the tree, write its marker and later replace it; mount the volume read-only for
    protection against the application itself.
    """
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        rel = os.path.relpath(dirpath, root)
        if rel.split(os.sep, 1)[0] in keep:
            continue
        if files:
            for name in filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and st.st_mode & 0o222:
                    os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o222)
        if rel != ".":
            st = os.lstat(dirpath)
            os.chmod(dirpath, stat.S_IMODE(st.st_mode) & ~0o222)
