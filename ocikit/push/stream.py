"""Read a layer's files into its tar stream, cut into frames, with relocation applied.

**Frame cut rule "ocikit-frames-v1"** (it determines the compressed layer's digest, so it
never changes without a new name): the uncompressed tar is cut only at *cut points* —
the end of every member (after its data padding) and, inside a regular file's data,
every 4 MiB (4,194,304 bytes) counted from the start of that file's data (never at its
end, which the member end covers). A frame is closed at the first cut point at which it
holds at least 4 MiB. The last frame also holds the two end-of-archive blocks. So frames
hold whole small files, a large file starts its own run of 4 MiB frames after whatever
preceded it, and no frame exceeds about 8 MiB.

**Relocation.** Each regular file is checked for the real root (as bytes). With a mount
path (``push-view --mount-path``), a file holding the root is relocated to it by the
relocation engine (:func:`ocikit.relocate.relocate_bytes`: text at any length, ELF search
paths, binary strings padded to their old length), so the layer runs where it is mounted;
text may change length, so such a file is read whole and its header written after it.
With a placeholder (ocikit 0.1's layers, still used by tests of that format) every
occurrence is replaced by a same-length stand-in; with neither, files are stored as they
are. Either way the view-relative paths of files that hold the stored prefix are collected
(``relocated``) for the artifact's relocation record. Large files without a rewrite are
processed in chunks with an overlap of ``len(root) - 1`` bytes, which finds exactly the
matches ``bytes.replace`` finds on the whole file.

**Change detection.** A file is opened without following symlinks and must still have
the inode, size and mtime the scan saw, both when opened and after it was read;
otherwise :class:`~ocikit.errors.LocalIOError` says it changed while being read.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import InvalidContentError, LocalIOError
from ..formats.tar.writer import END_OF_ARCHIVE, FILE, HARDLINK, TarEntry, header, padding
from ..spack.layering import LayerPlan

FRAME_TARGET = 4 << 20
FRAME_RULE = "ocikit-frames-v1"
_ZEROS = bytes(512)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

# (data, view-relative path, real root) -> same-length data; see push_view's relative_rpaths hook.
RpathHook = Callable[[bytes, str, str], bytes]
# (data, view-relative path) -> the data relocated from the real root to the mount path.
Rewrite = Callable[[bytes, str], bytes]


class Cancelled(Exception):
    """Another layer failed; this one stops early (never shown to users)."""


@dataclass
class Relocation:
    root: str
    placeholder: str = ""  # "" = detect only, store as is
    rpath_hook: RpathHook | None = None
    mount_path: str = ""  # with ``rewrite``: the path files holding the root are relocated to
    rewrite: Rewrite | None = None

    def __post_init__(self) -> None:
        self.root_b = self.root.encode()
        self.placeholder_b = self.placeholder.encode()
        self.mount_path_b = self.mount_path.encode()
        if self.placeholder and len(self.placeholder_b) != len(self.root_b):
            raise ValueError("the placeholder must have the root's length")
        if (self.rewrite is None) != (not self.mount_path):
            raise ValueError("a mount path and its rewrite go together")

    @property
    def reads_whole_files(self) -> bool:
        """ELF rewrites need whole files; a mount-path rewrite may also change their size."""
        return self.rpath_hook is not None or self.rewrite is not None


@dataclass
class LayerReader:
    """Produces the frames of one layer; collects the relocated paths on the way."""

    source: str
    plan: LayerPlan
    relocation: Relocation
    cancel: threading.Event = field(default_factory=threading.Event)
    relocated: list[str] = field(default_factory=list)

    def frames(self) -> Iterator[bytes]:
        parts: list[bytes | memoryview] = []
        size = 0
        contains_root: dict[str, bool] = {}  # archive name -> the file contained the root
        prefix = self.source.rstrip("/") + "/"
        for entry in self.plan.members:
            if self.cancel.is_set():
                raise Cancelled()
            path = prefix + entry.rel
            data: bytes | None = None
            if entry.kind == FILE and entry.size and (entry.size <= FRAME_TARGET or self.relocation.reads_whole_files):
                data, found = self._whole_file(entry, path)
                if len(data) != entry.size:  # relocated text: the header promises the new length
                    entry = entry._replace(size=len(data))
            head = header(entry)
            parts.append(head)
            size += len(head)
            if entry.kind == FILE and entry.size:
                if data is not None and len(data) <= FRAME_TARGET:  # the common case, kept free of generators
                    parts.append(data)
                    size += len(data)
                else:
                    found_box: list[bool] = []
                    if data is not None:  # read whole (and maybe relocated): cut it the same way
                        pieces = _aligned(iter([data]), len(data))
                    else:
                        pieces = self._large_file(entry, path, found_box)
                    for piece, cut in pieces:
                        parts.append(piece)
                        size += len(piece)
                        if cut and size >= FRAME_TARGET:
                            yield b"".join(parts)
                            parts, size = [], 0
                    if data is None:
                        found = bool(found_box)
                pad = padding(entry.size)
                if pad:
                    parts.append(_ZEROS[:pad])
                    size += pad
                contains_root[entry.name] = found
                if found:
                    self.relocated.append(entry.rel)
            elif entry.kind == HARDLINK and contains_root.get(entry.linkname):
                self.relocated.append(entry.rel)
            if size >= FRAME_TARGET:
                yield b"".join(parts)
                parts, size = [], 0
        parts.append(END_OF_ARCHIVE)
        yield b"".join(parts)

    # -- one file -----------------------------------------------------------------------

    def _whole_file(self, member: TarEntry, path: str) -> tuple[bytes, bool]:
        """The file's stored bytes, read at once, and whether it held the root."""
        fd = _open(path)
        try:
            _check_unchanged(path, member, os.fstat(fd))
            data = _read_exact(fd, member.size, path)
            _check_unchanged(path, member, os.fstat(fd))
        finally:
            os.close(fd)
        return self._transform(data, member.rel, path)

    def _large_file(self, member: TarEntry, path: str, found: list[bool]) -> Iterator[tuple[bytes | memoryview, bool]]:
        """(piece, cut point after it) for a file above FRAME_TARGET read in chunks; appends True to
        found if it held the root. Files that need whole-file rewrites go through _whole_file."""
        fd = _open(path)
        try:
            _check_unchanged(path, member, os.fstat(fd))
            yield from _aligned(self._stream(fd, member.size, path, found), member.size)
            _check_unchanged(path, member, os.fstat(fd))
        finally:
            os.close(fd)

    def _transform(self, data: bytes, rel: str, path: str) -> tuple[bytes, bool]:
        rewrite = self.relocation.rewrite
        if rewrite is not None:
            if self.relocation.root_b not in data:
                return data, False
            data = rewrite(data, rel)
            return data, self.relocation.mount_path_b in data
        hook = self.relocation.rpath_hook
        if hook is not None and data[:4] == b"\x7fELF":
            changed = hook(data, rel, self.relocation.root)
            if len(changed) != len(data):
                raise InvalidContentError(f"{path}: the relative-RPATH rewrite changed the file's size")
            data = changed
        root, placeholder = self.relocation.root_b, self.relocation.placeholder_b
        if root not in data:
            return data, False
        if placeholder:
            if placeholder in data:
                raise InvalidContentError(_placeholder_clash(path, self.relocation.placeholder))
            data = data.replace(root, placeholder)
        return data, True

    def _stream(self, fd: int, size: int, path: str, found: list[bool]) -> Iterator[bytes]:
        """Chunks of a large file with the root replaced; overlap keeps split matches whole.

        The last ``len(root) - 1`` bytes of each chunk are held back and searched again with
        the next chunk. A complete placeholder in a buffer is always original content: the
        held-back tail of one written here lacks its leading ``/``, which a match needs.
        """
        root, placeholder = self.relocation.root_b, self.relocation.placeholder_b
        keep = len(root) - 1
        carry = b""
        remaining = size
        clash = False
        while remaining:
            chunk = _read_some(fd, min(FRAME_TARGET, remaining), path)
            remaining -= len(chunk)
            buffer = carry + chunk if carry else chunk
            if placeholder and placeholder in buffer:
                clash = True
            if root in buffer:
                if not found:
                    found.append(True)
                if placeholder:
                    buffer = buffer.replace(root, placeholder)
            if found and clash:
                raise InvalidContentError(_placeholder_clash(path, self.relocation.placeholder))
            if remaining and len(buffer) > keep:
                cut = len(buffer) - keep
                yield buffer[:cut]
                carry = buffer[cut:]
            elif remaining:
                carry = buffer
            else:
                yield buffer
                carry = b""


