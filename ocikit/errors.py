"""Typed errors raised by ocikit.

The library never prints; it raises one of these, and the CLI turns each class into
a one-line message and a stable exit code (see ``EXIT_CODES``). Every class also
inherits a standard-library base, so ``except LookupError`` and friends keep working.

Hierarchy::

    OcikitError
    ├── InvalidReferenceError (ValueError)       a reference string that does not parse
    ├── InvalidContentError (ValueError)         a manifest/index/config/zTOC that is malformed
    │   └── CorruptDataError                     bytes that do not decode as their format (tar, gzip, zstd)
    ├── NotFoundError (LookupError)              a tag, manifest, blob, file or path that is absent
    ├── AlreadyExistsError (FileExistsError)
    ├── UnsupportedError                         the store or registry lacks a capability
    ├── VerificationError (ValueError)           content does not match what was promised
    │   ├── DigestMismatchError
    │   └── SizeMismatchError
    ├── UnsafeContentError (ValueError)          a tar entry or link that would escape, a bomb, a device
    ├── IncompatibleError                        the host cannot run the artifact
    ├── WaitTimeoutError (TimeoutError)
    ├── LocalIOError (OSError)                   a local file could not be read or written
    ├── RelocationError                          a tree cannot be moved to a new prefix (a string cannot grow)
    └── RegistryError                            the registry answered with an error (carries status/codes)
        ├── AuthenticationError                  401: no or wrong credentials
        ├── PermissionDeniedError                403 / DENIED
        ├── RegistryNotFoundError (NotFoundError) 404 or *_UNKNOWN codes
        ├── TooManyRequestsError                 429 after retries
        ├── ServerError                          5xx after retries
        └── TransportError                       connection/timeout failures after retries

Messages never contain credentials: URLs are reduced to scheme, host and path (the query
of an upload URL can carry state tokens) before they are put in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


class OcikitError(Exception):
    """Base class of every error ocikit raises on purpose."""


class InvalidReferenceError(OcikitError, ValueError):
    """A reference such as ``registry/repo:tag`` or ``oci:path@digest`` is malformed."""


class InvalidContentError(OcikitError, ValueError):
    """A document (manifest, index, config, zTOC, tar) is malformed or of an unexpected type."""


class CorruptDataError(InvalidContentError):
    """Bytes do not decode as the format they claim to be (a tar archive, a gzip or zstd stream).

    Where the bytes are a blob pinned by its digest, the caller reports a
    :class:`VerificationError` instead: the blob is corrupt, or was published broken.
    """


class NotFoundError(OcikitError, LookupError):
    """The requested tag, manifest, blob, file or path does not exist."""


class AlreadyExistsError(OcikitError, FileExistsError):
    """The target already exists and the operation refuses to overwrite it."""


class UnsupportedError(OcikitError):
    """The store, registry or input does not support the requested operation."""


class VerificationError(OcikitError, ValueError):
    """Content does not match its descriptor."""


class DigestMismatchError(VerificationError):
    """Bytes hash to a different digest than expected."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class SizeMismatchError(VerificationError):
    """More or fewer bytes arrived than the descriptor promised."""

    def __init__(self, what: str, expected: int, actual: int) -> None:
        relation = "truncated" if actual < expected else "too long"
        super().__init__(f"size mismatch for {what}: expected {expected} bytes, got {actual} ({relation})")
        self.expected = expected
        self.actual = actual


class UnsafeContentError(OcikitError, ValueError):
    """An archive entry breaks a safety rule (path escape, link escape, device, bomb)."""

    def __init__(self, entry: str, rule: str) -> None:
        super().__init__(f"unsafe entry {entry!r}: {rule}")
        self.entry = entry
        self.rule = rule


class IncompatibleError(OcikitError):
    """The host does not satisfy the artifact's compatibility requirements."""


class WaitTimeoutError(OcikitError, TimeoutError):
    """Waiting for a condition (a ready marker, a lock) took longer than allowed."""


