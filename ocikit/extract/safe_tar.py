"""Safe streaming extraction of a tar stream into a directory that nothing may escape.

The destination is often a shared host path, so every rule below is enforced, and each
violation raises :class:`~ocikit.errors.UnsafeContentError` naming the entry and the rule
(the rule strings are stable; tests and callers match on them):

``absolute path`` / ``path traversal``
    names are relative and never contain ``..``.
``path through symlink``
    nothing is ever written through a symlink: every directory is opened relative to its
    parent's descriptor with ``O_NOFOLLOW | O_DIRECTORY`` and files are created with
    ``O_CREAT | O_EXCL | O_NOFOLLOW``, so a symlink planted by an earlier entry (or a
    racing process) makes the write fail instead of landing outside.
``symlink target outside destination``
    a relative target must stay inside the tree; an absolute one only inside one of the
    policy's ``symlink_roots`` (a view's own root, which relocation rewrites). Container
    image layers (``rootfs``) keep absolute targets: they are relative to the rootfs.
``hardlink target outside destination`` / ``hardlink target missing``
    a hardlink names a regular file this archive already extracted, reached without
    following symlinks.
``device node`` / ``fifo``
    refused unless ``allow_devices``.
``outside title directory``
    ORAS directory layers must keep every entry under ``<title>/``.
``reserved name``
    ``.ocikit/`` at the top is ocikit's marker directory; an artifact cannot spoof it.
``unsupported entry type`` / ``sparse file``, ``size limit exceeded`` (see decompress).

setuid/setgid/sticky bits are dropped unless ``preserve_special_modes``. Ownership is not
restored (a pull runs unprivileged and files belong to the puller). Directory modes and
times are applied at the very end (:func:`apply_directory_records`), deepest first, so a
read-only directory can still be filled and its mtime is not disturbed by its children.

Small files go to a :class:`~ocikit.extract.writer.WriterPool`; large ones are written by
the parsing thread as their data streams in, so memory stays bounded.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from dataclasses import dataclass, field, fields

from ..errors import InvalidContentError, LocalIOError, UnsafeContentError
from ..formats.tar.reader import (
    BLOCKDEV,
    CHARDEV,
    DIRECTORY,
    FIFO,
    FILE,
    GLOBAL,
    HARDLINK,
    SYMLINK,
    TarEntry,
    TarStream,
)
from .rules import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    admit_special,
    check_declared_size,
    check_hardlink_name,
    check_not_a_listed_directory,
    check_reserved,
    check_side_by_side_directory,
    check_symlink_entry,
    check_whiteout,
    clamp_mtime_ns,
    kept_mode_bits,
    normalize_name,
)
from .writer import BATCH_BYTES, BATCH_FILES, Job, JobTracker, WriterPool, create_file, write_all

LARGE_FILE = 8 << 20  # files above this are streamed by the parser thread, not queued
MAX_DIR_FDS = 256  # open directory descriptors per extraction before they are recycled

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ExtractionCancelled(Exception):
    """Another layer of the same pull failed; this one stopped (the other error is reported)."""


@dataclass(frozen=True)
class ExtractPolicy:
    """What an extraction allows; the defaults are the safe ones."""

    allow_devices: bool = False
    preserve_special_modes: bool = False
    required_prefix: str = ""  # ORAS: every entry must lie under this directory (the title)
    strip_prefix: bool = False  # ...and is extracted without it (a view layer packed ORAS-style)
    external_symlinks: frozenset[str] = frozenset()  # paths the publisher declared as pointing outside
    symlink_roots: tuple[str, ...] = ()  # absolute symlink targets under these are inside the tree
    rootfs: bool = False  # an image layer: whiteouts are recorded, absolute symlinks are rootfs-relative
    trailing_limit: int = 1 << 20  # bytes allowed after the end-of-archive marker
    max_size: int | None = None  # an entry declaring more is refused before any byte is read


@dataclass
class DirRecord:
    path: str
    mode: int
    mtime_ns: int


@dataclass
class Counts:
    """What an extraction wrote and read; a layer's outcome and a pull's totals both carry them."""

    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    special: int = 0
    bytes: int = 0  # file contents written
    compressed_bytes: int = 0  # blob bytes read
    uncompressed_bytes: int = 0  # tar stream bytes

    def add(self, other: "Counts") -> None:
        for counter in fields(Counts):
            setattr(self, counter.name, getattr(self, counter.name) + getattr(other, counter.name))


@dataclass
class LayerOutcome(Counts):
    """What one layer's extraction produced (counts, and what the merge step must apply)."""

    dir_records: list[DirRecord] = field(default_factory=list)
    whiteouts: list[str] = field(default_factory=list)  # rootfs: paths hidden in lower layers
    opaque: list[str] = field(default_factory=list)  # rootfs: directories whose lower content is hidden
    lower_links: list[tuple[str, str]] = field(default_factory=list)  # rootfs: (link, target in a lower layer)
    links: list[tuple[str, str]] = field(default_factory=list)  # symlinks to verify once the tree is complete
    skipped: list[str] = field(default_factory=list)  # entries left out on purpose (devices in a rootfs)


