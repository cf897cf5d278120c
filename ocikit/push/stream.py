"""Read a layer's files into its tar stream, cut into frames, with relocation applied.

**Frame cut rule "ocikit-frames-v1"** (it determines the compressed layer's digest, so it
never changes without a new name): the uncompressed tar is cut only at *cut points* —
the end of every member (after its data padding) and, inside a regular file's data,
every 4 MiB (4,194,304 bytes) counted from the start of that file's data (never at its
end, which the member end covers). A frame is closed at the first cut point at which it
holds at least 4 MiB. The last frame also holds the two end-of-archive blocks. So frames
hold whole small files, a large file starts its own run of 4 MiB frames after whatever
preceded it, and no frame exceeds about 8 MiB.

**Relocation.** Each regular file is checked for the real root (as bytes). With a
placeholder (``packages`` mode), every occurrence is replaced by the same-length
placeholder, which is safe for any file kind because no offset moves; without one
(``single`` mode) files are stored as they are. Either way the view-relative paths of
files that contained the root are collected (``relocated``) for the artifact's relocation
record. Large files are processed in chunks with an overlap of ``len(root) - 1`` bytes,
which finds exactly the matches ``bytes.replace`` finds on the whole file.

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


class Cancelled(Exception):
    """Another layer failed; this one stops early (never shown to users)."""


@dataclass
class Relocation:
    root: str
    placeholder: str = ""  # "" = detect only, store as is
    rpath_hook: RpathHook | None = None

    def __post_init__(self) -> None:
        self.root_b = self.root.encode()
        self.placeholder_b = self.placeholder.encode()
        if self.placeholder and len(self.placeholder_b) != len(self.root_b):
            raise ValueError("the placeholder must have the root's length")


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
            head = header(entry)
            parts.append(head)
            size += len(head)
            if entry.kind == FILE and entry.size:
                path = prefix + entry.rel
                if entry.size <= FRAME_TARGET:  # the common case, kept free of generators
                    data, found = self._small_file(entry, path)
                    parts.append(data)
                    size += len(data)
                else:
                    found_box: list[bool] = []
                    for piece, cut in self._large_file(entry, path, found_box):
                        parts.append(piece)
                        size += len(piece)
                        if cut and size >= FRAME_TARGET:
                            yield b"".join(parts)
                            parts, size = [], 0
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

    def _small_file(self, member: TarEntry, path: str) -> tuple[bytes, bool]:
        fd = _open(path)
        try:
            _check_unchanged(path, member, os.fstat(fd))
            data = _read_exact(fd, member.size, path)
            _check_unchanged(path, member, os.fstat(fd))
        finally:
            os.close(fd)
        return self._transform(data, member.rel, path)

    def _large_file(self, member: TarEntry, path: str, found: list[bool]) -> Iterator[tuple[bytes | memoryview, bool]]:
        """(piece, cut point after it) for a file above FRAME_TARGET; appends True to found if it held the root."""
        fd = _open(path)
        try:
            _check_unchanged(path, member, os.fstat(fd))
            if self.relocation.rpath_hook is not None:  # the hook needs the whole ELF file
                data, held = self._transform(_read_exact(fd, member.size, path), member.rel, path)
                pieces: Iterator[bytes] = iter([data])
                found.extend([True] if held else [])
            else:
                pieces = self._stream(fd, member.size, path, found)
            yield from _aligned(pieces, member.size)
            _check_unchanged(path, member, os.fstat(fd))
        finally:
            os.close(fd)

    def _transform(self, data: bytes, rel: str, path: str) -> tuple[bytes, bool]:
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