class LocalIOError(OcikitError, OSError):
    """A local file or directory could not be read or written."""


class RelocationError(OcikitError):
    """A tree cannot be relocated to the requested prefix; nothing was written.

    ``problems`` lists what does not fit (one entry per string: ``path``, ``room``, ``needed``,
    ``reason``), ``max_new_length`` is the longest destination that would fit when one can be
    computed (``None`` otherwise).
    """

    def __init__(self, message: str, problems: tuple = (), max_new_length: int | None = None) -> None:
        super().__init__(message)
        self.problems = problems
        self.max_new_length = max_new_length


def redact_url(url: str) -> str:
    """Return ``url`` without user info, query or fragment, safe to put in a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of the registry's ``{"errors": [...]}`` body (distribution-spec error codes)."""

    code: str
    message: str = ""


class RegistryError(OcikitError):
    """The registry answered with an error status.

    ``operation`` says what ocikit was doing in words ("fetch manifest", "upload blob"),
    ``details`` are the OCI error codes from the body, ``status`` is the HTTP status
    (0 when no response arrived).
    """

    def __init__(
        self,
        registry: str,
        operation: str,
        status: int = 0,
        details: tuple[ErrorDetail, ...] = (),
        method: str = "",
        url: str = "",
        reason: str = "",
    ) -> None:
        self.registry = registry
        self.operation = operation
        self.status = status
        self.details = details
        self.method = method
        self.url = redact_url(url) if url else ""
        self.reason = reason
        super().__init__(self._format())

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(d.code for d in self.details)

    @property
    def is_temporary(self) -> bool:
        """Whether retrying the same request may succeed (429, 5xx, connection trouble)."""
        return self.status in (408, 429) or self.status >= 500 or self.status == 0

    def _format(self) -> str:
        text = f"registry {self.registry}: {self.operation} failed"
        if self.status:
            text += f": HTTP {self.status}"
        if self.details:
            first = self.details[0]
            text += f" {first.code}" + (f" ({first.message})" if first.message else "")
        if self.reason:
            text += f": {self.reason}"
        return text


class AuthenticationError(RegistryError):
    """The registry rejected the credentials, or asked for credentials none were given for."""


class PermissionDeniedError(RegistryError):
    """The credentials are valid but not allowed to do this."""


class RegistryNotFoundError(RegistryError, NotFoundError):
    """The registry says the repository, manifest or blob is unknown."""


class TooManyRequestsError(RegistryError):
    """The registry kept answering 429 after the retries were used up."""


class ServerError(RegistryError):
    """The registry kept answering 5xx after the retries were used up."""


class TransportError(RegistryError):
    """The connection failed or timed out after the retries were used up."""


_NOT_FOUND_CODES = frozenset({"BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"})


def registry_error_class(status: int, codes: tuple[str, ...]) -> type[RegistryError]:
    """Pick the exception class for an HTTP status and the OCI error codes in the body."""
    if status == 401 or "UNAUTHORIZED" in codes:
        return AuthenticationError
    if status == 403 or "DENIED" in codes:
        return PermissionDeniedError
    if status == 404 or _NOT_FOUND_CODES.intersection(codes):
        return RegistryNotFoundError
    if status == 429 or "TOOMANYREQUESTS" in codes:
        return TooManyRequestsError
    if status >= 500:
        return ServerError
    if status == 0:
        return TransportError
    return RegistryError


# Exit codes of the CLI, by error class; the first matching class wins, so order is specific → general.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (InvalidReferenceError, 2),
    (AuthenticationError, 4),
    (PermissionDeniedError, 4),
    (NotFoundError, 3),
    (VerificationError, 5),
    (UnsafeContentError, 6),
    (IncompatibleError, 7),
    (WaitTimeoutError, 8),
    (RelocationError, 10),
    (RegistryError, 9),
    (OcikitError, 1),
)


def exit_code_for(error: BaseException) -> int:
    """The CLI exit code for an error (1 when nothing more specific applies)."""
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return 1
