"""An on-disk cache of manifests, indexes and configs, keyed by their digest.

Manifests are content-addressed, so a cached document can never be stale: the only thing
that changes over time is which digest a *tag* points at, and tags are resolved on every
run. A rerun over digest-pinned references therefore needs no request at all.

Every read re-hashes the cached bytes (a few kilobytes) and drops an entry that does not
match its name, so a corrupted or tampered cache file is refetched, never trusted. Writes
go to a temporary name in the same directory and are renamed into place, so concurrent
runs and crashes never leave half-written entries.

Location: ``manifests/`` in ocikit's cache home (``$OCIKIT_CACHE_DIR``, ``~/.cache/ocikit/manifests`` when
``XDG_CACHE_HOME`` is unset), one file per document at ``<alg>/<hex>``.
"""

from __future__ import annotations

import contextlib
import os
import uuid

from ..cachedirs import user_cache_dir
from ..digest import algorithm_of, digest_bytes, hex_of, validate_digest
from ..errors import LocalIOError


def default_cache_dir() -> str:
    """``manifests/`` in ocikit's cache home (``$OCIKIT_CACHE_DIR``, default ``~/.cache/ocikit``)."""
    return user_cache_dir("manifests")


class ManifestCache:
    """Content-addressed documents on disk; ``get`` verifies, ``put`` is atomic."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_cache_dir())

    def _path(self, digest: str) -> str:
        validate_digest(digest)
        return os.path.join(self.root, algorithm_of(digest), hex_of(digest))

    def get(self, digest: str) -> bytes | None:
        """The cached bytes of ``digest``, or None when absent or corrupt (a corrupt entry is removed)."""
        path = self._path(digest)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
        if digest_bytes(raw, algorithm_of(digest)) != digest:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return raw

    def put(self, digest: str, raw: bytes) -> None:
        """Store ``raw`` under ``digest`` (the caller has verified that they match)."""
        path = self._path(digest)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(raw)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise LocalIOError(f"cannot write manifest cache {self.root}: {exc.strerror}") from None
