"""The request engine under every registry call: scheme, auth, retries, errors.

:meth:`Transport.request` sends one logical request and deals with everything that is
not the caller's business: the ``401`` challenge (learn the scheme, fetch a token for the
needed scope, resend once), retries with backoff for 429/5xx/connection errors (only
when the body can be replayed), timeouts on every call, and turning an error answer
into a typed :class:`~ocikit.errors.RegistryError` that names the registry, the operation
and the registry's error code — never a URL query or a credential.

Credentials belong to the registry's own origin (scheme, host, port), as in containerd:
an upload ``Location`` on another host gets no ``Authorization`` (it carries its own
authority in the URL, if any), a redirect to another host loses it (requests strips it),
and a ``401`` challenge is learned only from the registry itself — otherwise a storage
host could name a token realm of its choosing and receive the user's password there.

One :class:`Transport` exists per registry host and options (``get_transport``), so
repositories on the same host share the connection pool and the token cache.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ..errors import (
    AuthenticationError,
    ErrorDetail,
    InvalidContentError,
    RegistryError,
    SizeMismatchError,
    TransportError,
    registry_error_class,
)
from ..options import Options
from ..reference import DOCKER_HUB, DOCKER_HUB_API
from .auth import Authenticator
from .challenge import pick_challenge
from .credentials import find_credential
from .retry import backoff_delay, should_retry_status

log = logging.getLogger(__name__)

_MAX_ERROR_BODY = 64 << 10  # read at most this much of an error body (go-containerregistry's cap)
_SEND_BLOCK = 1 << 20  # bytes per socket write when streaming a body (http.client's default is 8 KiB)
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


class _BlockAdapter(HTTPAdapter):
    """An adapter that writes request bodies in 1 MiB blocks: fewer syscalls on multi-GB uploads."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = _SEND_BLOCK
        super().init_poolmanager(*args, **kwargs)


def _origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a URL, the port made explicit (what credentials are bound to)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a malformed port never matches the registry
        port = -1
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in _LOOPBACK_HOSTS or name.startswith("127.")


