"""The content-store protocol every medium implements.

A store holds content-addressed blobs and manifests of one repository (a registry
repository or an OCI image-layout directory) plus tags that point at manifests.
The core protocol is :class:`Store`; optional capabilities are separate
``runtime_checkable`` protocols, tested with ``isinstance`` rather than discovered by
catching ``NotImplementedError``:

=====================  ==========================================================
capability             methods
=====================  ==========================================================
:class:`Store`         ``exists``, ``fetch``, ``push``, ``push_stream``, ``resolve``, ``tag``
SupportsRangeRead      ``fetch_range`` (the zTOC and on-demand fetch work needs it)
SupportsTagList        ``tags``
SupportsReferrers      ``referrers`` (OCI 1.1; registries fall back to the tag schema)
SupportsDelete         ``delete``
SupportsMount          ``mount`` (cross-repository blob mount on one registry)
=====================  ==========================================================

Free functions here (``fetch_manifest``, ``platform_manifest``, ``push_manifest``, ``read_all``) are the
conveniences built on top, so stores only implement the small core.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from ..byteio import ByteReader
from ..digest import VerifyingReader
from ..errors import InvalidContentError
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor, Platform
from ..spec.manifest import ParsedManifest, parse_manifest, select_platform

# Called with the number of bytes just transferred (a delta, not a total).
ByteCallback = Callable[[int], None]

# Largest manifest ocikit reads into memory. distribution caps pushes at 4 MiB;
# the spec asks clients to expect "at least 4 megabytes". 16 MiB leaves room.
MAX_MANIFEST_SIZE = 16 << 20


@runtime_checkable
class Store(Protocol):
    """A content-addressed store for one repository."""

    def describe(self) -> str:
        """A short human name for messages (``localhost:5000/app``, ``oci:/tmp/layout``)."""
        ...

    def exists(self, desc: Descriptor) -> bool:
        """Whether the blob or manifest ``desc`` is present."""
        ...

    def fetch(self, desc: Descriptor) -> VerifyingReader:
        """A streaming reader of ``desc`` that verifies size and digest as it is consumed."""
        ...

    def push(self, desc: Descriptor, data: "ByteReader | bytes", on_bytes: ByteCallback | None = None) -> None:
        """Store ``data`` as ``desc``; the bytes are verified against the descriptor."""
        ...

    def push_stream(
        self, chunks: Iterable[bytes], media_type: str, on_bytes: ByteCallback | None = None
    ) -> Descriptor:
        """Store a blob whose digest is not known in advance; return its descriptor."""
        ...

    def resolve(self, reference: str) -> Descriptor:
        """The manifest descriptor a tag or digest points at; ``""`` means ``latest`` (NotFoundError if none)."""
        ...

    def tag(self, desc: Descriptor, tag: str) -> None:
        """Point ``tag`` at the manifest ``desc`` (which must already be in the store)."""
        ...


@runtime_checkable
class SupportsRangeRead(Protocol):
    def fetch_range(self, desc: Descriptor, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset+length)`` of the blob, exactly (short only at the blob's end)."""
        ...


@runtime_checkable
class SupportsTagList(Protocol):
    def tags(self) -> list[str]:
        """All tags of the repository, sorted."""
        ...


@runtime_checkable
class SupportsReferrers(Protocol):
    def referrers(self, subject: Descriptor, artifact_type: str = "") -> list[Descriptor]:
        """Manifests whose ``subject`` is ``subject``, optionally only of one artifact type."""
        ...


@runtime_checkable
class SupportsDelete(Protocol):
    def delete(self, desc: Descriptor) -> None: ...


@runtime_checkable
class SupportsMount(Protocol):
    def mount(self, desc: Descriptor, source: "Store") -> bool:
        """Make ``desc`` available by mounting it from ``source`` without a transfer; False if not possible."""
        ...


def read_all(store: Store, desc: Descriptor, limit: int = MAX_MANIFEST_SIZE) -> bytes:
    """Fetch a small blob completely (verified); refuse anything above ``limit`` bytes."""
    if desc.data is not None and len(desc.data) == desc.size:
        reader = VerifyingReader(io.BytesIO(desc.data), desc.digest, desc.size)
        return reader.readall()
    if desc.size > limit:
        raise InvalidContentError(f"{desc.digest} is {desc.size} bytes, more than the {limit} allowed here")
    with store.fetch(desc) as reader:
        return reader.readall()


def fetch_manifest(store: Store, desc_or_reference: "Descriptor | str") -> ParsedManifest:
    """Resolve (if given a tag or digest) and fetch a manifest or index, keeping its exact bytes."""
    desc = desc_or_reference if isinstance(desc_or_reference, Descriptor) else store.resolve(desc_or_reference)
    raw = read_all(store, desc)
    return parse_manifest(raw, desc.media_type)


def platform_manifest(store: Store, desc: Descriptor, platform: "Platform | str | None") -> Descriptor:
    """``desc``, or, when ``platform`` is given and ``desc`` is an index, that platform's entry.

    What ``--platform`` means for commands that act on a reference as given (copy, attach,
    discover, compat): without a platform an index stays the index; a manifest that is not an
    index is returned unchanged, as ``get_manifest`` does. No match raises NotFoundError
    (:func:`~ocikit.spec.manifest.select_platform`).
    """
    if platform is None:
        return desc
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform  # malformed: an error either way
    parsed = fetch_manifest(store, desc)
    return select_platform(parsed, wanted) if parsed.is_index else desc


def push_manifest(store: Store, raw: bytes, media_type: str = "", tag: str = "") -> Descriptor:
    """Push manifest bytes exactly as given and optionally tag them; return the descriptor."""
    parsed = parse_manifest(raw, media_type)
    desc = parsed.descriptor()
    if not store.exists(desc):
        store.push(desc, raw)
    if tag:
        store.tag(desc, tag)
    return desc


def push_bytes(store: Store, media_type: str, data: bytes, **annotations: str) -> Descriptor:
    """Push a small blob (config, JSON document) unless present; return its descriptor."""
    desc = Descriptor.from_bytes(media_type, data, annotations or None)
    if not store.exists(desc):
        store.push(desc, data)
    return desc


def ensure_empty_blob(store: Store) -> Descriptor:
    """Registries that check referenced blobs (distribution 2.8) need ``{}`` uploaded first."""
    return push_bytes(store, mt.OCI_EMPTY, mt.EMPTY_JSON)