def _aligned(pieces: Iterator[bytes], size: int) -> Iterator[tuple[memoryview | bytes, bool]]:
    """Split data pieces at every FRAME_TARGET offset; True marks a cut point (not at the end)."""
    offset = 0
    for piece in pieces:
        view = memoryview(piece)
        while len(view):
            room = FRAME_TARGET - offset % FRAME_TARGET
            take = min(room, len(view))
            offset += take
            yield view[:take], take == room and offset < size
            view = view[take:]


def _open(path: str) -> int:
    try:
        return os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: it became a symlink after the scan
            raise _changed(path) from None
        raise LocalIOError(f"cannot read {path}: {exc.strerror}") from None


def _read_some(fd: int, size: int, path: str) -> bytes:
    try:
        chunk = os.read(fd, size)
    except OSError as exc:
        raise LocalIOError(f"cannot read {path}: {exc.strerror}") from None
    if not chunk:
        raise _changed(path)  # shorter than the scan saw
    return chunk


def _read_exact(fd: int, size: int, path: str) -> bytes:
    try:
        data = os.read(fd, size)
        if len(data) < size:
            parts = [data]
            got = len(data)
            while got < size:
                more = os.read(fd, size - got)
                if not more:
                    raise _changed(path)
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
    except OSError as exc:
        raise LocalIOError(f"cannot read {path}: {exc.strerror}") from None
    return data


def _check_unchanged(path: str, member: TarEntry, st: os.stat_result) -> None:
    seen = member.stat
    if (st.st_ino, st.st_size, st.st_mtime_ns) != (seen.st_ino, seen.st_size, seen.st_mtime_ns):
        raise _changed(path)


def _changed(path: str) -> LocalIOError:
    return LocalIOError(f"{path} changed while being read (size or mtime differ from the scan); push again")


def _placeholder_clash(path: str, placeholder: str) -> str:
    return (
        f"{path} contains both the real root and the relocation placeholder {placeholder!r}; "
        "it cannot be stored root-independently (use --layers single)"
    )
