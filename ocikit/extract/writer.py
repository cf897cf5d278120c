"""Parallel file creation: the tar parser hands small files to a pool of writer threads.

Creating a file is a handful of system calls (``openat``, ``write``, ``futimens``,
``close``), each of which releases the GIL. While the parser thread decodes the next
headers, writer threads create the files it has already described, so a pull keeps both
cores busy (one more runs decompression). Jobs travel in batches to keep the per-file
queueing cost low, and each extraction tracks its own jobs (:class:`JobTracker`) so it
can wait for them (a *barrier*) before a hardlink, a duplicate name, or closing
directory descriptors. A pool with zero threads runs every job inline.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence

# Per extraction: at most this many bytes of file data waiting for a writer (memory bound).
MAX_PENDING_BYTES = 64 << 20
BATCH_FILES = 64
BATCH_BYTES = 1 << 20

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_umask() -> int:
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


UMASK = _read_umask()
_KEEP_AFTER_UMASK = ~0o777 | UMASK  # mode bits open(2) would lose: set-id/sticky, and what the umask masks


def write_all(fd: int, pieces: Sequence[memoryview | bytes]) -> None:
    """Write every piece (``write`` may write less than asked)."""
    for piece in pieces:
        written = os.write(fd, piece)
        if written != len(piece):
            view = memoryview(piece)[written:]
            while view:
                view = view[os.write(fd, view) :]


def create_file(dir_fd: int, name: str, pieces: Sequence[memoryview | bytes], mode: int, mtime_ns: int) -> None:
    """Create ``name`` in ``dir_fd`` exclusively (never following a symlink), write it, set mode and time."""
    fd = os.open(name, _CREATE_FLAGS, mode & 0o777, dir_fd=dir_fd)
    try:
        if len(pieces) == 1:  # the common case: one piece, usually written by one call
            written = os.write(fd, pieces[0])
            if written != len(pieces[0]):
                write_all(fd, (memoryview(pieces[0])[written:],))
        elif pieces:
            write_all(fd, pieces)
        if mode & _KEEP_AFTER_UMASK:
            os.fchmod(fd, mode)  # after the write: writing clears set-id bits
        os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)


class JobTracker:
    """Jobs of one extraction: counts, bytes in flight, the first error."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0
        self.bytes = 0
        self.error: BaseException | None = None

    def add(self, n: int, nbytes: int) -> None:
        with self._cond:
            while self.bytes and self.bytes + nbytes > MAX_PENDING_BYTES and self.error is None:
                self._cond.wait()
            self.count += n
            self.bytes += nbytes

    def done(self, n: int, nbytes: int, error: BaseException | None = None) -> None:
        with self._cond:
            self.count -= n
            self.bytes -= nbytes
            if error is not None and self.error is None:
                self.error = error
            self._cond.notify_all()

    def wait_idle(self) -> None:
        """Block until every submitted job ran; re-raise the first failure."""
        with self._cond:
            while self.count:
                self._cond.wait()
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


# A job: (dir_fd, name, pieces, mode, mtime_ns, label) -- label names the entry in errors.
Job = tuple[int, str, Sequence[memoryview], int, int, str]
ErrorMapper = Callable[[OSError, str], BaseException]


class WriterPool:
    """A few threads creating files from batches of jobs (zero threads: run inline)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._queue: "queue.SimpleQueue[tuple[list[Job], JobTracker, int, ErrorMapper] | None]" = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"ocikit-writer-{i}", daemon=True) for i in range(threads)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, jobs: list[Job], tracker: JobTracker, nbytes: int, on_error: ErrorMapper) -> None:
        if not jobs:
            return
        if not self.threads:
            _run(jobs, tracker, on_error)
            return
        tracker.add(len(jobs), nbytes)
        self._queue.put((jobs, tracker, nbytes, on_error))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            jobs, tracker, nbytes, on_error = item
            error = None
            if tracker.error is None:
                try:
                    _run(jobs, tracker, on_error)
                except BaseException as exc:  # recorded, re-raised by the extraction's thread
                    error = exc
            tracker.done(len(jobs), nbytes, error)

    def close(self) -> None:
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join()

    def __enter__(self) -> "WriterPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run(jobs: list[Job], tracker: JobTracker, on_error: ErrorMapper) -> None:
    for dir_fd, name, pieces, mode, mtime_ns, label in jobs:
        try:
            create_file(dir_fd, name, pieces, mode, mtime_ns)
        except OSError as exc:
            raise on_error(exc, label) from None


def default_threads() -> int:
    """Writer threads for this machine (``OCIKIT_WRITER_THREADS`` overrides).

    Decompression and hashing keep one core busy per streaming layer, so writers only pay
    off with cores to spare: on two cores the parsing thread writes inline (measured with
    ``benchmarks/pull.py``: extra writer threads only added GIL hand-offs there).
    """
    override = os.environ.get("OCIKIT_WRITER_THREADS", "")
    if override.isdigit():
        return int(override)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(4, cores - 2)

