"""A registry repository as a :class:`~ocikit.content.base.Store`.

Adapts :class:`~ocikit.registry.client.RepositoryClient` to the store protocol: manifests
go through ``/manifests/``, blobs through ``/blobs/``; pushes skip what exists; a pushed
manifest with a ``subject`` is made discoverable (referrers API or tag fallback); blobs on
the same registry are mounted across repositories instead of copied.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from ..byteio import ByteReader
from ..digest import VerifyingReader, digest_bytes
from ..errors import DigestMismatchError, NotFoundError
from ..options import DEFAULT_OPTIONS, Options
from ..reference import DEFAULT_TAG, RegistryReference, name_with
from ..spec.descriptor import Descriptor
from ..spec.manifest import parse_manifest
from .client import RepositoryClient
from .referrers import RegistryReferrers
from .transfer_io import ResumingBlobReader, upload_blob, upload_stream
from .transport import get_transport


class RegistryStore:
    """Store protocol over one registry repository (all capabilities)."""

    def __init__(self, client: RepositoryClient) -> None:
        self.client = client
        self.registry = client.transport.registry
        self.repository = client.repository
        self._referrers = RegistryReferrers(client)

    @classmethod
    def open(cls, reference: RegistryReference, options: Options = DEFAULT_OPTIONS, namespace: str = "") -> "RegistryStore":
        transport = get_transport(reference.registry, options, namespace=namespace)
        return cls(RepositoryClient(transport, reference.repository))

    def describe(self) -> str:
        return self.client.name

    # -- Store protocol ------------------------------------------------------------------

    def exists(self, desc: Descriptor) -> bool:
        if desc.is_manifest or desc.is_index:
            return self.client.head_manifest(desc.digest) is not None
        return self.client.head_blob(desc.digest) is not None

    def fetch(self, desc: Descriptor) -> VerifyingReader:
        what = f"{desc.digest} from {self.describe()}"
        if desc.is_manifest or desc.is_index:
            raw, _ = self.client.get_manifest(desc.digest)
            return VerifyingReader(io.BytesIO(raw), desc.digest, desc.size, what=what)
        return VerifyingReader(ResumingBlobReader(self.client, desc), desc.digest, desc.size, what=what)  # type: ignore[arg-type]

    def fetch_range(self, desc: Descriptor, offset: int, length: int) -> bytes:
        return self.client.get_blob_range(desc.digest, offset, min(length, max(desc.size - offset, 0)))

    def push(self, desc: Descriptor, data: "ByteReader | bytes", on_bytes=None) -> None:  # type: ignore[no-untyped-def]
        if desc.is_manifest or desc.is_index:
            raw = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data.read()
            self._push_manifest(desc.digest, raw, desc.media_type)
            if on_bytes:
                on_bytes(len(raw))
            return
        if self.client.head_blob(desc.digest) is not None:
            return
        upload_blob(self.client, desc, data, on_bytes)

    def push_stream(self, chunks: Iterable[bytes], media_type: str, on_bytes=None) -> Descriptor:  # type: ignore[no-untyped-def]
        return upload_stream(self.client, chunks, media_type, on_bytes)

    def _push_manifest(self, reference: str, raw: bytes, media_type: str) -> Descriptor:
        parsed = parse_manifest(raw, media_type)
        desc = Descriptor(parsed.media_type, digest_bytes(raw), len(raw))
        if reference.startswith("sha256:") and reference != desc.digest:
            raise DigestMismatchError(f"manifest for {self.describe()}", reference, desc.digest)
        response = self.client.put_manifest(reference, raw, parsed.media_type)
        if parsed.subject is not None:
            self._referrers.record(desc, parsed, api_confirmed="OCI-Subject" in response.headers)
        return desc

    def resolve(self, reference: str) -> Descriptor:
        reference = reference or DEFAULT_TAG
        desc = self.client.head_manifest(reference)
        if desc is None:
            raise NotFoundError(f"{name_with(self.describe(), reference)} not found")
        return desc

    def tag(self, desc: Descriptor, tag: str) -> None:
        current = self.client.head_manifest(tag)
        if current is not None and current.digest == desc.digest:
            return
        raw, media_type = self.client.get_manifest(desc.digest)
        self.client.put_manifest(tag, raw, media_type)

    # -- capabilities --------------------------------------------------------------------

    def tags(self) -> list[str]:
        return self.client.list_tags()

    def referrers(self, subject: Descriptor, artifact_type: str = "") -> list[Descriptor]:
        return self._referrers.find(subject, artifact_type)

    @property
    def referrers_mode(self) -> str:
        return self._referrers.mode.value

    def delete(self, desc: Descriptor) -> None:
        if desc.is_manifest or desc.is_index:
            self.client.delete_manifest(desc.digest)
        else:
            self.client.delete_blob(desc.digest)

    def mount(self, desc: Descriptor, source: object) -> bool:
        """Cross-repository mount from another repository on the same registry."""
        if not isinstance(source, RegistryStore) or source.client.transport is not self.client.transport:
            return False
        if source.repository == self.repository:
            return self.exists(desc)
        status, _location = self.client.start_upload(mount=desc.digest, mount_from=source.repository)
        # 202 means the registry opened a normal upload instead; it expires on its own.
        return status == 201
