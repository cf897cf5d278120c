"""Write files fetched through zTOCs: one file (get-file) or a matching subtree (pull --include).

Safety rules, because layer contents are untrusted:

* entry names are normalised; a name that climbs out (``..``) is refused;
* nothing is written through a symlink: parent directories are created one by one and
  checked with ``lstat``; files are written to a temporary name in their directory and
  renamed into place, so an error leaves no partial file at the target path;
* symlinks are created only when their target stays inside the extracted tree
  (``..`` escapes are refused with UnsafeContentError; absolute targets too, unless the
  caller extracts a container image, where they are relative to the rootfs);
* hard links are made to files extracted in the same call, or get their own copy.

Devices and FIFOs are not created (counted as skipped): they need privileges and have no
place in a software tree.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from ..content.base import Store
from ..errors import InvalidContentError, LocalIOError, UnsafeContentError, UnsupportedError
from ..progress import NULL_PROGRESS, Progress
from ..spec.descriptor import Descriptor, Platform
from .fetch import FetchStats, LayerReader, Want
from .image import ImageZtocs, load_image_ztocs
from .toc import FileMetadata
from .view import ImageTree, Node, is_unsafe, normalize


@dataclass
class FileResult:
    """What ``get-file`` fetched."""

    path: str  # as asked
    resolved: str  # after symlinks inside the image
    output: str
    size: int
    mode: int
    layer: str
    layer_size: int
    bytes_fetched: int
    spans: list[int]
    built_ztocs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class ExtractReport:
    """What ``extract_matching`` wrote and what it cost."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    skipped: list[str] = field(default_factory=list)
    bytes_written: int = 0
    stats: FetchStats = field(default_factory=FetchStats)
    built_ztocs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k != "stats"}
        out.update(bytes_fetched=self.stats.bytes_fetched, spans=self.stats.spans, requests=self.stats.requests)
        return out


# -- one file --------------------------------------------------------------------------


def stream_file(
    store: Store,
    image: ImageZtocs,
    path: str,
    write: Callable[[bytes], None],
) -> tuple[Node, FileMetadata, FetchStats]:
    """Fetch a regular file (following symlinks and hard links) and pass its bytes to ``write``."""
    tree = ImageTree(image.entries())
    node = tree.lookup(path)
    if node.entry.type not in ("reg", "hardlink"):
        raise UnsupportedError(f"{path!r} is a {node.entry.type}, not a regular file")
    data = tree.data_entry(node)
    reader = LayerReader(store, image.layers[node.layer], image.ztocs[node.layer])
    reader.read([Want(data.offset, data.size, write)])
    return node, data, reader.stats


def fetch_file(
    store: Store,
    manifest_desc: Descriptor,
    path: str,
    output: str,
    platform: Platform | None = None,
    progress: Progress = NULL_PROGRESS,
) -> FileResult:
    """Fetch ``path`` from the image into ``output`` (atomically, with the recorded mode)."""
    image = load_image_ztocs(store, manifest_desc, platform, progress)
    with _AtomicFile(output) as out:
        node, data, stats = stream_file(store, image, path, out.write)
        if out.written != data.size:
            raise InvalidContentError(f"{path!r}: got {out.written} bytes, the TOC says {data.size}")
        out.commit(data.mode, data.mod_time)
    layer = image.layers[node.layer]
    return FileResult(
        path, node.path, output, data.size, data.mode & 0o7777, layer.digest, layer.size,
        stats.bytes_fetched, stats.span_ids, image.built,
    )


