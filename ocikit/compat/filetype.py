"""Classify files from their first bytes: magic numbers first, libmagic only when needed.

Running libmagic (``file``) on every file of a 50k-file view costs tens of seconds, and
almost all of it is wasted: ELF, archives, compressed data, images, bytecode and scripts
announce themselves in their first bytes, and a header without a NUL byte is text (the
``grep -I`` rule). Only binary files that no magic number below recognises are handed to
python-magic (optional extra ``ocikit[magic]``), and then from the header bytes already
read — no second open. Without python-magic they are counted as ``data``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# How many bytes the scanner reads from every file: enough for every magic number here
# and for a shebang line (Linux reads at most 256 bytes of it), and for libmagic's tests
# on the rare unknown binary.
HEADER_SIZE = 2048

# (prefix, kind). Checked in order, longest/most specific first.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "elf"),
    (b"!<arch>\n", "ar-archive"),
    (b"!<thin>\n", "ar-archive"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"SQLite format 3\x00", "sqlite"),
    (b"\xca\xfe\xba\xbe", "java-class-or-mach-o-fat"),
    (b"\xcf\xfa\xed\xfe", "mach-o"),
    (b"\xce\xfa\xed\xfe", "mach-o"),
    (b"\xfe\xed\xfa\xcf", "mach-o"),
    (b"\x00asm", "wasm"),
    (b"\xde\x12\x04\x95", "gettext-mo"),
    (b"\x95\x04\x12\xde", "gettext-mo"),
    (b"\x1a\x01", "terminfo"),
    (b"\x1e\x02", "terminfo"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"CDF\x01", "netcdf"),
    (b"CDF\x02", "netcdf"),
    (b"\x00\x01\x00\x00\x00", "font"),
    (b"\x00\x00\x01\x00", "icon"),
)

# Magic numbers made only of printable characters: a text file may start with them too
# ("MZ_DEBUG=1"), so they count only when the header also holds a NUL byte.
_PRINTABLE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"BZh", "bzip2"),
    (b"GIF8", "gif"),
    (b"%PDF", "pdf"),
    (b"MZ", "pe"),
    (b"wOFF", "font"),
    (b"wOF2", "font"),
    (b"OTTO", "font"),
)

# Binary files recognised by name when their bytes have no fixed magic (or a
# per-version one, like .pyc whose first two bytes change with every Python release).
_BINARY_EXTENSIONS = {
    ".pyc": "python-bytecode",
    ".pyo": "python-bytecode",
    ".o": "object",
    ".npy": "numpy",
    ".npz": "zip",
    ".whl": "zip",
    ".jar": "zip",
    ".mo": "gettext-mo",
    ".ttf": "font",
    ".otf": "font",
    ".ico": "icon",
    ".db": "database",
    ".pickle": "pickle",
    ".pkl": "pickle",
}


def _by_first_byte(table: tuple[tuple[bytes, str], ...]) -> dict[int, tuple[tuple[bytes, str], ...]]:
    # One dict lookup instead of ~30 startswith calls per file: this runs 50k times per scan.
    index: dict[int, list[tuple[bytes, str]]] = {}
    for prefix, kind in table:
        index.setdefault(prefix[0], []).append((prefix, kind))
    return {first: tuple(entries) for first, entries in index.items()}


_MAGIC_INDEX = _by_first_byte(_MAGIC)
_PRINTABLE_INDEX = _by_first_byte(_PRINTABLE_MAGIC)


@dataclass(frozen=True)
class FileKind:
    """``kind`` is a short word (elf, script, text, gzip, data …); ``interpreter`` is set for scripts."""

    kind: str
    interpreter: str = ""
    via_libmagic: bool = False


def classify(header: bytes, name: str, use_libmagic: bool = True) -> FileKind:
    """The kind of a file whose first bytes are ``header`` and whose base name is ``name``."""
    if not header:
        return _EMPTY
    if header.startswith(b"#!"):
        return FileKind("script", parse_shebang(header))
    first = header[0]
    for prefix, kind in _MAGIC_INDEX.get(first, ()):
        if header.startswith(prefix):
            return _KINDS[kind]
    if b"\x00" not in header:
        return _TEXT
    for prefix, kind in _PRINTABLE_INDEX.get(first, ()):
        if header.startswith(prefix):
            return _KINDS[kind]
    dot = name.rfind(".")
    if dot > 0:
        extension_kind = _BINARY_EXTENSIONS.get(name[dot:].lower())
        if extension_kind:
            return _KINDS[extension_kind]
    if use_libmagic:
        described = _libmagic_kind(header)
        if described:
            return FileKind(described, via_libmagic=True)
    return _KINDS["data"]


# Shared immutable results: no allocation per file for the common kinds.
_KINDS = {kind: FileKind(kind) for _, kind in _MAGIC + _PRINTABLE_MAGIC}
_KINDS.update({kind: FileKind(kind) for kind in _BINARY_EXTENSIONS.values()})
_KINDS["data"] = FileKind("data")
_TEXT = FileKind("text")
_EMPTY = FileKind("empty")


def parse_shebang(header: bytes) -> str:
    """The interpreter of a ``#!`` line: ``/bin/sh``, or ``env:python3`` for ``/usr/bin/env python3``."""
    line = header[2:].split(b"\n", 1)[0][:256].strip()
    words = line.decode("utf-8", "replace").split()
    if not words:
        return ""
    program = words[0]
    if program.rsplit("/", 1)[-1] == "env":
        # /usr/bin/env [-S] [-i] [VAR=value …] NAME args…
        for word in words[1:]:
            if word.startswith("-") or "=" in word:
                continue
            return f"env:{word}"
        return program
    return program


_magic_lock = threading.Lock()
_magic_state: dict[str, object] = {}


def _libmagic_kind(header: bytes) -> str:
    """MIME type from libmagic for an unknown binary header, or "" when python-magic is absent."""
    with _magic_lock:
        if "instance" not in _magic_state:
            _magic_state["instance"] = _load_magic()
        instance = _magic_state["instance"]
        if instance is None:
            return ""
        try:
            return str(instance.from_buffer(header))  # type: ignore[attr-defined]
        except Exception:  # libmagic errors on odd input are not worth failing a scan for
            return ""


def _load_magic():  # type: ignore[no-untyped-def]
    try:
        import magic  # python-magic: optional extra ``ocikit[magic]``
    except ImportError:
        return None
    try:
        return magic.Magic(mime=True)
    except Exception:  # python-magic installed but libmagic1 missing
        return None


def libmagic_available() -> bool:
    with _magic_lock:
        if "instance" not in _magic_state:
            _magic_state["instance"] = _load_magic()
        return _magic_state["instance"] is not None
