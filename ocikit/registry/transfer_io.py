"""Moving blob bytes: a resumable download reader and the two upload strategies.

Download: :class:`ResumingBlobReader` streams a blob and, when the connection drops or
the body ends early, reopens it with ``Range: bytes=N-`` and carries on (a ``200`` instead
of ``206`` means the server restarted from zero, so the first N bytes are skipped). The
caller wraps it in a :class:`~ocikit.digest.VerifyingReader`, so whatever happens on the
wire, only the promised bytes come out.

Upload: a seekable source up to ``Options.monolithic_max`` goes up in one streaming ``PUT``
(replayable, so it may be retried); larger blobs and streams of unknown length go up in
bounded ``PATCH`` chunks. If a chunk fails part-way, the upload's status (``GET`` on the session, ``Range:
0-N``) says how much the registry kept, and the rest of that chunk is resent. Memory is
bounded by one chunk per upload.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, cast
from urllib.parse import urljoin

import requests
import urllib3

from ..byteio import ByteReader
from ..digest import new_hasher
from ..errors import (
    DigestMismatchError,
    RegistryError,
    ServerError,
    SizeMismatchError,
    TooManyRequestsError,
    TransportError,
)
from ..spec.descriptor import Descriptor
from .client import RepositoryClient
from .retry import backoff_delay
from .transport import SizedReader

log = logging.getLogger(__name__)

_READ_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class ResumingBlobReader(io.RawIOBase):
    """Stream one blob, resuming with Range requests after a dropped connection."""

    def __init__(self, client: RepositoryClient, desc: Descriptor) -> None:
        super().__init__()
        self._client = client
        self._desc = desc
        self._position = 0
        self._response: requests.Response | None = None
        self._drops = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        while True:
            if self._position >= self._desc.size:
                data = self._read_response(size) if self._response is not None else b""
                # Bytes beyond the promised size are passed on so the verifier reports them.
                if data:
                    self._position += len(data)
                return data
            if self._response is None:
                self._open()
            try:
                data = self._read_response(size)
            except _READ_ERRORS as exc:
                self._drop(type(exc).__name__)
                continue
            if not data:
                self._drop("connection closed early")
                continue
            self._position += len(data)
            return data

    def _read_response(self, size: int) -> bytes:
        assert self._response is not None
        return self._response.raw.read(size, decode_content=True)

    def _open(self) -> None:
        response = self._client.get_blob(self._desc.digest, self._position)
        if self._position and response.status_code == 200:
            self._skip(response, self._position)  # the server ignored Range: restart and discard
        elif response.status_code == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self._position:
                response.close()
                raise TransportError(
                    self._client.transport.registry,
                    f"resume download of {self._desc.short()}",
                    reason=f"registry resumed at the wrong offset ({response.headers.get('Content-Range')!r})",
                )
        self._response = response

    def _skip(self, response: requests.Response, count: int) -> None:
        while count:
            chunk = response.raw.read(min(count, 1 << 20), decode_content=True)
            if not chunk:
                raise TransportError(
                    self._client.transport.registry, f"resume download of {self._desc.short()}", reason="body ended"
                )
            count -= len(chunk)

    def _drop(self, why: str) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        self._drops += 1
        policy = self._client.transport.options.retry
        if self._drops >= policy.attempts:
            raise TransportError(
                self._client.transport.registry,
                f"download blob {self._desc.short()} from {self._client.name}",
                reason=f"{why} at byte {self._position} of {self._desc.size}, gave up after {self._drops} attempts",
            )
        log.info("download of %s interrupted (%s) at %d; resuming", self._desc.short(), why, self._position)
        time.sleep(backoff_delay(policy, self._drops))

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        super().close()


def upload_blob(client: RepositoryClient, desc: Descriptor, data: "ByteReader | bytes", on_bytes: Any = None) -> None:
    """Upload ``data`` as ``desc`` (seekable: one streaming PUT; otherwise chunked PATCH)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = io.BytesIO(bytes(data))
    if _seekable(data) and desc.size <= client.transport.options.monolithic_max:
        _upload_monolithic(client, desc, cast(BinaryIO, data), on_bytes)
        return
    hasher = new_hasher(desc.digest)
    size = 0

    def chunks() -> Iterator[bytes]:
        nonlocal size
        while chunk := data.read(client.transport.options.chunk_size):
            hasher.update(chunk)
            size += len(chunk)
            if size > desc.size:
                raise SizeMismatchError(desc.digest, desc.size, size)
            yield chunk

    location = _upload_chunks(client, chunks(), on_bytes)
    if size != desc.size:
        raise SizeMismatchError(desc.digest, desc.size, size)
    actual = f"sha256:{hasher.hexdigest()}"
    if actual != desc.digest:
        raise DigestMismatchError(desc.digest, desc.digest, actual)
    _finish_upload(client, location, desc.digest)


