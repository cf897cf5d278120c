"""Decide from a file's content how a prefix inside it may be rewritten.

Spack's copy views decide by magic bytes only — ELF and Mach-O are binaries, *everything else*
is text — and so change the length of static archives, compiled terminfo entries and ``.pyc``
files, which corrupts them (``ar t``: "malformed archive"). Here a file is text only when its
bytes look like text: no NUL byte, and valid UTF-8, or plausible ISO-8859-1 (no C1 controls
0x7F-0x9F, few C0 controls), or UTF-16 with a byte-order mark — the classification of spack
PR #48212. Known binary formats are recognised by their magic first, so a NUL-free binary
still never gets a length-changing rewrite.

Kinds:

- ``ELF``: dynamic-section strings get a structured rewrite, other strings same-length.
- ``TEXT``: any-length replacement.
- ``BINARY``: same-length, NUL-terminated-string replacement only.
- ``OPAQUE``: compressed or checksummed containers (gzip, xz, zip, PNG, ...). A byte edit would
  break their CRC, so they are never modified; a prefix found inside is reported.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class FileKind(str, enum.Enum):
    ELF = "elf"
    TEXT = "text"
    BINARY = "binary"
    OPAQUE = "opaque"


class Classification(NamedTuple):
    kind: FileKind
    detail: str  # a format or encoding name, for reports: "ar archive", "utf-8", "terminfo"


# (magic at offset 0, kind, label). Checked in order; ELF is handled before this table.
_MAGICS: tuple[tuple[bytes, FileKind, str], ...] = (
    (b"!<arch>\n", FileKind.BINARY, "ar archive"),
    (b"!<thin>\n", FileKind.BINARY, "thin ar archive"),
    (b"\xfe\xed\xfa\xce", FileKind.BINARY, "Mach-O"),
    (b"\xfe\xed\xfa\xcf", FileKind.BINARY, "Mach-O"),
    (b"\xce\xfa\xed\xfe", FileKind.BINARY, "Mach-O"),
    (b"\xcf\xfa\xed\xfe", FileKind.BINARY, "Mach-O"),
    (b"\xca\xfe\xba\xbe", FileKind.BINARY, "Mach-O universal or Java class"),
    (b"\xde\x12\x04\x95", FileKind.BINARY, "gettext catalog"),
    (b"\x95\x04\x12\xde", FileKind.BINARY, "gettext catalog"),
    (b"SQLite format 3\x00", FileKind.BINARY, "SQLite database"),
    (b"\x00asm", FileKind.BINARY, "WebAssembly"),
    (b"%PDF-", FileKind.BINARY, "PDF"),  # xref tables hold byte offsets: never resize
    (b"\xff\xd8\xff", FileKind.BINARY, "JPEG image"),
    (b"GIF87a", FileKind.BINARY, "GIF image"),
    (b"GIF89a", FileKind.BINARY, "GIF image"),
    (b"II*\x00", FileKind.BINARY, "TIFF image"),
    (b"MM\x00*", FileKind.BINARY, "TIFF image"),
    (b"\x93NUMPY", FileKind.BINARY, "NumPy array"),
    (b"\x89PNG\r\n\x1a\n", FileKind.OPAQUE, "PNG image"),
    (b"\x89HDF\r\n\x1a\n", FileKind.OPAQUE, "HDF5 file"),
    (b"\x1f\x8b", FileKind.OPAQUE, "gzip"),
    (b"\xfd7zXZ\x00", FileKind.OPAQUE, "xz"),
    (b"\x28\xb5\x2f\xfd", FileKind.OPAQUE, "zstd"),
    (b"PK\x03\x04", FileKind.OPAQUE, "zip archive"),
    (b"PK\x05\x06", FileKind.OPAQUE, "zip archive"),
    (b"7z\xbc\xaf\x27\x1c", FileKind.OPAQUE, "7-zip archive"),
    (b"BC\xc0\xde", FileKind.OPAQUE, "LLVM bitcode"),
)

# The table indexed by first byte, so most files are checked against no magic at all.
_MAGICS_BY_FIRST: dict[int, tuple[tuple[bytes, FileKind, str], ...]] = {}
for _entry in _MAGICS:
    _MAGICS_BY_FIRST[_entry[0][0]] = _MAGICS_BY_FIRST.get(_entry[0][0], ()) + (_entry,)

# Compiled terminfo: a little-endian 16-bit magic, 0o432 (legacy) or 0o1036 (32-bit numbers).
_TERMINFO_MAGICS = (b"\x1a\x01", b"\x1e\x02")
# PEP 552 flags: 0 = timestamp-based, 1 = unchecked hash, 3 = checked hash.
_PYC_FLAGS = (b"\x00\x00\x00\x00", b"\x01\x00\x00\x00", b"\x03\x00\x00\x00")
_BOMS_UTF16 = (b"\xff\xfe", b"\xfe\xff")
# C0 control characters that do not occur in text (everything below 0x20 except
# \t \n \v \f \r, BEL, BS and ESC, which terminal-oriented text files do use).
_C0_NOT_TEXT = bytes(set(range(0x20)) - {0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B})
_C1 = bytes(range(0x7F, 0xA0))


def classify(data: bytes) -> Classification:
    """Classify a whole file's bytes (see the module docstring for the rules)."""
    if data.startswith(b"\x7fELF"):
        return Classification(FileKind.ELF, "ELF")
    for magic, kind, label in _MAGICS_BY_FIRST.get(data[0], ()) if data else ():
        if data.startswith(magic):
            return Classification(kind, label)
    if _is_bzip2(data):
        return Classification(FileKind.OPAQUE, "bzip2")
    if len(data) > 262 and data[257:262] == b"ustar":
        return Classification(FileKind.OPAQUE, "tar archive")  # header checksums cover the names
    if _is_terminfo(data):
        return Classification(FileKind.BINARY, "terminfo")
    if is_pyc(data):
        return Classification(FileKind.BINARY, "pyc")
    if data[:2] in _BOMS_UTF16 and len(data) % 2 == 0:
        return Classification(FileKind.TEXT, "utf-16")
    if b"\x00" in data:
        return Classification(FileKind.BINARY, "data")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return Classification(FileKind.TEXT, "utf-8")
    if _looks_latin1(data):
        return Classification(FileKind.TEXT, "iso-8859-1")
    return Classification(FileKind.BINARY, "data")


def is_pyc(data: bytes) -> bool:
    """A CPython bytecode cache: 2-byte magic number, ``\\r\\n``, 4 flag bytes, 8 bytes of source info."""
    return len(data) >= 16 and data[2:4] == b"\r\n" and data[4:8] in _PYC_FLAGS


def _is_bzip2(data: bytes) -> bool:
    return data[:3] == b"BZh" and data[3:4].isdigit() and data[4:10] in (b"1AY&SY", b"\x17rE8P\x90")


def _is_terminfo(data: bytes) -> bool:
    # Header: magic, then five non-negative 16-bit sizes (names, booleans, numbers, strings, table).
    if len(data) < 12 or data[:2] not in _TERMINFO_MAGICS:
        return False
    sizes = [int.from_bytes(data[i : i + 2], "little") for i in range(2, 12, 2)]
    return all(size < 0x8000 for size in sizes) and 12 + sizes[0] <= len(data)


def _looks_latin1(data: bytes) -> bool:
    # Latin-1 decodes every byte sequence, so decide by the control characters in it.
    if data.translate(None, _C1) != data:
        return False
    controls = len(data) - len(data.translate(None, _C0_NOT_TEXT))
    return controls == 0
