"""Content stores: the protocol, an OCI image layout, memory, and the registry (in ocikit.registry)."""

from .base import (
    Store,
    SupportsDelete,
    SupportsMount,
    SupportsRangeRead,
    SupportsReferrers,
    SupportsTagList,
    fetch_manifest,
    push_bytes,
    push_manifest,
    read_all,
)
from .layout import LayoutStore
from .memory import MemoryStore

__all__ = [
    "LayoutStore",
    "MemoryStore",
    "Store",
    "SupportsDelete",
    "SupportsMount",
    "SupportsRangeRead",
    "SupportsReferrers",
    "SupportsTagList",
    "fetch_manifest",
    "push_bytes",
    "push_manifest",
    "read_all",
]
