"""The ready marker, and waiting for it without busy polling.

A pull writes ``DEST/.ocikit/ready.json`` (or a file of the caller's choosing) as its very
last step, atomically (temporary name + ``rename``), so a reader either sees no marker or
a complete one. The marker names the manifest digest, so a waiter can insist on a
particular version and the next pull of the same digest is a no-op.

``DEST/.ocikit`` is only ever opened as a real directory (``O_NOFOLLOW | O_DIRECTORY``
relative to DEST's descriptor), and every document in it is opened with ``O_NOFOLLOW``: a
symlink there is an error for a writer and "no marker" for a reader, never a way out of
DEST. A marker names the inode of the directory it was written for; a marker found in a
directory with another inode (planted or copied from a sibling DEST) does not count.
``owned.json`` beside it is the ownership record (see :mod:`.destination`).

:func:`wait_ready` is what an application container's entrypoint runs (``ocikit wait``).
On Linux it sleeps in ``select`` on an inotify descriptor watching the marker's directory
and its ancestors (the tree may appear by a rename of DEST itself), re-checking only when
something in those directories changes, plus a slow safety re-check for filesystems whose
changes inotify cannot see (NFS). Elsewhere, or when inotify is unavailable, it polls with
exponential backoff.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import select
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import LocalIOError, UnsafeContentError, WaitTimeoutError
from ..extract.rules import RESERVED_TOP

MARKER_DIR = RESERVED_TOP  # the name no artifact may write (extract/rules.py decides that)
MARKER_NAME = "ready.json"
OWNER_NAME = "owned.json"
MARKER_SCHEMA = 1

SAFETY_RECHECK = 5.0  # seconds between re-checks while inotify is watching
_BACKOFF_START, _BACKOFF_MAX = 0.02, 1.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_DOCUMENT = 1 << 20
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a fifo planted there cannot block

# <sys/inotify.h>
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_ONLYDIR = 0x400, 0x800, 0x01000000
_WATCH_MASK = (
    _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
    | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR
)


def marker_path(dest: str, ready_file: str | None = None) -> str:
    """Where the marker of ``dest`` lives (``DEST/.ocikit/ready.json`` unless given)."""
    return os.path.abspath(ready_file) if ready_file else os.path.join(os.path.abspath(dest), MARKER_DIR, MARKER_NAME)


# -- DEST/.ocikit, never through a symlink ----------------------------------------------------


@contextlib.contextmanager
def marker_dir(tree: str, create: bool = False) -> Iterator[tuple[int, int] | None]:
    """``(descriptor of tree/.ocikit, inode of tree)``, or None when either is absent.

    ``.ocikit`` is opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to the tree's descriptor:
    when it is a symlink (or anything but a directory) this raises instead of following it,
    so no marker is ever read from or written to a place outside the tree.
    """
    try:
        tree_fd = os.open(tree, _DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        if create:
            raise LocalIOError(f"cannot write the marker of {tree}: it is not a directory") from None
        yield None
        return
    except OSError as exc:
        raise LocalIOError(f"cannot open {tree}: {exc.strerror}") from None
    try:
        fd = _open_marker_dir(tree_fd, tree, create)
        if fd is None:
            yield None
            return
        try:
            yield fd, os.fstat(tree_fd).st_ino
        finally:
            os.close(fd)
    finally:
        os.close(tree_fd)


def _open_marker_dir(tree_fd: int, tree: str, create: bool) -> int | None:
    if create:
        try:
            os.mkdir(MARKER_DIR, 0o755, dir_fd=tree_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise LocalIOError(f"cannot create {os.path.join(tree, MARKER_DIR)}: {exc.strerror}") from None
    try:
        return os.open(MARKER_DIR, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=tree_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeContentError(
                os.path.join(tree, MARKER_DIR), "reserved name (not a directory: a symlink is never followed)"
            ) from None
        raise LocalIOError(f"cannot open {os.path.join(tree, MARKER_DIR)}: {exc.strerror}") from None


def check_marker_dir(tree: str) -> None:
    """Raise unless ``tree/.ocikit`` is absent or a real directory."""
    with marker_dir(tree):
        pass


def read_document(tree: str, name: str) -> dict[str, Any] | None:
    """The JSON object ``tree/.ocikit/<name>``; None when absent, unreadable, a symlink or not JSON."""
    try:
        with marker_dir(tree) as opened:
            if opened is None:
                return None
            return _load(lambda: os.open(name, _READ_FLAGS, dir_fd=opened[0]))
    except (UnsafeContentError, LocalIOError):
        return None


def write_document(tree: str, name: str, document: Mapping[str, Any], *, identify: bool = False) -> None:
    """Write ``tree/.ocikit/<name>`` atomically, never through a symlink; ``identify`` records the
    tree's inode as ``destInode`` (the directory the document speaks for: see :func:`read_marker`)."""
    with marker_dir(tree, create=True) as opened:
        assert opened is not None
        fd, inode = opened
        content = dict(document)
        if identify:
            content["destInode"] = inode
        _write_at(fd, name, content, os.path.join(tree, MARKER_DIR, name))


def remove_document(tree: str, name: str) -> None:
    with marker_dir(tree) as opened:
        if opened is None:
            return
        try:
            os.unlink(name, dir_fd=opened[0])
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LocalIOError(f"cannot remove {os.path.join(tree, MARKER_DIR, name)}: {exc.strerror}") from None


# -- the ready marker ----------------------------------------------------------------------------


