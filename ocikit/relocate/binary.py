"""Same-length replacement of prefixes inside NUL-terminated strings of binary files.

A binary's strings cannot change length: offsets, sizes and checksums elsewhere in the file
point at them. Following spack's ``BinaryFilePrefixReplacer`` (PRs #31739, #32253), a prefix
is replaced by the new one left-padded with ``/`` (``/opt/view/lib`` → ``/////mnt/v/lib``),
which keeps the string's start, its end and its NUL in place. Compilers and linkers merge
strings that share a tail (``"lib"`` may point into ``"/opt/view/lib"``), so the last
``SUFFIX_SAFETY`` bytes before the NUL must not change; when left padding would change them,
the new string is written at the start with its own NUL instead, which leaves the old tail in
place — possible only when the string shrinks by more than ``SUFFIX_SAFETY`` bytes.

One addition to spack's rule: a run of extra ``/`` directly before the prefix at the start of
a string is padding from an earlier relocation (spack's own view copies look like
``//////////opt/._view/<hash>/lib``). Those bytes are reclaimed as room, so a view spack
already shrank can be moved to a path longer than its recorded root by up to that padding.
A run after ``:`` is never reclaimed (``file:///opt``: the slashes are part of the URL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .edits import Edit, StringProblem
from .prefixes import PrefixMap

SUFFIX_SAFETY = 7
_SLASH = 0x2F
_COLON = 0x3A


def plan_binary_edits(
    data: bytes,
    prefixes: PrefixMap,
    *,
    skip: Sequence[tuple[int, int]] = (),
    soft_at: Callable[[int], str | None] | None = None,
) -> tuple[list[Edit], list[StringProblem], int | None]:
    """Plan same-length edits for every prefix occurrence in ``data``.

    ``skip`` holds ``(start, end)`` ranges already handled elsewhere (ELF dynamic strings).
    ``soft_at(offset)`` returns a label (a section name) when bytes at ``offset`` are never
    read at run time, making a misfit there a warning instead of an error.

    Returns the edits, the problems, and the longest new root every occurrence of the main old
    prefix could take (``None`` when there is none).
    """
    edits: list[Edit] = []
    problems: list[StringProblem] = []
    max_new_length: int | None = None
    main_old = prefixes.old_root.encode()
    boundary = 0  # bytes before this belong to an earlier match
    for match in prefixes.pattern().finditer(data):
        start, end = match.span()
        if any(lo <= start < hi for lo, hi in skip):
            continue
        old = match.group()
        string_start = _reclaimable_start(data, start, boundary)
        room = end - string_start
        if old == main_old and (soft_at is None or soft_at(start) is None):
            max_new_length = room if max_new_length is None else min(max_new_length, room)
        outcome = _replace_one(data, string_start, end, prefixes.lookup(old))
        if isinstance(outcome, Edit):
            edits.append(outcome)
            boundary = outcome.end
            continue
        reason, needed = outcome
        label = soft_at(start) if soft_at else None
        problems.append(
            StringProblem(
                offset=string_start,
                context=_c_string_at(data, string_start),
                room=room,
                needed=needed,
                reason=reason,
                where=label or "",
                soft=label is not None,
            )
        )
        boundary = end
    return edits, problems, max_new_length


def _reclaimable_start(data: bytes, start: int, boundary: int) -> int:
    """Where the string holding the prefix at ``start`` may begin, counting padding slashes."""
    first = start
    while first > boundary and data[first - 1] == _SLASH:
        first -= 1
    if first == start or (first > 0 and data[first - 1] == _COLON):
        return start
    return first


def _replace_one(data: bytes, string_start: int, prefix_end: int, new: bytes) -> Edit | tuple[str, int]:
    """The same-length edit for the bytes ``data[string_start:prefix_end]``, or ``(reason, needed)``."""
    room = prefix_end - string_start
    shorter = room - len(new)
    if shorter < 0:
        return ("grow", len(new))
    nul = data.find(b"\x00", prefix_end, prefix_end + SUFFIX_SAFETY + 1)
    padded = b"/" * shorter + new
    if nul < 0:
        # No terminator close by: a long string whose tail lies beyond the prefix.
        return Edit(string_start, room, padded)
    suffix_length = nul - prefix_end
    keep = SUFFIX_SAFETY - suffix_length  # prefix bytes that lie within the protected tail
    if keep <= 0 or padded[-keep:] == data[prefix_end - keep : prefix_end]:
        return Edit(string_start, room, padded)
    if shorter > SUFFIX_SAFETY:
        moved = new + data[prefix_end : nul + 1]
        return Edit(string_start, len(moved), moved)
    return ("shrink", len(new))


def _c_string_at(data: bytes, offset: int, limit: int = 200) -> bytes:
    end = data.find(b"\x00", offset, offset + limit)
    return data[offset : end if end >= 0 else offset + limit]
