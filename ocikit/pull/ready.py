"""The ready marker, and waiting for it without busy polling.

A pull writes ``DEST/.ocikit/ready.json`` (or a file of the caller's choosing) as its very
last step, atomically (temporary name + ``rename``), so a reader either sees no marker or
a complete one. The marker names the manifest digest, so a waiter can insist on a
particular version and the next pull of the same digest is a no-op.

:func:`wait_ready` is what an application container's entrypoint runs (``ocikit wait``).
On Linux it sleeps in ``select`` on an inotify descriptor watching the marker's directory
and its ancestors (the tree may appear by a rename of DEST itself), re-checking only when
something in those directories changes, plus a slow safety re-check for filesystems whose
changes inotify cannot see (NFS). Elsewhere, or when inotify is unavailable, it polls with
exponential backoff.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import time
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import LocalIOError, WaitTimeoutError

MARKER_DIR = ".ocikit"
MARKER_NAME = "ready.json"
MARKER_SCHEMA = 1

SAFETY_RECHECK = 5.0  # seconds between re-checks while inotify is watching
_BACKOFF_START, _BACKOFF_MAX = 0.02, 1.0

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


def read_marker(dest: str, ready_file: str | None = None) -> dict[str, Any] | None:
    """The marker document, or None when there is none (or it is not ocikit's)."""
    try:
        with open(marker_path(dest, ready_file), "rb") as fh:
            document = json.loads(fh.read(1 << 20))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("digest"), str):
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
    """Write a marker atomically: a reader sees the old state or the complete new one."""
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(tmp, "w") as fh:
            json.dump(dict(document), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise LocalIOError(f"cannot write ready marker {path}: {exc.strerror}") from None


def remove_marker(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LocalIOError(f"cannot remove ready marker {path}: {exc.strerror}") from None


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