class _AtomicFile:
    """A temporary file beside ``target`` that becomes ``target`` only on :meth:`commit`."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.written = 0
        self._fh: BinaryIO | None = None
        self._tmp = ""

    def __enter__(self) -> "_AtomicFile":
        directory = os.path.dirname(os.path.abspath(self.target))
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.target)}.", suffix=".ocikit-tmp",
                                             dir=directory)
        except OSError as exc:
            raise LocalIOError(f"cannot write in {directory}: {exc.strerror}") from None
        self._fh = os.fdopen(fd, "wb")
        return self

    def write(self, data: bytes) -> None:
        assert self._fh is not None
        self._fh.write(data)
        self.written += len(data)

    def commit(self, mode: int, mod_time: str) -> None:
        assert self._fh is not None
        os.fchmod(self._fh.fileno(), mode & 0o7777)
        self._fh.close()
        _set_mtime(self._tmp, mod_time)
        os.replace(self._tmp, self.target)
        self._tmp = ""

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        if self._tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)


def _set_mtime(path: str, mod_time: str) -> None:
    if not mod_time:
        return
    text = mod_time.replace("Z", "+00:00")
    if "." in text:  # Python's parser takes at most 6 fraction digits
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits):]}"
    with contextlib.suppress(ValueError, OSError, OverflowError):
        stamp = datetime.fromisoformat(text).timestamp()
        os.utime(path, (stamp, stamp), follow_symlinks=False)


# -- a matching subtree ----------------------------------------------------------------


def matches(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` or one of its parent directories matches a glob."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pattern) for pattern in patterns for p in prefixes)


def extract_matching(
    store: Store,
    manifest_desc: Descriptor,
    patterns: list[str],
    dest_dir: str,
    progress: Progress | None = None,
    *,
    platform: "Platform | str | None" = None,
    absolute_symlinks: bool = False,
) -> ExtractReport:
    """Extract the entries matching any glob (and everything under matching directories).

    Only the spans holding the selected files are fetched. Patterns are matched against
    root-relative paths (``usr/lib/*.so``; a leading ``/`` or ``./`` is ignored).
    ``absolute_symlinks`` keeps absolute symlink targets as they are (container image
    layers, where they are relative to the rootfs); nothing is ever written through them.
    """
    progress = progress or NULL_PROGRESS
    wanted_platform = Platform.parse(platform) if isinstance(platform, str) else platform
    image = load_image_ztocs(store, manifest_desc, wanted_platform, progress)
    tree = ImageTree(image.entries())
    wanted = [normalize(p) for p in patterns if normalize(p)]
    selected = sorted(path for path in tree.nodes if matches(path, wanted))
    report = ExtractReport(built_ztocs=image.built)
    for path in selected:
        if is_unsafe(path):
            raise UnsafeContentError(path, "entry name climbs out of the extraction directory")
    writer = _TreeWriter(os.path.abspath(dest_dir), tree, report, progress, absolute_symlinks)
    writer.write(selected, image, store)
    return report


class _TreeWriter:
    def __init__(
        self, root: str, tree: ImageTree, report: ExtractReport, progress: Progress, absolute_symlinks: bool = False
    ) -> None:
        self.root = root
        self.absolute_symlinks = absolute_symlinks
        self.tree = tree
        self.report = report
        self.progress = progress
        self.dir_modes: list[tuple[str, FileMetadata]] = []

    def write(self, selected: list[str], image: ImageZtocs, store: Store) -> None:
        os.makedirs(self.root, exist_ok=True)
        nodes = [self.tree.nodes[p] for p in selected]
        files: dict[int, list[tuple[str, FileMetadata]]] = {}
        links: list[tuple[str, Node]] = []
        selected_set = set(selected)
        for node in nodes:
            kind = node.entry.type
            if kind == "dir":
                self._mkdirs(self._target(node.path))
                self.dir_modes.append((self._target(node.path), node.entry))
                self.report.dirs += 1
            elif kind == "reg" or (kind == "hardlink" and normalize(node.entry.linkname) not in selected_set):
                files.setdefault(node.layer, []).append((self._target(node.path), self.tree.data_entry(node)))
            elif kind in ("hardlink", "symlink"):
                links.append((self._target(node.path), node))
            else:
                self.report.skipped.append(node.path)
        total = sum(e.size for group in files.values() for _, e in group)
        self.progress.start("extract", "extract", total)
        for layer, group in files.items():
            self._write_files(store, image.layers[layer], image.ztocs[layer], group)
        for target, node in links:
            self._link(target, node)
        for target, entry in sorted(self.dir_modes, key=lambda d: d[0].count("/"), reverse=True):
            os.chmod(target, entry.mode & 0o7777 | 0o700)
            _set_mtime(target, entry.mod_time)
        self.progress.finish("extract")

    def _target(self, path: str) -> str:
        """The on-disk path: parents resolved through symlinks inside the image."""
        parent, base = posixpath.split(path)
        real_parent = self.tree.resolve(parent) if parent else ""
        if is_unsafe(real_parent):
            raise UnsafeContentError(path, "parent directory resolves outside the extraction directory")
        return os.path.join(self.root, real_parent, base) if real_parent else os.path.join(self.root, base)

    def _mkdirs(self, directory: str) -> None:
        rel = os.path.relpath(directory, self.root)
        current = self.root
        for part in [] if rel == "." else rel.split(os.sep):
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current, 0o755)
                continue
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
                raise UnsafeContentError(rel, f"{current} exists and is not a directory")

    def _write_files(self, store: Store, layer: Descriptor, ztoc, group: list[tuple[str, FileMetadata]]) -> None:  # type: ignore[no-untyped-def]
        sinks = []
        wants = []
        for target, entry in group:
            self._mkdirs(os.path.dirname(target))
            sink = _FileSink(target, entry, self)
            sinks.append(sink)
            if entry.size:
                wants.append(Want(entry.offset, entry.size, sink.write))
            else:
                sink.finish()
        reader = LayerReader(store, layer, ztoc)
        try:
            reader.read(wants)
        finally:
            for sink in sinks:
                sink.discard()
            self.report.stats.add(reader.stats)
        unfinished = [s.target for s in sinks if not s.done]
        if unfinished:
            raise InvalidContentError(f"{len(unfinished)} files were not complete after reading their spans")

    def _link(self, target: str, node: Node) -> None:
        self._mkdirs(os.path.dirname(target))
        entry = node.entry
        tmp = f"{target}.ocikit-link-tmp"
        if entry.type == "hardlink":
            source = self._target(normalize(entry.linkname))
            os.link(source, tmp)
            self.report.hardlinks += 1
        else:
            link = entry.linkname
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(node.path), link))
            escapes = not self.absolute_symlinks if link.startswith("/") else is_unsafe(resolved)
            if escapes:
                raise UnsafeContentError(node.path, f"symlink target {link!r} points outside the extraction directory")
            os.symlink(link, tmp)
            self.report.symlinks += 1
        os.replace(tmp, target)


class _FileSink:
    """Receives one file's bytes in order; renames the temp file into place when complete."""

    def __init__(self, target: str, entry: FileMetadata, writer: _TreeWriter) -> None:
        self.target = target
        self.entry = entry
        self.writer = writer
        self.file = _AtomicFile(target)
        self.done = False
        self._open = False

    def write(self, data: bytes) -> None:
        if not self._open:
            self.file.__enter__()
            self._open = True
        self.file.write(data)
        self.writer.progress.advance("extract", len(data))
        if self.file.written == self.entry.size:
            self.finish()

    def finish(self) -> None:
        if not self._open:
            self.file.__enter__()
            self._open = True
        self.file.commit(self.entry.mode, self.entry.mod_time)
        self.file.__exit__(None, None, None)
        self.done = True
        self.writer.report.files += 1
        self.writer.report.bytes_written += self.entry.size

    def discard(self) -> None:
        if self._open and not self.done:
            self.file.__exit__(None, None, None)
