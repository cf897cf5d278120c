"""The one shape ocikit reads blobs through.

Stores hand out verifying readers, pulls wrap them in counting readers, tests pass files:
everything that consumes a blob needs only ``read`` and ``close``, so that is all it asks for.
"""

from __future__ import annotations

from typing import Protocol


class ByteReader(Protocol):
    """What ocikit reads a blob from: a file, a verifying reader, a counting wrapper."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...
