"""The FUSE side of a mount: a read-only filesystem over a :class:`~ocikit.mount.tree.MountTree`.

Bound with mfusepy (ctypes over Debian's libfuse3, high-level path API, one thread per
request), so reads of different spans proceed in parallel. Only the operations that need an
answer from the tree are Python callbacks: ``open`` answers ENOSYS once, after which the
kernel opens and releases files without asking (the mount is read-only, so the kernel itself
refuses opens for writing with EROFS); ``flush`` is left to libfuse. Directory listings carry
each name's type. Attribute and entry answers are cached by the kernel for an hour and file
data stays in its page cache (the tree never changes while mounted). Metadata answers come from
memory; a read fetches only the spans under it (:class:`~ocikit.mount.spans.LayerData`).
Any failure to produce verified bytes — a registry gone past the timeout, a span whose
digest does not match — answers that read with EIO; no unverified byte is ever returned.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from typing import Any

import mfusepy as fuse

from ..formats.tar.reader import SYMLINK
from .spans import LayerData, MountStats
from .tree import MountEntry, MountTree

log = logging.getLogger("ocikit.mount")



class TreeOperations(fuse.Operations):
    """mfusepy operations serving ``tree``; file data through ``layers`` (one per image layer)."""

    use_ns = True

    def __init__(self, tree: MountTree, layers: list[LayerData], stats: MountStats,
                 relocated: Callable[[str, MountEntry, int, int], bytes | None] | None = None,
                 on_init: Callable[[], None] | None = None, on_cost: Callable[[], None] | None = None) -> None:
        self.tree = tree
        self.layers = layers
        self.stats = stats
        self.relocated = relocated  # a relocated file's bytes, or None to serve it from its layer
        self.on_init = on_init
        self.on_cost = on_cost  # told (before the reader gets its bytes) when a read fetched or failed
        self.touched: dict[str, None] = {}  # files read, in the order of their first read (--record)
        self.uid, self.gid = os.getuid(), os.getgid()

    def init(self, path: str) -> None:
        if self.on_init is not None:
            self.on_init()

    def _entry(self, path: str) -> MountEntry:
        entry = self.tree.lookup(path)
        if entry is None:
            raise fuse.FuseOSError(errno.ENOENT)
        return entry

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        entry = self._entry(path)
        return {
            "st_mode": entry.st_mode, "st_nlink": entry.nlink, "st_size": entry.size,
            "st_mtime": entry.mtime_ns, "st_atime": entry.mtime_ns, "st_ctime": entry.mtime_ns,
            "st_uid": self.uid, "st_gid": self.gid, "st_rdev": entry.rdev,
            "st_blocks": (entry.size + 511) // 512, "st_blksize": 128 << 10,
        }

    def readdir(self, path: str, fh: int) -> list[tuple[str, int, int]]:
        """The names with their types (``d_type``), so a walk needs no ``stat`` per name to tell
        directories from files."""
        entry = self._entry(path)
        if entry.children is None:
            raise fuse.FuseOSError(errno.ENOTDIR)
        prefix = path.strip("/")
        prefix = f"{prefix}/" if prefix else ""
        entries = self.tree.entries
        return [(".", entry.st_mode, 0), ("..", stat.S_IFDIR, 0),
                *((name, entries[prefix + name].st_mode, 0) for name in entry.children)]

    def open(self, path: str, flags: int) -> int:
        """ENOSYS tells the kernel (FUSE_NO_OPEN_SUPPORT) that opens need no answer from this
        filesystem: later opens and their releases never leave the kernel. Reads need no file
        handle and writes are refused by the read-only mount itself (EROFS). On a VM, where each
        round trip to the daemon is a wake-up, this is a quarter of reading a cached tree."""
        raise fuse.FuseOSError(errno.ENOSYS)

    def readlink(self, path: str) -> str:
        entry = self._entry(path)
        if entry.kind != SYMLINK:
            raise fuse.FuseOSError(errno.EINVAL)
        return entry.target

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        entry = self._entry(path)
        end = min(offset + size, entry.size)
        if offset >= end:
            return b""
        self.touched.setdefault(path.strip("/"))
        before = self.stats.cost()
        try:
            if self.relocated is not None:
                data = self.relocated(path.strip("/"), entry, offset, end - offset)
                if data is not None:
                    return data
            return self.layers[entry.layer].read(entry.offset + offset, end - offset)
        except Exception as exc:  # every failure is EIO for the reader; the reason goes to the stats
            self.stats.errors += 1
            self.stats.last_error = f"{path}: {exc}"
            log.warning("read of %s failed: %s", path, exc)
            raise fuse.FuseOSError(errno.EIO) from None
        finally:
            if self.on_cost is not None and self.stats.cost() != before:
                self.on_cost()

    def statfs(self, path: str) -> dict[str, int]:
        blocks = self.tree.data_bytes // 4096 + 1
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": blocks, "f_bfree": 0, "f_bavail": 0,
                "f_files": len(self.tree.entries), "f_ffree": 0, "f_namemax": 255}


def is_stale_mount(path: str) -> bool:
    """Whether ``path`` is a FUSE mount whose daemon died (ENOTCONN), which blocks a new mount."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def is_mounted(path: str) -> bool:
    """Whether ``path`` is a mount point now (``/proc/self/mountinfo``)."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            return any(line.split()[4] == real for line in fh if len(line.split()) > 4)
    except OSError:
        return os.path.ismount(real)


__all__ = ["TreeOperations", "is_mounted", "is_stale_mount"]
