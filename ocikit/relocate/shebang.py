"""Shebang lines that a relocation makes too long for the kernel.

Linux reads a script's ``#!`` line into a fixed buffer: 128 bytes before 5.1 (so 127 usable
characters; longer lines were silently truncated, running the wrong interpreter or passing a
cut argument) and 256 since 5.1 (255 usable; a longer interpreter path now fails with
ENOEXEC). Relocating to a longer prefix can push a line over either limit, so each rewritten
script's first line is measured and reported. Spack works around the limit with its ``sbang``
launcher; ocikit only reports, it does not rewrite scripts to use one.
"""

from __future__ import annotations

from dataclasses import dataclass

LIMIT_BEFORE_5_1 = 127
LIMIT_SINCE_5_1 = 255


@dataclass(frozen=True)
class LongShebang:
    path: str
    length: int  # bytes of the first line, ``#!`` included, newline excluded
    limit: int  # the smallest kernel limit it exceeds

    def describe(self) -> str:
        kernels = "Linux < 5.1" if self.limit == LIMIT_BEFORE_5_1 else "every Linux version"
        return f"{self.path}: shebang line is {self.length} bytes, over the {self.limit}-byte limit of {kernels}"

    def to_dict(self) -> dict:
        return {"path": self.path, "length": self.length, "limit": self.limit}


def check_shebang(data: bytes, path: str) -> LongShebang | None:
    """A :class:`LongShebang` when ``data`` starts with a ``#!`` line longer than 127 bytes."""
    if not data.startswith(b"#!"):
        return None
    end = data.find(b"\n", 0, LIMIT_SINCE_5_1 + 2)
    length = end if end >= 0 else min(len(data), _line_length(data))
    if length > LIMIT_SINCE_5_1:
        return LongShebang(path, length, LIMIT_SINCE_5_1)
    if length > LIMIT_BEFORE_5_1:
        return LongShebang(path, length, LIMIT_BEFORE_5_1)
    return None


def _line_length(data: bytes) -> int:
    end = data.find(b"\n")
    return end if end >= 0 else len(data)