class Transport:
    """HTTP access to one registry host."""

    def __init__(self, registry: str, options: Options, scheme: str = "", namespace: str = "") -> None:
        self.registry = registry  # as written in references ("docker.io", "localhost:5000")
        self.host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        self.options = options
        self.namespace = namespace  # containerd mirrors: ?ns=<upstream registry>
        self._scheme = scheme
        self._scheme_lock = threading.Lock()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = options.user_agent
        adapter = _BlockAdapter(pool_connections=4, pool_maxsize=max(8, options.concurrency * 2 + 2), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.trust_env = True  # honour HTTPS_PROXY/NO_PROXY like every other client
        self.verify: bool | str = False if options.insecure else (options.ca_bundle or True)
        if options.insecure:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.timeout = (options.connect_timeout, options.read_timeout)
        self.auth = Authenticator(
            registry, lambda: find_credential(registry, options), self.session, self.timeout, self.verify
        )

    # -- scheme --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._scheme:
            with self._scheme_lock:
                if not self._scheme:
                    self._scheme = self._detect_scheme()
        return f"{self._scheme}://{self.host}"

    def _detect_scheme(self) -> str:
        """The one scheme rule (documented in docs/registry.md, "Scheme").

        ``plain_http``: HTTP. Otherwise HTTPS, verified against the system CAs plus
        ``ca_bundle`` (or not verified with ``insecure``). A registry that turns out not to
        speak TLS at all gets plain HTTP only where that is expected: on loopback (a local
        registry, as docker and oras do) or with ``insecure``. A loopback registry that does
        speak TLS (``kubectl port-forward`` to one) keeps HTTPS, so its certificate is checked.
        """
        if self.options.plain_http:
            return "http"
        if not (is_loopback(self.host) or self.options.insecure):
            return "https"
        return "https" if self._speaks_tls() else "http"

    def _speaks_tls(self) -> bool:
        """One unverified probe of ``/v2/``: did a TLS handshake happen at all?"""
        try:
            with warnings.catch_warnings():  # unverified on purpose: only the handshake matters here
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                self.session.get(f"https://{self.host}/v2/", timeout=self.timeout, verify=False).close()
            return True
        except requests.exceptions.SSLError:
            return False  # "wrong version number": the port speaks plain HTTP
        except requests.RequestException:
            # Refused or timed out: nothing to learn. Loopback stays plain HTTP (a local registry
            # being started); elsewhere HTTPS, so the real request reports the real failure.
            return not is_loopback(self.host)

    # -- requests ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        scopes: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: Any = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200,),
        expected: tuple[int, ...] = (),
        retry: bool = True,
    ) -> requests.Response:
        """Send a request and return a response whose status is in ``ok`` or ``expected``.

        ``path`` is ``/v2/...`` or an absolute/relative upload ``Location``. Any other status
        raises the matching :class:`RegistryError` subclass after retries are used up.
        """
        url = self._url(path)
        own_host = self.owns(url)  # only the registry itself sees credentials
        query = self._query(path, params)
        start = body.tell() if hasattr(body, "seek") and hasattr(body, "tell") else None
        replayable = body is None or isinstance(body, (bytes, bytearray)) or start is not None
        attempts = self.options.retry.attempts if (retry and replayable) else 1
        answered_challenge = False
        attempt = 0
        while True:
            attempt += 1
            if start is not None:
                body.seek(start)
            request_headers = dict(headers or {})
            authorization = self.auth.header(scopes) if own_host else None
            if authorization:
                request_headers["Authorization"] = authorization
            try:
                response = self.session.request(
                    method,
                    url,
                    params=query,
                    data=body,
                    headers=request_headers,
                    stream=stream,
                    timeout=self.timeout,
                    verify=self.verify,
                )
            except requests.RequestException as exc:
                if attempt < attempts:
                    self._sleep(attempt, None, operation, type(exc).__name__)
                    continue
                raise TransportError(
                    self.registry, operation, method=method, url=url, reason=_describe_exception(exc)
                ) from None
            status = response.status_code
            if status == 401 and not self.owns(response.url):
                raise self._foreign_challenge(response, operation)
            if status == 401 and not answered_challenge and replayable:
                answered_challenge = True
                if self._answer_challenge(response, scopes, operation):
                    response.close()
                    attempt -= 1  # answering a challenge is not a retry
                    continue
            if status in ok or status in expected:
                return response
            if should_retry_status(status) and attempt < attempts:
                retry_after = response.headers.get("Retry-After")
                response.close()
                self._sleep(attempt, retry_after, operation, f"HTTP {status}")
                continue
            raise self.error_from(response, operation)

    def request_bytes(self, method: str, path: str, *, limit: int, **kwargs: Any) -> tuple[requests.Response, bytes]:
        """Like :meth:`request`, then read the whole (small) body, retrying if the read breaks.

        Raises :class:`InvalidContentError` when the body is larger than ``limit`` bytes.
        """
        operation = kwargs["operation"]
        attempts = self.options.retry.attempts
        for attempt in range(1, attempts + 1):
            response = self.request(method, path, stream=True, **kwargs)
            try:
                with response:
                    data = response.raw.read(limit + 1, decode_content=True) if method != "HEAD" else b""
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt == attempts:
                    raise TransportError(
                        self.registry, operation, method=method, url=self._url(path), reason=_describe_exception(exc)
                    ) from None
                self._sleep(attempt, None, operation, type(exc).__name__)
                continue
            if len(data) > limit:
                raise InvalidContentError(f"{operation}: the response is larger than {limit} bytes")
            return response, data
        raise AssertionError("unreachable")

    def owns(self, url: str) -> bool:
        """Whether ``url`` is on this registry's own origin (the only one given credentials)."""
        return _origin(url) == _origin(self.base_url)

    def _foreign_challenge(self, response: requests.Response, operation: str) -> AuthenticationError:
        """A 401 from another host (an upload location, a redirect target): never answered."""
        response.close()
        host = urlsplit(response.url).netloc.rpartition("@")[2]  # no user info, no query
        return AuthenticationError(
            self.registry,
            operation,
            status=401,
            reason=f"{host} asked for credentials; ocikit sends credentials only to {self.host}",
        )

    def _answer_challenge(self, response: requests.Response, scopes: tuple[str, ...], operation: str) -> bool:
        """Learn the challenge; True if a resend with credentials or a token makes sense."""
        challenge = pick_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            return False
        self.auth.refresh_credential()  # a long-lived process must see rotated or new credentials
        if challenge.scheme == "basic" and self.auth.credential.is_empty:
            raise AuthenticationError(
                self.registry, operation, status=401, reason="the registry requires credentials and none were found"
            )
        self.auth.invalidate(scopes)
        self.auth.learn(challenge)
        return True

    def _sleep(self, attempt: int, retry_after: str | None, operation: str, why: str) -> None:
        delay = backoff_delay(self.options.retry, attempt, retry_after)
        log.info("%s %s: %s, retrying in %.1fs", self.registry, operation, why, delay)
        time.sleep(delay)

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url + "/", path)

    def _query(self, path: str, params: Any) -> Any:
        if not self.namespace or not path.startswith("/v2/"):
            return params
        items = list(params.items()) if isinstance(params, Mapping) else list(params or [])
        return items + [("ns", self.namespace)]

    def error_from(self, response: requests.Response, operation: str) -> RegistryError:
        """The typed error for an unexpected response (reads at most 64 KiB of the body)."""
        details: tuple[ErrorDetail, ...] = ()
        try:
            consumed = getattr(response, "_content", False)
            if isinstance(consumed, bytes):  # a non-streamed response was already read by requests
                raw = consumed[:_MAX_ERROR_BODY]
            else:
                raw = response.raw.read(_MAX_ERROR_BODY, decode_content=True) if response.raw else b""
            document = json.loads(raw) if raw else {}
            details = tuple(
                ErrorDetail(str(e.get("code", "")), str(e.get("message", ""))[:200])
                for e in document.get("errors", [])
                if isinstance(e, dict)
            )
        except (ValueError, AttributeError, OSError, urllib3.exceptions.HTTPError):
            pass
        finally:
            response.close()
        cls = registry_error_class(response.status_code, tuple(d.code for d in details))
        return cls(
            self.registry,
            operation,
            status=response.status_code,
            details=details,
            method=response.request.method or "",
            url=response.url,
        )


