"""Content digests: parsing, hashing and a verifying reader.

Digests always come from the exact bytes (never from re-serialized JSON). Every read path
that hands content to a caller wraps it in :class:`VerifyingReader`, which enforces the
descriptor's size and digest and refuses trailing data: a truncated or tampered download
surfaces as :class:`~ocikit.errors.VerificationError` at the point the last byte is read.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import BinaryIO

from .errors import DigestMismatchError, InvalidReferenceError, SizeMismatchError

# distribution-spec: algorithm ":" encoded; sha256/sha512 are the registered algorithms.
_ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256/sha512 digest, else raise."""
    match = _DIGEST_RE.match(digest)
    if not match:
        raise InvalidReferenceError(f"invalid digest {digest!r}")
    algorithm, encoded = match.groups()
    length = _ALGORITHMS.get(algorithm)
    if length is None:
        raise InvalidReferenceError(f"unsupported digest algorithm {algorithm!r} in {digest!r}")
    if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidReferenceError(f"invalid {algorithm} digest {digest!r}")
    return digest


def hex_of(digest: str) -> str:
    """The encoded part of a digest (``sha256:abc`` → ``abc``)."""
    return digest.split(":", 1)[1]


def algorithm_of(digest: str) -> str:
    return digest.split(":", 1)[0]


def new_hasher(digest_or_algorithm: str = "sha256") -> "hashlib._Hash":
    algorithm = digest_or_algorithm.split(":", 1)[0]
    if algorithm not in _ALGORITHMS:
        raise InvalidReferenceError(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def digest_file(path: str, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> tuple[str, int]:
    """Digest and size of a file, read in chunks."""
    hasher = hashlib.new(algorithm)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            hasher.update(chunk)
            size += len(chunk)
    return f"{algorithm}:{hasher.hexdigest()}", size


class VerifyingReader(io.RawIOBase):
    """Wrap a byte stream, count and hash what passes, verify at the end.

    Raises :class:`SizeMismatchError` as soon as more bytes arrive than ``size`` allows,
    and :class:`DigestMismatchError` / :class:`SizeMismatchError` when the underlying
    stream ends early or with the wrong hash. ``what`` names the content in messages.
    """

    def __init__(self, raw: BinaryIO, digest: str, size: int, what: str = "") -> None:
        super().__init__()
        self._raw = raw
        self._expected_digest = digest
        self._expected_size = size
        self._hasher = new_hasher(digest)
        self._count = 0
        self._what = what or digest
        self._verified = False

    def readable(self) -> bool:
        return True

    @property
    def bytes_read(self) -> int:
        return self._count

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        if not data:
            self._finish()
            return 0
        n = len(data)
        view[:n] = data
        self._hasher.update(data)
        self._count += n
        if self._count > self._expected_size:
            raise SizeMismatchError(self._what, self._expected_size, self._count)
        return n

    def read(self, size: int = -1) -> bytes:  # faster than RawIOBase's readinto round trip
        data = self._raw.read() if size is None or size < 0 else self._raw.read(size)
        if not data:
            self._finish()
            return b""
        self._hasher.update(data)
        self._count += len(data)
        if self._count > self._expected_size:
            raise SizeMismatchError(self._what, self._expected_size, self._count)
        return data

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def _finish(self) -> None:
        if self._verified:
            return
        if self._count != self._expected_size:
            raise SizeMismatchError(self._what, self._expected_size, self._count)
        actual = f"{algorithm_of(self._expected_digest)}:{self._hasher.hexdigest()}"
        if actual != self._expected_digest:
            raise DigestMismatchError(self._what, self._expected_digest, actual)
        self._verified = True

    def verify_to_end(self) -> None:
        """Drain what is left and verify (for callers that stop reading early on purpose)."""
        while self.read(1 << 20):
            pass
        self._finish()

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
