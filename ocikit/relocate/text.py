"""Any-length prefix replacement in text files (scripts, ``.pc``, cmake, ``.la``, JSON, ...).

Which occurrences count follows spack's ``TextFilePrefixReplacer``: an occurrence is left alone
when it continues another path — when the run of word characters (``[A-Za-z0-9_-]``) right
before it is preceded by ``/``. So ``/home/u/opt/view`` is not the prefix ``/opt/view``, while
``-I/opt/view``, ``prefix=/opt/view`` and ``"/opt/view`` are. Nothing is required after the
prefix (``/opt/view2`` is rewritten too); baked roots are hashed or padded paths for which
that never matters.

One deliberate difference: an occurrence right after ``//`` is rewritten, because
``file:///opt/view/share`` names the prefix (spack leaves such URLs pointing at the old root).

UTF-16 files (with a byte-order mark) are decoded, rewritten, and encoded back.
"""

from __future__ import annotations

from .edits import Edit, apply_edits
from .prefixes import PrefixMap

_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SLASH = 0x2F


def plan_text_edits(data: bytes, prefixes: PrefixMap, encoding: str = "utf-8") -> list[Edit]:
    """Edits replacing every qualifying occurrence of an old prefix (lengths may change)."""
    if encoding == "utf-16":
        return _plan_utf16(data, prefixes)
    edits = []
    for match in prefixes.pattern().finditer(data):
        if continues_other_path(data, match.start()):
            continue
        edits.append(Edit(match.start(), len(match.group()), prefixes.lookup(match.group())))
    return edits


def continues_other_path(data: bytes, start: int) -> bool:
    """Spack's boundary rule, plus the ``//`` exception (see the module docstring)."""
    first = start
    while first > 0 and data[first - 1] in _WORD:
        first -= 1
    if first == 0 or data[first - 1] != _SLASH:
        return False
    url_slashes = first == start and first >= 2 and data[first - 2] == _SLASH  # file:///<prefix>
    return not url_slashes


def _plan_utf16(data: bytes, prefixes: PrefixMap) -> list[Edit]:
    codec = "utf-16-le" if data.startswith(b"\xff\xfe") else "utf-16-be"
    try:
        text = data[2:].decode(codec)
    except UnicodeDecodeError:
        return []
    as_utf8 = text.encode("utf-8", "surrogatepass")
    edits = plan_text_edits(as_utf8, prefixes)
    if not edits:
        return []
    rewritten = apply_edits(as_utf8, edits).decode("utf-8", "surrogatepass").encode(codec, "surrogatepass")
    return [Edit(2, len(data) - 2, rewritten)]


def utf16_contains(data: bytes, prefixes: PrefixMap) -> bool:
    """Whether a UTF-16 file (with BOM) mentions an old prefix."""
    codec = "utf-16-le" if data.startswith(b"\xff\xfe") else "utf-16-be"
    return any(old.decode().encode(codec) in data for old in prefixes.old_prefixes)