def _describe_exception(exc: BaseException) -> str:
    """A short, credential-free reason for a connection failure."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed (use --ca-bundle, or --insecure to skip verification)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed (registry unreachable or connection dropped)"
    return type(exc).__name__


_TRANSPORTS: dict[tuple[Any, ...], Transport] = {}
_TRANSPORTS_LOCK = threading.Lock()


def get_transport(registry: str, options: Options, namespace: str = "") -> Transport:
    """The shared transport for a registry and options (one pool and token cache each)."""
    key = (
        registry,
        namespace,
        options.insecure,
        options.username,
        options.password,
        options.registry_config,
        options.ca_bundle,
        options.connect_timeout,
        options.read_timeout,
        options.retry,
        options.concurrency,
    )
    with _TRANSPORTS_LOCK:
        transport = _TRANSPORTS.get(key)
        if transport is None:
            transport = _TRANSPORTS[key] = Transport(registry, options, namespace=namespace)
        return transport


class SizedReader(io.RawIOBase):
    """A file-like body with a known length, so requests sends Content-Length, not chunked.

    Reports bytes as urllib3 pulls them (progress). Rewinds to its start for a replay.
    """

    def __init__(self, source: Any, length: int, on_bytes: Any = None) -> None:
        super().__init__()
        self._source = source
        self._length = length
        self._remaining = length
        self._on_bytes = on_bytes
        self._start = source.tell()

    def __len__(self) -> int:
        return self._remaining

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if offset != 0 or whence != io.SEEK_SET:
            raise io.UnsupportedOperation("SizedReader only rewinds to its start")
        self._source.seek(self._start)
        self._remaining = self._length
        return 0

    def tell(self) -> int:
        return self._length - self._remaining

    def read(self, size: int | None = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        size = self._remaining if size is None or size < 0 else min(size, self._remaining)
        data = self._source.read(size)
        if not data:
            # The source ended before the promised length: fail now instead of letting the
            # registry wait for bytes that will never come.
            raise SizeMismatchError("upload body", self._length, self._length - self._remaining)
        self._remaining -= len(data)
        if self._on_bytes and data:
            self._on_bytes(len(data))
        return data
