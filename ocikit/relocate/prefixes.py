"""The old → new prefix pairs a relocation applies, validated once and shared by every rewriter.

A relocation maps the prefix baked into the files (``old``, the view's real root or a placeholder)
to the path the tree will run at (``new``), plus optional extra pairs (an install tree root, the
``/opt/view`` symlink path). Pairs are matched longest-first so that ``/a/b → X`` wins over
``/a → Y`` for ``/a/b/lib``, the way spack orders its prefix maps.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from ..errors import InvalidContentError

_SLASHES = re.compile(r"/+")


def normalize_path(path: str) -> str:
    """Collapse repeated slashes and drop a trailing one: ``///opt//v/`` → ``/opt/v``.

    Spack pads binary strings with leading slashes (``////opt/view/lib``); this is what makes
    such a string compare equal to the prefix it names.
    """
    collapsed = _SLASHES.sub("/", path)
    return collapsed.rstrip("/") or "/"


def _validated(prefix: str, what: str) -> str:
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise InvalidContentError(f"{what} prefix must be an absolute path, got {prefix!r}")
    if "\0" in prefix or "\n" in prefix:
        raise InvalidContentError(f"{what} prefix {prefix!r} contains a NUL or newline")
    normalized = normalize_path(prefix)
    if normalized == "/":
        raise InvalidContentError(f"{what} prefix must not be the file-system root")
    return normalized


def is_within(path: str, prefix: str) -> bool:
    """Whether normalized ``path`` is ``prefix`` itself or below it (component boundary)."""
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class PrefixMap:
    """Ordered ``(old, new)`` byte pairs (longest old first) and the destination root.

    ``new_root`` is where the tree's top directory will be when its programs run; ``$ORIGIN``
    paths and relative symlinks are computed against it.
    """

    pairs: tuple[tuple[bytes, bytes], ...]
    old_root: str
    new_root: str

    @classmethod
    def build(cls, old: str, new: str, extra: Mapping[str, str] | None = None) -> PrefixMap:
        old_root = _validated(old, "old")
        new_root = _validated(new, "new")
        mapping: dict[str, str] = {old_root: new_root}
        for extra_old, extra_new in (extra or {}).items():
            key = _validated(extra_old, "old")
            value = _validated(extra_new, "new")
            if mapping.get(key, value) != value:
                raise InvalidContentError(f"prefix {key} is mapped to two different destinations")
            mapping[key] = value
        ordered = sorted((k, v) for k, v in mapping.items() if k != v)
        ordered.sort(key=lambda kv: len(kv[0]), reverse=True)
        pairs = tuple((k.encode(), v.encode()) for k, v in ordered)
        return cls(pairs=pairs, old_root=old_root, new_root=new_root)

    @classmethod
    def identity(cls, root: str) -> PrefixMap:
        """A map of ``root`` onto itself: used to make search paths relative without moving."""
        normalized = _validated(root, "root")
        return cls(pairs=((normalized.encode(), normalized.encode()),), old_root=normalized, new_root=normalized)

    @property
    def is_noop(self) -> bool:
        return not self.pairs

    @cached_property
    def old_prefixes(self) -> tuple[bytes, ...]:
        return tuple(old for old, _ in self.pairs)

    @cached_property
    def _pattern(self) -> re.Pattern[bytes]:
        return re.compile(b"|".join(re.escape(p) for p in self.old_prefixes))

    def pattern(self) -> re.Pattern[bytes]:
        """One alternation of every old prefix, longest first (regex alternation is ordered)."""
        return self._pattern

    @cached_property
    def _by_old(self) -> dict[bytes, bytes]:
        return dict(self.pairs)

    def lookup(self, old: bytes) -> bytes:
        return self._by_old[old]

    def occurs_in(self, data: bytes) -> bool:
        return any(old in data for old in self.old_prefixes)

    def map_path(self, path: str) -> str | None:
        """The new location of an absolute ``path`` that lies under an old prefix, else ``None``."""
        normalized = normalize_path(path)
        for old, new in self.pairs:
            old_text = old.decode()
            if is_within(normalized, old_text):
                return new.decode() + normalized[len(old_text) :]
        return None

    def inside_new_root(self, path: str) -> bool:
        return is_within(normalize_path(path), self.new_root)

    def new_location(self, relpath: str) -> str:
        """Where the file at ``relpath`` (relative to the tree top) lives once relocated."""
        return posixpath.join(self.new_root, relpath) if relpath not in ("", ".") else self.new_root


def relative_link(target: str, link_dir: str) -> str:
    """A relative path from ``link_dir`` to ``target`` (both absolute, normalized)."""
    return os.path.relpath(target, link_dir)