class SafeExtractor:
    """Extract tar streams into the directory open as ``root_fd`` under an :class:`ExtractPolicy`."""

    def __init__(self, root_fd: int, policy: ExtractPolicy, pool: WriterPool, label: str = "") -> None:
        self.root_fd = root_fd
        self.policy = policy
        self.pool = pool
        self.label = label
        self.tracker = JobTracker()
        self.outcome = LayerOutcome()
        self._dirs: dict[str, int] = {}
        self._seen: set[str] = set()  # non-directory paths this layer created (duplicates replace)
        self._listed_dirs: set[str] = set()  # directory entries of this layer
        self._batch: list[Job] = []
        self._batch_bytes = 0
        self._entry = ""
        self._prefix = policy.required_prefix.strip("/")
        self._prefix_slash = self._prefix + "/"
        self._strip = bool(self._prefix) and policy.strip_prefix
        self._inline = pool.threads == 0  # no writer threads: create files right here
        self._rootfs = policy.rootfs
        self._special_modes = kept_mode_bits(policy.preserve_special_modes)

    # -- public ------------------------------------------------------------------------

    def extract(self, stream: TarStream, cancel: threading.Event | None = None) -> LayerOutcome:
        """Extract every entry; stop early (``ExtractionCancelled``) once ``cancel`` is set."""
        try:
            while (entry := stream.next_entry()) is not None:
                self._entry = entry.name
                self._one(entry, stream)
                if cancel is not None and cancel.is_set():
                    raise ExtractionCancelled(self.label)
            stream.drain(self.policy.trailing_limit)
            self._barrier()
            self._refuse_forward_links()
        finally:
            self._abort_pending()
            self._close_dirs()
        return self.outcome

    def _refuse_forward_links(self) -> None:
        """A hard link deferred to a lower layer whose target this archive wrote only after it
        named a later entry, not a lower layer's file: as without layers, that is refused."""
        for link, target in self.outcome.lower_links:
            if target in self._seen:
                raise UnsafeContentError(link, f"hardlink target missing ({target!r} is not in the archive)")

    # -- dispatch ----------------------------------------------------------------------

    def _one(self, entry: TarEntry, stream: TarStream) -> None:
        if entry.kind is GLOBAL:
            return  # PAX global headers apply to nothing (Go, containerd)
        path = normalize_name(entry.name, entry.name)
        if not path:
            return  # the archive root ("./"): DEST itself
        self._check_location(path)
        if self._strip:
            path = path[len(self._prefix_slash) :]
            if not path:
                return  # the title directory itself: DEST
        check_reserved(path, entry.name)  # after every change to the name, in every mode
        mtime_ns = entry.mtime_ns
        if clamp_mtime_ns(mtime_ns) != mtime_ns:
            entry.mtime, entry.mtime_nanos = 0, 0
        parent, _, base = path.rpartition("/")
        kind = entry.kind
        if self._rootfs and base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, base)
        elif kind == FILE:
            if entry.sparse:
                raise UnsafeContentError(entry.name, "unsupported entry type (sparse file)")
            self._file(entry, stream, path, parent, base)
        elif kind == DIRECTORY:
            self._directory(entry, path, parent, base)
        elif kind == SYMLINK:
            self._symlink(entry, path, parent, base)
        elif kind == HARDLINK:
            self._hardlink(entry, path, parent, base)
        elif kind in (CHARDEV, BLOCKDEV, FIFO):
            self._special(entry, path, parent, base)
        else:
            raise UnsafeContentError(entry.name, f"unsupported entry type {entry.raw_type!r}")

    def _check_location(self, path: str) -> None:
        check_reserved(path, self._entry)
        if self._prefix and path != self._prefix and not path.startswith(self._prefix_slash):
            raise UnsafeContentError(self._entry, f"outside title directory {self._prefix!r}")

    # -- entry kinds -------------------------------------------------------------------

    def _file(self, entry: TarEntry, stream: TarStream, path: str, parent: str, base: str) -> None:
        check_declared_size(entry.size, self.policy.max_size, entry.name)
        mode = entry.mode & self._special_modes
        self._claim(path, parent, base)
        dir_fd = self._dirs.get(parent) or self._dir(parent)
        self.outcome.files += 1
        self.outcome.bytes += entry.size
        if entry.size > LARGE_FILE:
            self._write_large(entry, stream, dir_fd, base, mode)
            return
        pieces = stream.read_data(entry)
        if self._inline:
            try:
                create_file(dir_fd, base, pieces, mode, entry.mtime_ns)
            except OSError as exc:
                raise self.map_error(exc, entry.name) from None
            return
        self._batch.append((dir_fd, base, pieces, mode, entry.mtime_ns, entry.name))
        self._batch_bytes += entry.size
        if len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def _write_large(self, entry: TarEntry, stream: TarStream, dir_fd: int, base: str, mode: int) -> None:
        try:
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise self.map_error(exc, entry.name) from None
        try:
            for piece in stream.iter_data(entry):
                write_all(fd, (piece,))
            os.fchmod(fd, mode)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        except OSError as exc:
            raise self.map_error(exc, entry.name) from None
        finally:
            os.close(fd)

    def _directory(self, entry: TarEntry, path: str, parent: str, base: str) -> None:
        if path in self._seen:
            self._forget_lower_link(path)
        dir_fd = self._dir(parent)
        mode = self._mode(entry.mode)
        try:
            os.mkdir(base, (mode & 0o777) | 0o700, dir_fd=dir_fd)
            self.outcome.directories += 1
        except FileExistsError:
            st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                if path not in self._seen:
                    self._conflict(st)
                check_side_by_side_directory(True, self._rootfs, entry.name)
                self._barrier()
                self._remove(dir_fd, base)
                os.mkdir(base, (mode & 0o777) | 0o700, dir_fd=dir_fd)
                self._seen.discard(path)
        except OSError as exc:
            raise self.map_error(exc, entry.name) from None
        self._listed_dirs.add(path)
        self.outcome.dir_records.append(DirRecord(path, mode, entry.mtime_ns))

    def _symlink(self, entry: TarEntry, path: str, parent: str, base: str) -> None:
        target = entry.linkname
        policy = self.policy
        if check_symlink_entry(path, target, policy.symlink_roots, policy.external_symlinks, self._rootfs, entry.name):
            self.outcome.links.append((path, target))  # resolved against the finished tree
        self._claim(path, parent, base)
        dir_fd = self._dir(parent)
        try:
            os.symlink(entry.linkname, base, dir_fd=dir_fd)
            os.utime(base, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            raise self.map_error(exc, entry.name) from None
        self.outcome.symlinks += 1

    def _hardlink(self, entry: TarEntry, path: str, parent: str, base: str) -> None:
        target = check_hardlink_name(path, entry.linkname, entry.name, self._prefix if self._strip else "")
        self._barrier()  # the target may still be waiting for a writer (hardlinks are rare: cheap)
        self._claim(path, parent, base)
        dir_fd = self._dir(parent)
        target_parent, _, target_base = target.rpartition("/")
        try:
            target_fd = self._dir(target_parent, create=False)
            if not stat.S_ISREG(os.stat(target_base, dir_fd=target_fd, follow_symlinks=False).st_mode):
                raise UnsafeContentError(entry.name, f"hardlink target {target!r} is not a regular file")
            if target not in self._seen:
                # a file another layer of the same tree wrote (a view's layers are extracted side
                # by side): not this archive's, and whether it exists yet is a race
                raise FileNotFoundError(target)
            os.link(target_base, base, src_dir_fd=target_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            if self.policy.rootfs:  # the target lives in a lower layer: linked after the merge
                self._hold_place(dir_fd, base, entry.name)
                self.outcome.lower_links.append((path, target))
                return
            raise UnsafeContentError(entry.name, f"hardlink target missing ({target!r} is not in the archive)") from None
        except PermissionError:
            raise UnsafeContentError(entry.name, "hardlink target outside destination (not a regular file)") from None
        except OSError as exc:
            raise self.map_error(exc, entry.name) from None
        self.outcome.hardlinks += 1

    def _special(self, entry: TarEntry, path: str, parent: str, base: str) -> None:
        if not admit_special(entry.kind == FIFO, self.policy.allow_devices, self._rootfs, entry.name):
            self.outcome.skipped.append(path)
            return
        self._claim(path, parent, base)
        dir_fd = self._dir(parent)
        mode = self._mode(entry.mode) & 0o777
        try:
            if entry.kind == FIFO:
                os.mkfifo(base, mode, dir_fd=dir_fd)
            else:
                kind = stat.S_IFCHR if entry.kind == CHARDEV else stat.S_IFBLK
                os.mknod(base, mode | kind, os.makedev(entry.devmajor, entry.devminor), dir_fd=dir_fd)
            os.chmod(base, mode, dir_fd=dir_fd)  # mknod applies the umask; the archive's mode wins
            os.utime(base, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
        except PermissionError:
            raise LocalIOError(f"cannot create {entry.kind} {entry.name!r}: creating devices needs privileges") from None
        except OSError as exc:
            raise self.map_error(exc, entry.name) from None
        self.outcome.special += 1

    def _whiteout(self, parent: str, base: str) -> None:
        # The directory exists in this layer even if it only hides things, unless the layer
        # itself replaced it by a file or a link (umoci lists the hidden children then too):
        # the whiteouts still apply to the lower layers, which the merge removes anyway.
        if not self._replaced(parent):
            self._dir(parent)
        if base == OPAQUE_MARKER:
            self.outcome.opaque.append(parent)
            return
        hidden = base[len(WHITEOUT_PREFIX) :]
        check_whiteout(hidden, self._entry)
        check_reserved(f"{parent}/{hidden}" if parent else hidden, self._entry)
        self.outcome.whiteouts.append(f"{parent}/{hidden}" if parent else hidden)

    def _replaced(self, directory: str) -> bool:
        """Whether this layer made ``directory`` (or one of its parents) a non-directory."""
        while directory:
            if directory in self._seen:
                return True
            directory = directory.rpartition("/")[0]
        return False

    # -- rules -------------------------------------------------------------------------

    def _mode(self, mode: int) -> int:
        return mode & self._special_modes

    def _claim(self, path: str, parent: str, base: str) -> None:
        """Register a non-directory path; a repeat within the layer replaces the earlier entry."""
        check_not_a_listed_directory(path in self._listed_dirs, self._entry)
        if path in self._seen:
            self._forget_lower_link(path)
            self._barrier()
            self._remove(self._dir(parent), base)
        else:
            self._seen.add(path)

    def _hold_place(self, dir_fd: int, base: str, name: str) -> None:
        """An empty file where a deferred hard link will be: the layer's later entries meet a file
        there, as they would meet the link (nothing is made below it; a later entry replaces it)."""
        try:
            os.close(os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=dir_fd))
        except FileExistsError:  # a directory this layer made there: the link would replace it at the merge
            check_not_a_listed_directory(True, name)
        except OSError as exc:
            raise self.map_error(exc, name) from None

    def _forget_lower_link(self, path: str) -> None:
        """A later entry of the layer replaces ``path``: a hard link deferred there is not made."""
        if self.outcome.lower_links:
            self.outcome.lower_links = [(link, target) for link, target in self.outcome.lower_links if link != path]

    def _remove(self, dir_fd: int, base: str) -> None:
        try:
            st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise InvalidContentError(f"{self._entry!r} replaces a directory of the same layer")
        os.unlink(base, dir_fd=dir_fd)

    def _conflict(self, st: os.stat_result) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeContentError(self._entry, "path through symlink")
        raise InvalidContentError(
            f"{self._entry!r} is provided by more than one layer; layers of a merged artifact must not overlap"
        )

    def map_error(self, exc: OSError, entry: str) -> BaseException:
        """Turn an OSError from a create/link into the rule it broke (or a local I/O error)."""
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return UnsafeContentError(entry, "path through symlink")
        if exc.errno == errno.ENAMETOOLONG:
            return InvalidContentError(f"{entry[:80]!r}…: a name in the archive is too long for this filesystem")
        if exc.errno == errno.EEXIST:
            return InvalidContentError(
                f"{entry!r} is provided by more than one layer; layers of a merged artifact must not overlap"
            )
        return LocalIOError(f"cannot extract {entry!r}: {exc.strerror or exc}")

    # -- directory descriptors -----------------------------------------------------------

    def parent_fd(self, path: str) -> int:
        """The descriptor of ``path``'s parent directory (created if missing), for callers writing one file."""
        self._entry = path
        return self._dir(path.rpartition("/")[0])

    def close(self) -> None:
        self._close_dirs()

    def _dir(self, path: str, create: bool = True) -> int:
        """A descriptor for directory ``path`` (relative to the root), opened without following symlinks.

        Walks down from the deepest cached ancestor, one component at a time (no recursion:
        archives may nest thousands of levels)."""
        fd = self._dirs.get(path)
        if fd is not None:
            return fd
        if not path:
            return self.root_fd
        if len(self._dirs) >= MAX_DIR_FDS:
            self._barrier()
            self._close_dirs()
        parts = path.split("/")
        known = len(parts) - 1
        while known and "/".join(parts[:known]) not in self._dirs:
            known -= 1
        fd = self._dirs["/".join(parts[:known])] if known else self.root_fd
        for depth in range(known, len(parts)):
            fd = self._open_dir(fd, parts[depth], create)
            if len(self._dirs) >= MAX_DIR_FDS:  # keep the descriptors bounded on very deep paths
                self._barrier()
                self._close_dirs()
            self._dirs["/".join(parts[: depth + 1])] = fd
        return fd

    def _open_dir(self, parent_fd: int, base: str, create: bool) -> int:
        for attempt in (0, 1):
            try:
                return os.open(base, _DIR_FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:
                if not create or attempt:
                    raise
                try:
                    os.mkdir(base, 0o755, dir_fd=parent_fd)  # a parent the archive did not list
                    self.outcome.directories += 1  # still a directory of the tree: count it
                except FileExistsError:
                    pass
            except OSError as exc:  # a symlink or a file on the way, a name too long: the archive's fault
                raise self.map_error(exc, self._entry) from None
        raise AssertionError("unreachable")

    def _close_dirs(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    # -- writer pool -------------------------------------------------------------------

    def _flush(self) -> None:
        self.tracker.raise_error()
        if self._batch:
            batch, nbytes = self._batch, self._batch_bytes
            self._batch, self._batch_bytes = [], 0
            self.pool.submit(batch, self.tracker, nbytes, self.map_error)

    def _barrier(self) -> None:
        """Wait until every queued file exists (before links, replacements, closing descriptors)."""
        self._flush()
        self.tracker.wait_idle()

    def _abort_pending(self) -> None:
        """On failure, still wait for queued jobs: they use descriptors that are about to close."""
        self._batch = []
        try:
            self.tracker.wait_idle()
        except BaseException:
            pass


def apply_directory_records(root_fd: int, records: list[DirRecord]) -> None:
    """Set directory modes and times, deepest first (a read-only parent is fixed last).

    Later records for the same path win (a higher layer's directory entry overrides a lower
    one). Each directory is reached through its parent's descriptor without following
    symlinks; one that no longer exists (hidden by a whiteout) is skipped.
    """
    final: dict[str, DirRecord] = {}
    for record in records:
        final[record.path] = record
    parents: dict[str, int] = {}
    try:
        for path in sorted(final, key=lambda p: p.count("/"), reverse=True):
            record = final[path]
            parent, _, name = path.rpartition("/")
            parent_fd = _cached_parent(root_fd, parent, parents)
            if parent_fd is None:
                continue
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_IMODE(st.st_mode) != record.mode:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
                try:
                    os.fchmod(fd, record.mode)
                finally:
                    os.close(fd)
            os.utime(name, ns=(record.mtime_ns, record.mtime_ns), dir_fd=parent_fd, follow_symlinks=False)
    finally:
        for fd in parents.values():
            if fd != root_fd:
                os.close(fd)


def _cached_parent(root_fd: int, path: str, cache: dict[str, int]) -> int | None:
    if not path:
        return root_fd
    if path not in cache:
        if len(cache) >= MAX_DIR_FDS:  # deepest-first order: earlier parents are rarely needed again
            for fd in cache.values():
                os.close(fd)
            cache.clear()
        try:
            cache[path] = _open_path(root_fd, path)
        except (FileNotFoundError, NotADirectoryError):
            return None
    return cache[path]


def _open_path(root_fd: int, path: str) -> int:
    fd = os.dup(root_fd)
    for part in path.split("/"):
        try:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotADirectoryError(path) from None
            raise
        os.close(fd)
        fd = next_fd
    return fd
