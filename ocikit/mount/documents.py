"""The source store of a mount, with its small documents kept on disk by digest.

A remount (or a second pod mounting the same view) needs the manifest, the config, the SOCI
index and the zTOCs again. They are content-addressed, so they are kept under
``CACHE/mount/documents/sha256/…`` after the first fetch and read back through a
:class:`~ocikit.digest.VerifyingReader`: a changed file fails its digest like a corrupt
download would. What names things — resolving a tag, listing referrers — still asks the
registry; layer blobs are never stored here (their spans are, in the span cache).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

from ..content.base import Store
from ..digest import VerifyingReader, digest_bytes
from ..spec.descriptor import Descriptor
from .keep import keep_file

MAX_DOCUMENT = 64 << 20  # zTOCs of very large layers stay below this


def is_layer(media_type: str) -> bool:
    return ".layer." in media_type or "rootfs.diff" in media_type or "tar" in media_type


class CachedDocuments:
    """``source`` with :meth:`fetch` of small non-layer blobs served from ``root`` when present."""

    def __init__(self, source: Store, root: str) -> None:
        self.source = source
        self.root = root

    def describe(self) -> str:
        return self.source.describe()

    def _path(self, digest: str) -> str:
        algorithm, _, hexdigest = digest.partition(":")
        return os.path.join(self.root, algorithm, hexdigest[:2], hexdigest)

    def fetch(self, desc: Descriptor) -> VerifyingReader:
        if desc.size > MAX_DOCUMENT or is_layer(desc.media_type) or ":" not in desc.digest:
            return self.source.fetch(desc)  # type: ignore[return-value]
        path = self._path(desc.digest)
        kept = self._kept(path, desc)
        if kept is not None:
            return VerifyingReader(io.BytesIO(kept), desc.digest, desc.size, desc.digest)
        with self.source.fetch(desc) as reader:
            data = reader.readall()  # verified by the source's reader
        keep_file(path, data)
        return VerifyingReader(io.BytesIO(data), desc.digest, desc.size, desc.digest)

    def _kept(self, path: str, desc: Descriptor) -> bytes | None:
        """The kept copy if it is intact; a changed one is removed (and fetched again)."""
        try:
            with open(path, "rb") as fh:
                data = fh.read(desc.size + 1)
        except OSError:
            return None
        if len(data) == desc.size and digest_bytes(data, desc.digest.partition(":")[0]) == desc.digest:
            with contextlib.suppress(OSError):
                os.utime(path)  # last use, for gc
            return data
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)  # resolve, referrers, fetch_range, …
