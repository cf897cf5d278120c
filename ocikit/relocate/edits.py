"""Planned byte edits and the strings that cannot be rewritten.

Planning produces only these small records, never new file contents: a relocation of
thousands of files keeps a few edits per file in memory, and the bytes are rebuilt when the
file is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    """Replace ``length`` bytes at ``offset`` by ``data`` (same length for binaries)."""

    offset: int
    length: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class StringProblem:
    """A string that cannot take the new prefix.

    ``room`` is the number of bytes available for the prefix part, ``needed`` what the new
    prefix (or the rewritten path list) takes. ``soft`` problems concern bytes nothing reads at
    run time (debug sections, bytecode caches): they are reported and left unchanged.
    """

    offset: int
    context: bytes  # the string as found, for messages
    room: int
    needed: int
    reason: str  # "grow" | "shrink" | "rpath" | "interp"
    where: str = ""  # "RPATH", "RUNPATH", "PT_INTERP", a section name, or ""
    soft: bool = False

    def describe(self) -> str:
        where = f" in {self.where}" if self.where else ""
        if self.reason == "shrink":
            return f"C string{where} at 0x{self.offset:x} cannot shrink safely (its last bytes may be shared)"
        return f"{self.needed} bytes needed{where} at 0x{self.offset:x}, {self.room} available"


def apply_edits(data: bytes, edits: Iterable[Edit]) -> bytes:
    """The bytes after applying non-overlapping ``edits``."""
    pieces: list[bytes] = []
    position = 0
    for edit in sorted(edits, key=lambda e: e.offset):
        if edit.offset < position:
            raise ValueError(f"overlapping edits at offset {edit.offset}")
        pieces.append(data[position : edit.offset])
        pieces.append(edit.data)
        position = edit.end
    pieces.append(data[position:])
    return b"".join(pieces)
