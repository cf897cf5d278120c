"""Where a pull lands: a lock, a staging directory, an atomic switch, the ready marker.

Normal case: DEST's parent is writable and on the same filesystem, so the new tree is
built in ``.<name>.ocikit-staging-<id>/tree`` beside DEST with its marker already inside, then
switched in with one ``renameat2(RENAME_EXCHANGE)`` (or two renames where the filesystem
lacks it) — DEST is either the old complete tree or the new complete tree.

In-place case: DEST is a mount point (a Kubernetes ``emptyDir`` is one), which cannot be
renamed, and its parent is usually another filesystem. The staging directory then lives
inside, at ``DEST/.ocikit/staging-<id>``; when it is complete the marker is removed, the
old top-level entries are moved aside, the new ones moved in (renames on one filesystem)
and the marker is written last.

Either way a pull killed at any moment leaves no marker for a tree it did not finish:
markers are only written after the tree is complete. Stale staging directories of killed
pulls are removed by the next pull (it holds the lock, so nobody else is using them).

A DEST that exists, is not empty, and carries no ``.ocikit`` directory was not made by
ocikit; it is never replaced (``AlreadyExistsError``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import AlreadyExistsError, LocalIOError
from ..extract.whiteout import remove_tree
from .ready import MARKER_DIR, MARKER_NAME, marker_path, read_marker, remove_marker, write_marker

_RENAME_EXCHANGE = 2
# Present on a freshly formatted ext4 volume (a PersistentVolume): not content, never moved.
_FILESYSTEM_NAMES = frozenset({"lost+found"})
_AT_FDCWD = -100


@dataclass(frozen=True)
class Staging:
    base: str  # removed after commit or abort
    tree: str  # the new tree, filled by the caller
    work: str  # scratch space on the same filesystem (image layer directories)


class Destination:
    """A pull's target directory and, optionally, an extra ready file elsewhere."""

    def __init__(self, dest: str, ready_file: str | None = None) -> None:
        self.path = os.path.abspath(dest)
        self.parent, self.name = os.path.split(self.path)
        if not self.name:
            raise LocalIOError(f"cannot pull into {dest!r}: name a directory")
        self.ready_file = os.path.abspath(ready_file) if ready_file else None
        self.in_place = os.path.isdir(self.path) and (os.path.ismount(self.path) or not os.access(self.parent, os.W_OK))

    # -- state ---------------------------------------------------------------------------

    def marker(self) -> dict[str, Any] | None:
        """The marker proving DEST complete (the extra ready file too, when one is configured)."""
        inside = read_marker(self.path)
        if inside is None or self.ready_file is None:
            return inside
        outside = read_marker(self.path, self.ready_file)
        return inside if outside is not None and outside.get("digest") == inside.get("digest") else None

    def ready_with(self, digests: set[str], include: tuple[str, ...] = ()) -> bool:
        """Whether DEST is ready with one of ``digests`` and the same subset (all of it when ``include`` is empty)."""
        marker = self.marker()
        if marker is None or list(marker.get("include") or []) != list(include):
            return False
        return bool(digests & {marker.get("digest"), marker.get("referenceDigest")})

    def check_replaceable(self) -> None:
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise AlreadyExistsError(f"{self.path} exists and is not a directory") from None
        if set(names) - _FILESYSTEM_NAMES and MARKER_DIR not in names:
            raise AlreadyExistsError(
                f"{self.path} is not empty and was not created by ocikit; refusing to replace it (remove it or pick another)"
            )

    # -- lock and staging --------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock for this DEST across processes (flock; released if the process dies)."""
        if self.in_place:
            lock_path = os.path.join(self.path, MARKER_DIR, "lock")
        else:
            lock_path = os.path.join(self.parent, f".{self.name}.ocikit-lock")
        try:
            os.makedirs(os.path.dirname(lock_path), exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LocalIOError(f"cannot lock {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def new_staging(self) -> Staging:
        """A fresh staging directory on DEST's filesystem (stale ones of killed pulls are removed)."""
        for stale in glob.glob(glob.escape(self._staging_prefix()) + "*"):
            remove_tree(stale)
        base = self._staging_prefix() + uuid.uuid4().hex[:12]
        staging = Staging(base, os.path.join(base, "tree"), os.path.join(base, "work"))
        try:
            os.makedirs(staging.tree, mode=0o700)
            os.chmod(staging.tree, 0o755)
        except OSError as exc:
            raise LocalIOError(f"cannot create a staging directory for {self.path}: {exc.strerror}") from None
        return staging

    def _staging_prefix(self) -> str:
        if self.in_place:
            return os.path.join(self.path, MARKER_DIR, "staging-")
        return os.path.join(self.parent, f".{self.name}.ocikit-staging-")

    def abort(self, staging: Staging) -> None:
        remove_tree(staging.base)

    # -- commit --------------------------------------------------------------------------

    def commit(self, staging: Staging, document: Mapping[str, Any]) -> None:
        """Switch the complete staged tree in, then mark it ready (inside, and the extra file)."""
        if self.ready_file:
            remove_marker(self.ready_file)  # the old tree stops being "ready" before it changes
        try:
            if self.in_place:
                self._commit_in_place(staging, document)
            else:
                write_marker(os.path.join(staging.tree, MARKER_DIR, MARKER_NAME), document)
                self._switch(staging)
        finally:
            remove_tree(staging.base)
        if self.ready_file:
            write_marker(self.ready_file, document)

    def _switch(self, staging: Staging) -> None:
        if not os.path.lexists(self.path):
            _rename(staging.tree, self.path)
            return
        if _exchange(staging.tree, self.path):
            return  # the old tree is now at staging.tree and goes with the staging directory
        old = os.path.join(staging.base, "old")
        _rename(self.path, old)
        _rename(staging.tree, self.path)

    def _commit_in_place(self, staging: Staging, document: Mapping[str, Any]) -> None:
        remove_marker(marker_path(self.path))
        old = os.path.join(staging.base, "old")
        os.mkdir(old)
        for name in os.listdir(self.path):
            if name != MARKER_DIR and name not in _FILESYSTEM_NAMES:
                _rename(os.path.join(self.path, name), os.path.join(old, name))
        for name in os.listdir(staging.tree):
            if name != MARKER_DIR:
                _rename(os.path.join(staging.tree, name), os.path.join(self.path, name))
        write_marker(marker_path(self.path), document)


def _rename(src: str, dst: str) -> None:
    try:
        os.rename(src, dst)
    except OSError as exc:
        raise LocalIOError(f"cannot move {src} to {dst}: {exc.strerror}") from None


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise LocalIOError(f"cannot switch {b} to the new tree: {os.strerror(code)}")
