"""Where a pull lands: who owns DEST, a lock, a staging directory, an atomic switch, the marker.

**Ownership.** DEST is ocikit's only when it holds ``DEST/.ocikit/owned.json``, the record
ocikit writes when it commits a tree (no artifact can write ``.ocikit``: the name is reserved
in every mode, :func:`~ocikit.extract.rules.check_reserved`). This is checked before anything
is created in DEST. An absent or empty DEST is fine (``lost+found`` and a bare ``.ocikit``
do not count as content). A DEST holding anything else is refused with
:class:`~ocikit.errors.AlreadyExistsError` — nothing written, nothing removed — unless the
pull merges (``PullPolicy.merge``, ``--merge``): then the artifact's paths are added or
overwritten (:mod:`.merge`) and nothing else in DEST is touched. A merged DEST's record says
so (``"mode": "merge"``), and a later pull without ``--merge`` refuses it too. A DEST written
by an ocikit older than the record (a valid ``ready.json``, no ``owned.json``) counts as
ocikit's. ``DEST/.ocikit`` itself is only ever opened as a real directory, never through a
symlink (:func:`~ocikit.pull.ready.marker_dir`).

**Lock.** ``.NAME.ocikit-lock`` beside DEST when the parent is writable (where no artifact can
reach it), else ``DEST/.ocikit/lock``; either is opened with ``O_NOFOLLOW``.

**Normal case:** DEST's parent is writable and on the same filesystem, so the new tree is
built in ``.<name>.ocikit-staging-<id>/tree`` beside DEST with its marker already inside,
then switched in with one ``renameat2(RENAME_EXCHANGE)`` (or two renames where the
filesystem lacks it) — DEST is either the old complete tree or the new complete tree.

**In-place case:** DEST is a mount point (a Kubernetes ``emptyDir`` is one; bind mounts are
found in ``/proc/self/mountinfo``), which cannot be renamed, and its parent is usually another
filesystem, or DEST's parent is not writable. The staging directory then lives inside, at
``DEST/.ocikit/staging-<id>``; when it is complete the marker is removed, the old top-level
entries (ocikit's, as the ownership check proved) are moved aside, the new ones moved in
(renames on one filesystem) and the marker is written last.

Either way a pull killed at any moment leaves no marker for a tree it did not finish:
markers are only written after the tree is complete. Stale staging directories of killed
pulls are removed by the next pull (it holds the lock, so nobody else is using them), at
any depth (:func:`~ocikit.extract.whiteout.remove_tree` is iterative).
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
from .merge import check_mergeable, merge_into
from .policy import PullPolicy
from .ready import (
    MARKER_DIR,
    MARKER_NAME,
    OWNER_NAME,
    check_marker_dir,
    marker_dir,
    read_document,
    read_marker,
    remove_document,
    remove_marker,
    write_document,
    write_marker,
)

_RENAME_EXCHANGE = 2
# Present on a freshly formatted ext4 volume (a PersistentVolume): not content, never moved.
_FILESYSTEM_NAMES = frozenset({"lost+found"})
_AT_FDCWD = -100
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
MODE_REPLACE, MODE_MERGE = "replace", "merge"


@dataclass(frozen=True)
class Staging:
    base: str  # removed after commit or abort
    tree: str  # the new tree, filled by the caller
    work: str  # scratch space on the same filesystem (image layer directories)


class Destination:
    """A pull's target directory and, optionally, an extra ready file elsewhere.

    ``merge``: DEST may hold files ocikit did not write; the artifact's paths are added
    beside them and nothing else is removed.
    """

    def __init__(self, dest: str, ready_file: str | None = None, merge: bool = False) -> None:
        self.path = os.path.abspath(dest)
        self.parent, self.name = os.path.split(self.path)
        if not self.name:
            raise LocalIOError(f"cannot pull into {dest!r}: name a directory")
        self.ready_file = os.path.abspath(ready_file) if ready_file else None
        self.merge = merge
        self.parent_writable = not os.path.isdir(self.parent) or os.access(self.parent, os.W_OK)  # absent: created
        self.in_place = os.path.isdir(self.path) and (is_mount_point(self.path) or not self.parent_writable)

    # -- state ---------------------------------------------------------------------------

    def marker(self) -> dict[str, Any] | None:
        """The marker proving DEST complete (the extra ready file too, when one is configured)."""
        inside = read_marker(self.path)
        if inside is None or self.ready_file is None:
            return inside
        outside = read_marker(self.path, self.ready_file)
        return inside if outside is not None and outside.get("digest") == inside.get("digest") else None

    def ready_with(self, digests: set[str], policy: PullPolicy) -> bool:
        """Whether DEST is ready with one of ``digests``, built under ``policy``'s tree key and
        relocation choice (a tree built more permissively, or as another subset, is not it)."""
        marker = self.marker()
        if marker is None or marker.get("treeKey") != policy.tree_key() or marker.get("relocate") != policy.relocate:
            return False
        return bool(digests & {marker.get("digest"), marker.get("referenceDigest")})

    def check_ownership(self) -> None:
        """Refuse a DEST that holds files ocikit did not write (unless merging).

        Runs before anything is created in DEST, and again under the lock.
        """
        try:
            names = set(os.listdir(self.path))
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise AlreadyExistsError(f"{self.path} exists and is not a directory") from None
        except OSError as exc:
            raise LocalIOError(f"cannot read {self.path}: {exc.strerror}") from None
        if MARKER_DIR in names:
            check_marker_dir(self.path)  # a symlink there is never followed: an error
        if self.merge or not names - _FILESYSTEM_NAMES - {MARKER_DIR} or self.owner_mode() == MODE_REPLACE:
            return
        raise AlreadyExistsError(
            f"{self.path} holds files ocikit did not write (no {MARKER_DIR}/{OWNER_NAME}); refusing to replace "
            "them: empty it, pick another DEST, or pass --merge to add the artifact's files beside them"
        )

    def owner_mode(self) -> str:
        """``replace`` when DEST is wholly ocikit's, ``merge`` when ocikit merged into it, else ""."""
        record = read_document(self.path, OWNER_NAME)
        if record is not None:
            mode = record.get("mode")
            return mode if record.get("owner") == "ocikit" and mode in (MODE_REPLACE, MODE_MERGE) else ""
        return MODE_REPLACE if read_marker(self.path) is not None else ""  # written before owned.json existed

    # -- lock and staging --------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock for this DEST across processes (flock; released if the process dies)."""
        try:
            fd = self._open_lock()
        except LocalIOError:
            raise
        except OSError as exc:
            raise LocalIOError(f"cannot lock {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _open_lock(self) -> int:
        if self.parent_writable:
            os.makedirs(self.parent, exist_ok=True)
            return os.open(os.path.join(self.parent, f".{self.name}.ocikit-lock"), _LOCK_FLAGS, 0o644)
        with marker_dir(self.path, create=True) as opened:
            assert opened is not None
            return os.open("lock", _LOCK_FLAGS, 0o644, dir_fd=opened[0])

    def new_staging(self) -> Staging:
        """A fresh staging directory on DEST's filesystem (stale ones of killed pulls are removed)."""
        if self.in_place:
            with marker_dir(self.path, create=True):
                pass  # DEST/.ocikit exists and is a real directory
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
        """Switch the complete staged tree in (or merge it), then mark it ready (inside, and the extra file)."""
        merging = self.merge and os.path.lexists(self.path)
        owner = {
            "schemaVersion": 1, "owner": "ocikit", "dest": self.path,
            "mode": MODE_MERGE if merging else MODE_REPLACE, "digest": document.get("digest"),
        }
        document = {**document, "dest": self.path}
        if self.ready_file:
            remove_marker(self.ready_file)  # the old tree stops being "ready" before it changes
        try:
            if merging:
                self._commit_merge(staging, document, owner)
            elif self.in_place:
                self._commit_in_place(staging, document, owner)
            else:
                write_document(staging.tree, OWNER_NAME, owner)
                write_document(staging.tree, MARKER_NAME, document, identify=True)
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

    def _commit_in_place(self, staging: Staging, document: Mapping[str, Any], owner: Mapping[str, Any]) -> None:
        remove_document(self.path, MARKER_NAME)
        old = os.path.join(staging.base, "old")
        os.mkdir(old)
        for name in os.listdir(self.path):
            if name != MARKER_DIR and name not in _FILESYSTEM_NAMES:
                _rename(os.path.join(self.path, name), os.path.join(old, name))
        for name in os.listdir(staging.tree):
            if name != MARKER_DIR:
                _rename(os.path.join(staging.tree, name), os.path.join(self.path, name))
        self._mark(document, owner)

    def _commit_merge(self, staging: Staging, document: Mapping[str, Any], owner: Mapping[str, Any]) -> None:
        skip = frozenset({MARKER_DIR})
        check_mergeable(staging.tree, self.path, skip)  # before anything in DEST changes
        remove_document(self.path, MARKER_NAME)
        merge_into(staging.tree, self.path, skip)
        self._mark(document, owner)

    def _mark(self, document: Mapping[str, Any], owner: Mapping[str, Any]) -> None:
        write_document(self.path, OWNER_NAME, owner)
        write_document(self.path, MARKER_NAME, document, identify=True)


def is_mount_point(path: str) -> bool:
    """Whether ``path`` is a mount point, bind mounts of the same filesystem included."""
    if os.path.ismount(path):
        return True
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(b" ")
        if len(fields) > 4 and _unescape(fields[4]) == real:
            return True
    return False


def _unescape(field: bytes) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i : i + 1] == b"\\" and field[i + 1 : i + 4].isdigit():
            out.append(int(field[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


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