def upload_stream(
    client: RepositoryClient, chunks: Iterable[bytes], media_type: str, on_bytes: Any = None
) -> Descriptor:
    """Upload a stream of unknown digest; the digest is computed on the way."""
    hasher = new_hasher("sha256")
    size = 0

    def hashed() -> Iterator[bytes]:
        nonlocal size
        for chunk in _rechunk(chunks, client.transport.options.chunk_size):
            hasher.update(chunk)
            size += len(chunk)
            yield chunk

    location = _upload_chunks(client, hashed(), on_bytes)
    desc = Descriptor(media_type, f"sha256:{hasher.hexdigest()}", size)
    _finish_upload(client, location, desc.digest)
    return desc


def _seekable(data: Any) -> bool:
    try:
        return bool(data.seekable()) and hasattr(data, "tell")
    except (AttributeError, OSError):
        return False


def _upload_monolithic(client: RepositoryClient, desc: Descriptor, data: BinaryIO, on_bytes: Any) -> None:
    policy = client.transport.options.retry
    start = data.tell()
    for attempt in range(1, policy.attempts + 1):
        _, location = client.start_upload()
        data.seek(start)
        body = SizedReader(data, desc.size, on_bytes)
        try:
            client.transport.request(
                "PUT",
                location,
                operation=f"upload blob {desc.short()} to {client.name}",
                scopes=client.push_scope,
                params={"digest": desc.digest},
                headers={"Content-Type": "application/octet-stream"},
                body=body,
                ok=(201, 204),
                retry=False,  # a failed PUT invalidates the session: start a new one below
            ).close()
            return
        except (TransportError, ServerError, TooManyRequestsError) as exc:
            if attempt == policy.attempts:
                raise
            log.info("upload of %s failed (%s); restarting", desc.short(), exc)
            time.sleep(backoff_delay(policy, attempt))
        except RegistryError as exc:
            if "DIGEST_INVALID" in exc.codes or "SIZE_INVALID" in exc.codes:
                raise DigestMismatchError(
                    f"upload of {desc.digest} to {client.name}", desc.digest, "different content"
                ) from None
            raise


def _upload_chunks(client: RepositoryClient, chunks: Iterable[bytes], on_bytes: Any) -> str:
    """PATCH every chunk into one upload session; return the session's final Location."""
    _, location = client.start_upload()
    offset = 0
    for chunk in chunks:
        location = _patch_chunk(client, location, chunk, offset)
        offset += len(chunk)
        if on_bytes:
            on_bytes(len(chunk))
    return location


def _patch_chunk(client: RepositoryClient, location: str, chunk: bytes, offset: int) -> str:
    policy = client.transport.options.retry
    sent = 0  # bytes of this chunk the registry already holds
    for attempt in range(1, policy.attempts + 1):
        part = chunk[sent:]
        start = offset + sent
        try:
            response = client.transport.request(
                "PATCH",
                location,
                operation=f"upload chunk to {client.name}",
                scopes=client.push_scope,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + len(part) - 1}",
                },
                body=part,
                ok=(202, 204),
                retry=False,
            )
            response.close()
            return _absolute(client, response.headers.get("Location") or location)
        except (TransportError, ServerError, TooManyRequestsError):
            if attempt == policy.attempts:
                raise
            time.sleep(backoff_delay(policy, attempt))
            held = _upload_offset(client, location)
            sent = max(0, min(len(chunk), held - offset))
    raise AssertionError("unreachable")


def _upload_offset(client: RepositoryClient, location: str) -> int:
    """How many bytes the upload session holds (GET on the session: ``Range: 0-<last>``)."""
    response = client.transport.request(
        "GET", location, operation=f"check upload to {client.name}", scopes=client.push_scope, ok=(204, 200)
    )
    response.close()
    match = re.match(r"(?:bytes=)?0-(\d+)", response.headers.get("Range", ""))
    # distribution reports an empty session as "0-0" too (it clamps size-1 at zero), so
    # "0-0" is read as empty: resending one byte fails loudly, skipping one would corrupt.
    return int(match.group(1)) + 1 if match and match.group(1) != "0" else 0


def _finish_upload(client: RepositoryClient, location: str, digest: str) -> None:
    try:
        client.transport.request(
            "PUT",
            location,
            operation=f"finish upload of {digest[:19]} to {client.name}",
            scopes=client.push_scope,
            params={"digest": digest},
            headers={"Content-Type": "application/octet-stream"},
            body=b"",
            ok=(201, 204),
        ).close()
    except RegistryError as exc:
        if "DIGEST_INVALID" in exc.codes:
            raise DigestMismatchError(f"upload to {client.name}", digest, "different content") from None
        raise


def _absolute(client: RepositoryClient, location: str) -> str:
    return urljoin(client.transport.base_url + "/", location)


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup arbitrary chunks into ``size``-byte pieces (the last may be shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