def read_marker(dest: str, ready_file: str | None = None) -> dict[str, Any] | None:
    """The marker document, or None when there is none (or it is not ocikit's, or not DEST's).

    A marker inside DEST names the inode of the directory it was written for (``destInode``):
    one that names another directory — copied or planted from a sibling DEST — does not make
    DEST ready.
    """
    if ready_file:
        document = _load(lambda: os.open(os.path.abspath(ready_file), _READ_FLAGS))
    else:
        document = _read_own_marker(os.path.abspath(dest))
    if document is None or not isinstance(document.get("digest"), str):
        return None
    return document


def _read_own_marker(dest: str) -> dict[str, Any] | None:
    try:
        with marker_dir(dest) as opened:
            if opened is None:
                return None
            fd, inode = opened
            document = _load(lambda: os.open(MARKER_NAME, _READ_FLAGS, dir_fd=fd))
    except (UnsafeContentError, LocalIOError):
        return None
    if document is not None and document.get("destInode", inode) != inode:
        return None
    return document


def marker_matches(document: Mapping[str, Any] | None, digest: str | None = None) -> bool:
    """Whether a marker says ready (for ``digest``: the manifest's or the reference's digest)."""
    if document is None:
        return False
    return digest is None or digest in (document.get("digest"), document.get("referenceDigest"))


def is_ready(dest: str, digest: str | None = None, ready_file: str | None = None) -> bool:
    return marker_matches(read_marker(dest, ready_file), digest)


def write_marker(path: str, document: Mapping[str, Any]) -> None:
    """Write a marker file of the caller's choosing (``--ready-file``) atomically: a reader sees
    the old state or the complete new one; a symlink at ``path`` is replaced, never followed."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        raise LocalIOError(f"cannot write ready marker {path}: {exc.strerror}") from None
    try:
        _write_at(fd, os.path.basename(path), dict(document), path)
    finally:
        os.close(fd)


def remove_marker(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LocalIOError(f"cannot remove ready marker {path}: {exc.strerror}") from None


def _write_at(dir_fd: int, name: str, document: Mapping[str, Any], label: str) -> None:
    tmp = f".{name}.{uuid.uuid4().hex}.tmp"
    data = (json.dumps(dict(document), indent=2, sort_keys=True) + "\n").encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise LocalIOError(f"cannot write ready marker {label}: {exc.strerror}") from None


def _load(opener: Callable[[], int]) -> dict[str, Any] | None:
    try:
        fd = opener()
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            document = json.loads(fh.read(_MAX_DOCUMENT))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def wait_ready(
    dest: str,
    timeout: float | None = None,
    digest: str | None = None,
    ready_file: str | None = None,
) -> dict[str, Any]:
    """Block until ``dest`` is ready (for ``digest`` if given); return the marker document.

    ``timeout`` in seconds (None waits forever) raises :class:`WaitTimeoutError` with a
    message saying what was found instead.
    """
    path = marker_path(dest, ready_file)
    deadline = None if timeout is None else time.monotonic() + timeout
    watcher = _Inotify.create()
    delay = _BACKOFF_START
    try:
        while True:
            if watcher is not None:
                watcher.watch_chain(path, stop=os.path.dirname(os.path.abspath(dest)))
            document = read_marker(dest, ready_file)  # after the watches exist: no missed event
            if marker_matches(document, digest):
                assert document is not None
                return document
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(_timeout_message(dest, path, timeout, digest, document))
            if watcher is not None:
                pause = SAFETY_RECHECK if remaining is None else min(SAFETY_RECHECK, remaining)
                watcher.wait(pause)
            else:
                time.sleep(delay if remaining is None else min(delay, remaining))
                delay = min(delay * 2, _BACKOFF_MAX)
    finally:
        if watcher is not None:
            watcher.close()


def _timeout_message(
    dest: str, path: str, timeout: float | None, digest: str | None, document: Mapping[str, Any] | None
) -> str:
    found = "no ready marker" if document is None else f"the marker names {document.get('digest')}"
    wanted = f" for {digest}" if digest else ""
    return f"{dest} is not ready{wanted} after {timeout:g} s ({found} at {path})"


class _Inotify:
    """Just enough inotify(7) through ctypes: watch directories, sleep until one changes."""

    def __init__(self, libc: Any, fd: int) -> None:
        self._libc = libc
        self._fd = fd
        self._watches: dict[str, int] = {}

    @classmethod
    def create(cls) -> "_Inotify | None":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init = libc.inotify_init1
        except (OSError, AttributeError):
            return None
        fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        return cls(libc, fd) if fd >= 0 else None

    def watch_chain(self, marker: str, stop: str) -> None:
        """Watch the marker's directory and its ancestors up to ``stop`` (and the first existing one)."""
        wanted: list[str] = []
        directory = os.path.dirname(marker)
        while True:
            wanted.append(directory)
            parent = os.path.dirname(directory)
            exists = os.path.isdir(directory)
            at_stop = directory == stop or len(directory) <= len(stop)
            if parent == directory or (at_stop and exists):
                break
            directory = parent
        for path in wanted:
            if path in self._watches:
                continue
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _WATCH_MASK)
            if wd >= 0:
                self._watches[path] = wd
        for path in [p for p in self._watches if p not in wanted]:
            self._libc.inotify_rm_watch(self._fd, self._watches.pop(path))

    def wait(self, timeout: float) -> None:
        readable, _, _ = select.select([self._fd], [], [], max(timeout, 0))
        if readable:
            self._drain()
            # A watched directory replaced by a rename keeps its old inode's watch: rebuild them.
            for wd in self._watches.values():
                self._libc.inotify_rm_watch(self._fd, wd)
            self._watches.clear()

    def _drain(self) -> None:
        while True:
            try:
                if not os.read(self._fd, 65536):
                    return
            except BlockingIOError:
                return

    def close(self) -> None:
        os.close(self._fd)
