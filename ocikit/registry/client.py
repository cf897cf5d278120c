"""The distribution-spec API for one repository, call by call.

Thin methods over :class:`~ocikit.registry.transport.Transport`; each names its
operation in words for error messages and asks for the narrowest token scope.
Manifest GET/HEAD always send the OCI and Docker ``Accept`` types (distribution 2.8
answers ``MANIFEST_UNKNOWN`` to an OCI manifest request without them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests

from ..digest import digest_bytes
from ..errors import DigestMismatchError, InvalidContentError, RegistryNotFoundError, UnsupportedError
from ..reference import name_with
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import parse_manifest
from .auth import repository_scope
from .transport import Transport

MAX_MANIFEST_BYTES = 16 << 20
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True)
class ReferrersPage:
    manifests: list[Descriptor]
    filtered: bool  # the registry applied the artifactType filter itself


class RepositoryClient:
    """API calls for ``<registry>/<repository>``."""

    def __init__(self, transport: Transport, repository: str) -> None:
        self.transport = transport
        self.repository = repository
        self.pull_scope = (repository_scope(repository),)
        self.push_scope = (repository_scope(repository, push=True),)

    @property
    def name(self) -> str:
        return f"{self.transport.registry}/{self.repository}"

    def _path(self, kind: str, reference: str = "") -> str:
        return f"/v2/{self.repository}/{kind}/{reference}" if reference else f"/v2/{self.repository}/{kind}/"

    # -- manifests -----------------------------------------------------------------------

    def head_manifest(self, reference: str) -> Descriptor | None:
        response = self.transport.request(
            "HEAD",
            self._path("manifests", reference),
            operation=f"resolve {name_with(self.name, reference)}",
            scopes=self.pull_scope,
            headers={"Accept": mt.MANIFEST_ACCEPT},
            expected=(404,),
        )
        response.close()
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest", "")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        size = response.headers.get("Content-Length", "")
        if not digest or not size.isdigit() or media_type not in mt.MANIFEST_OR_INDEX_TYPES:
            # Some registries omit the digest on HEAD: fall back to GET and hash the bytes.
            raw, media_type = self.get_manifest(reference)
            return Descriptor(media_type, digest_bytes(raw), len(raw))
        return Descriptor(media_type, digest, int(size))

    def get_manifest(self, reference: str) -> tuple[bytes, str]:
        """The exact manifest bytes and media type; verified when ``reference`` is a digest."""
        separator = "@" if ":" in reference else ":"
        response, raw = self.transport.request_bytes(
            "GET",
            self._path("manifests", reference),
            limit=MAX_MANIFEST_BYTES,
            operation=f"fetch manifest {self.name}{separator}{reference}",
            scopes=self.pull_scope,
            headers={"Accept": mt.MANIFEST_ACCEPT},
        )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in mt.MANIFEST_OR_INDEX_TYPES:
            media_type = parse_manifest(raw).media_type
        actual = digest_bytes(raw)
        if reference.startswith("sha256:") and actual != reference:
            raise DigestMismatchError(f"manifest {self.name}@{reference}", reference, actual)
        header_digest = response.headers.get("Docker-Content-Digest", "")
        if header_digest.startswith("sha256:") and header_digest != actual:
            raise DigestMismatchError(f"manifest {name_with(self.name, reference)}", header_digest, actual)
        return raw, media_type

    def put_manifest(self, reference: str, raw: bytes, media_type: str) -> requests.Response:
        response = self.transport.request(
            "PUT",
            self._path("manifests", reference),
            operation=f"push manifest {name_with(self.name, reference)}",
            scopes=self.push_scope,
            headers={"Content-Type": media_type},
            body=raw,
            ok=(201, 200, 202),
        )
        response.close()
        expected = digest_bytes(raw)
        returned = response.headers.get("Docker-Content-Digest", "")
        if returned.startswith("sha256:") and returned != expected:
            raise DigestMismatchError(f"manifest pushed to {self.name}", expected, returned)
        return response

    def delete_manifest(self, digest: str) -> None:
        self.transport.request(
            "DELETE",
            self._path("manifests", digest),
            operation=f"delete manifest {self.name}@{digest}",
            scopes=(f"repository:{self.repository}:delete", *self.push_scope),
            ok=(202, 200),
        ).close()

    # -- blobs ---------------------------------------------------------------------------

    def head_blob(self, digest: str) -> int | None:
        """The blob's size if present, else None."""
        response = self.transport.request(
            "HEAD",
            self._path("blobs", digest),
            operation=f"check blob {digest[:19]} in {self.name}",
            scopes=self.pull_scope,
            expected=(404,),
        )
        response.close()
        if response.status_code == 404:
            return None
        length = response.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else -1

    def get_blob(self, digest: str, offset: int = 0) -> requests.Response:
        """A streaming GET from ``offset``; 206 when resuming, 200 from the start."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return self.transport.request(
            "GET",
            self._path("blobs", digest),
            operation=f"download blob {digest[:19]} from {self.name}",
            scopes=self.pull_scope,
            headers=headers,
            stream=True,
            ok=(200, 206),
        )

    def get_blob_range(self, digest: str, offset: int, length: int) -> bytes:
        """Exactly ``[offset, offset+length)`` (shorter only at the end); insists on 206."""
        if length <= 0:
            return b""
        response = self.transport.request(
            "GET",
            self._path("blobs", digest),
            operation=f"range read of blob {digest[:19]} from {self.name}",
            scopes=self.pull_scope,
            headers={"Range": f"bytes={offset}-{offset + length - 1}"},
            stream=True,
            ok=(206,),
            expected=(200, 416),
        )
        with response:
            if response.status_code == 416:
                return b""
            if response.status_code == 200:
                raise UnsupportedError(f"registry {self.transport.registry} ignored a Range request for {digest}")
            content_range = response.headers.get("Content-Range", "")
            match = re.match(r"bytes (\d+)-(\d+)/", content_range)
            if not match or int(match.group(1)) != offset:
                raise InvalidContentError(f"registry answered range {content_range!r} for bytes {offset}-")
            return response.raw.read(length, decode_content=True)

    def delete_blob(self, digest: str) -> None:
        self.transport.request(
            "DELETE",
            self._path("blobs", digest),
            operation=f"delete blob {digest[:19]} from {self.name}",
            scopes=(f"repository:{self.repository}:delete", *self.push_scope),
            ok=(202, 200),
        ).close()

    # -- uploads -------------------------------------------------------------------------

    def start_upload(self, mount: str = "", mount_from: str = "") -> tuple[int, str]:
        """POST an upload session (or a mount). Returns (status, absolute Location)."""
        params: dict[str, str] = {}
        scopes: tuple[str, ...] = self.push_scope
        if mount:
            params = {"mount": mount, "from": mount_from}
            scopes = (*self.push_scope, repository_scope(mount_from))
        response = self.transport.request(
            "POST",
            self._path("blobs", "uploads/"),
            operation=f"start upload to {self.name}" if not mount else f"mount {mount[:19]} into {self.name}",
            scopes=scopes,
            params=params,
            ok=(202, 201),
        )
        response.close()
        location = response.headers.get("Location", "")
        if response.status_code == 202 and not location:
            raise InvalidContentError(f"registry {self.transport.registry} started an upload without a Location")
        return response.status_code, urljoin(self.transport.base_url + "/", location) if location else ""

    # -- tags and referrers --------------------------------------------------------------

    def list_tags(self) -> list[str]:
        tags: list[str] = []
        path: str | None = self._path("tags", "list")
        params: dict[str, str] | None = {"n": "1000"}
        while path:
            response, body = self.transport.request_bytes(
                "GET", path, limit=MAX_MANIFEST_BYTES, operation=f"list tags of {self.name}",
                scopes=self.pull_scope, params=params,
            )
            try:
                tags.extend(json.loads(body).get("tags") or [])
            except (ValueError, AttributeError):
                raise InvalidContentError(f"tag list of {self.name} is not JSON") from None
            path, params = _next_link(response), None
        return sorted(set(tags))

    def get_referrers(self, digest: str, artifact_type: str = "") -> ReferrersPage | None:
        """The referrers API answer, or None when the registry does not implement the API."""
        manifests: list[Descriptor] = []
        filtered = True
        path: str | None = self._path("referrers", digest)
        params: dict[str, str] | None = {"artifactType": artifact_type} if artifact_type else None
        while path:
            response, body = self.transport.request_bytes(
                "GET",
                path,
                limit=MAX_MANIFEST_BYTES,
                operation=f"list referrers of {digest[:19]} in {self.name}",
                scopes=self.pull_scope,
                headers={"Accept": mt.OCI_INDEX},
                params=params,
                expected=(404, 400),
            )
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if response.status_code == 404:
                if _is_name_unknown(body):
                    raise RegistryNotFoundError(
                        self.transport.registry,
                        f"list referrers of {self.name}",
                        status=404,
                        reason="repository not found",
                    )
                return None
            if response.status_code == 400 or content_type != mt.OCI_INDEX:
                return None
            page = parse_manifest(body, mt.OCI_INDEX)
            manifests.extend(page.manifests)
            applied = response.headers.get("OCI-Filters-Applied", "")
            filtered = filtered and "artifactType" in applied.split(",")
            path, params = _next_link(response), None
        return ReferrersPage(manifests, filtered=filtered and bool(artifact_type))


def _next_link(response: requests.Response) -> str | None:
    match = _LINK_NEXT.search(response.headers.get("Link", ""))
    return match.group(1) if match else None


def _is_name_unknown(body: bytes) -> bool:
    try:
        document: Any = json.loads(body)
    except ValueError:
        return False
    errors = document.get("errors", []) if isinstance(document, dict) else []
    return any(isinstance(e, dict) and e.get("code") == "NAME_UNKNOWN" for e in errors)
