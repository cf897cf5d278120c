"""Dotted version numbers (``2.36``, ``3.4.30``, ``525.60.13``) compared as integer tuples.

String comparison gets ``2.4 < 2.36`` wrong; these helpers never do. Non-numeric parts
(``1.3.8a``) keep only their leading digits, which is how glibc, libstdc++ and the NVIDIA
driver number their releases.
"""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+)")


def parse_version(text: str) -> tuple[int, ...]:
    """``"2.36"`` → ``(2, 36)``; an empty or non-numeric string → ``()``."""
    parts: list[int] = []
    for piece in text.strip().split("."):
        match = _PART.match(piece)
        if match is None:
            break
        parts.append(int(match.group(1)))
    return tuple(parts)


def version_key(text: str) -> tuple[int, ...]:
    """Sort key: ``(2, 36)`` and ``(2, 36, 0)`` compare equal in meaning, so pad to 4 parts."""
    parts = parse_version(text)
    return parts + (0,) * (4 - len(parts)) if len(parts) < 4 else parts


def version_at_least(have: str, need: str) -> bool:
    """Whether version ``have`` is ``need`` or newer (``""`` never satisfies anything)."""
    if not parse_version(have):
        return False
    return version_key(have) >= version_key(need)


def max_version(versions: list[str] | tuple[str, ...] | set[str]) -> str:
    """The highest of ``versions`` by numeric order (``""`` when empty)."""
    return max(versions, key=version_key, default="")
