"""An in-memory store: small artifacts assembled before a copy, and copy-semantics tests."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable

from ..digest import VerifyingReader, digest_bytes
from ..errors import DigestMismatchError, NotFoundError, SizeMismatchError
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import parse_manifest
from .base import ByteCallback, ByteReader


class MemoryStore:
    """Blobs, tags and referrers held in dictionaries (thread-safe)."""

    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._blobs: dict[str, bytes] = {}
        self._descs: dict[str, Descriptor] = {}
        self._tags: dict[str, Descriptor] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self._name

    def exists(self, desc: Descriptor) -> bool:
        return desc.digest in self._blobs

    def fetch(self, desc: Descriptor) -> VerifyingReader:
        try:
            data = self._blobs[desc.digest]
        except KeyError:
            raise NotFoundError(f"{desc.digest} not found in {self._name}") from None
        return VerifyingReader(io.BytesIO(data), desc.digest, desc.size)

    def fetch_range(self, desc: Descriptor, offset: int, length: int) -> bytes:
        try:
            return self._blobs[desc.digest][offset : offset + length]
        except KeyError:
            raise NotFoundError(f"{desc.digest} not found in {self._name}") from None

    def push(self, desc: Descriptor, data: "ByteReader | bytes", on_bytes: ByteCallback | None = None) -> None:
        content = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data.read()
        if len(content) != desc.size:
            raise SizeMismatchError(desc.digest, desc.size, len(content))
        actual = digest_bytes(content, desc.digest.split(":", 1)[0])
        if actual != desc.digest:
            raise DigestMismatchError(desc.digest, desc.digest, actual)
        with self._lock:
            self._blobs[desc.digest] = content
            self._descs[desc.digest] = desc
        if on_bytes:
            on_bytes(len(content))

    def push_stream(
        self, chunks: Iterable[bytes], media_type: str, on_bytes: ByteCallback | None = None
    ) -> Descriptor:
        content = b"".join(chunks)
        desc = Descriptor.from_bytes(media_type, content)
        self.push(desc, content, on_bytes)
        return desc

    def resolve(self, reference: str) -> Descriptor:
        if reference in self._tags:
            return self._tags[reference]
        if reference in self._descs:
            return self._descs[reference]
        raise NotFoundError(f"{reference!r} not found in {self._name}")

    def tag(self, desc: Descriptor, tag: str) -> None:
        if not self.exists(desc):
            raise NotFoundError(f"cannot tag {desc.digest}: not in {self._name}")
        with self._lock:
            self._tags[tag] = Descriptor(desc.media_type, desc.digest, desc.size, artifact_type=desc.artifact_type)

    def tags(self) -> list[str]:
        return sorted(self._tags)

    def referrers(self, subject: Descriptor, artifact_type: str = "") -> list[Descriptor]:
        found = []
        for digest, desc in list(self._descs.items()):
            if desc.media_type not in mt.MANIFEST_OR_INDEX_TYPES:
                continue
            parsed = parse_manifest(self._blobs[digest], desc.media_type)
            if parsed.subject is None or parsed.subject.digest != subject.digest:
                continue
            ref = parsed.descriptor().replace(annotations=dict(parsed.annotations))
            if not artifact_type or ref.artifact_type == artifact_type:
                found.append(ref)
        return found

    def delete(self, desc: Descriptor) -> None:
        with self._lock:
            if self._blobs.pop(desc.digest, None) is None:
                raise NotFoundError(f"{desc.digest} not found in {self._name}")
            self._descs.pop(desc.digest, None)
            for tag in [t for t, d in self._tags.items() if d.digest == desc.digest]:
                del self._tags[tag]
