"""Answer registry auth challenges: Basic upfront once challenged, Bearer tokens per scope.

The registry tells us the scheme on the first ``401``; from then on :class:`Authenticator`
attaches the right ``Authorization`` header before each request. Bearer tokens are cached
per (realm, service, scopes) until shortly before they expire, so one pull of fifty blobs
asks the token service once. Identity (refresh) tokens use the OAuth2 ``POST`` flow.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from ..errors import AuthenticationError, TransportError
from .challenge import Challenge
from .credentials import Credential

# Tokens are refreshed this many seconds before they expire.
_EXPIRY_MARGIN = 10.0
_DEFAULT_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True)
class _CachedToken:
    token: str
    expires_at: float


class Authenticator:
    """Per-registry auth state shared by all repositories on that host (thread-safe)."""

    def __init__(
        self,
        registry: str,
        credential_source: Callable[[], Credential],
        session: requests.Session,
        timeout: tuple[float, float],
        verify: "bool | str",
    ) -> None:
        self.registry = registry
        self._credential_source = credential_source
        self._credential: Credential | None = None
        self._session = session
        self._timeout = timeout
        self._verify = verify
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _CachedToken] = {}
        self._lock = threading.Lock()

    @property
    def credential(self) -> Credential:
        if self._credential is None:
            self._credential = self._credential_source()
        return self._credential

    @property
    def scheme(self) -> str:
        return self._challenge.scheme if self._challenge else ""

    def refresh_credential(self) -> None:
        """Look credentials up again on the next use (config files and helpers may have changed)."""
        with self._lock:
            self._credential = None

    def learn(self, challenge: Challenge) -> None:
        """Remember the scheme and parameters from a 401 challenge."""
        with self._lock:
            self._challenge = challenge

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """The ``Authorization`` value for a request needing ``scopes``, or None before any challenge."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._basic_header()
        if challenge.scheme == "bearer":
            return f"Bearer {self._token(challenge, scopes)}"
        return None

    def invalidate(self, scopes: tuple[str, ...]) -> None:
        """Forget a cached token the registry rejected."""
        challenge = self._challenge
        if challenge is not None:
            with self._lock:
                self._tokens.pop((challenge.realm, challenge.service, tuple(sorted(scopes))), None)

    def _basic_header(self) -> str | None:
        credential = self.credential
        if credential.is_empty:
            return None
        raw = f"{credential.username}:{credential.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        key = (challenge.realm, challenge.service, tuple(sorted(set(scopes))))
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached.expires_at > time.monotonic():
                return cached.token
        token, lifetime = self._fetch_token(challenge, key[2])
        with self._lock:
            self._tokens[key] = _CachedToken(token, time.monotonic() + max(lifetime - _EXPIRY_MARGIN, 1.0))
        return token

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> tuple[str, float]:
        if not challenge.realm.startswith(("https://", "http://")):
            raise AuthenticationError(self.registry, "get token", reason=f"invalid token realm {challenge.realm!r}")
        credential = self.credential
        try:
            if credential.identity_token:
                response = self._session.post(
                    challenge.realm,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": credential.identity_token,
                        "service": challenge.service,
                        "scope": " ".join(scopes),
                        "client_id": "ocikit",
                    },
                    timeout=self._timeout,
                    verify=self._verify,
                )
            else:
                params: list[tuple[str, str]] = [("service", challenge.service)] if challenge.service else []
                params += [("scope", scope) for scope in scopes]
                auth = (credential.username, credential.password) if not credential.is_empty else None
                response = self._session.get(
                    challenge.realm, params=params, auth=auth, timeout=self._timeout, verify=self._verify
                )
        except requests.RequestException as exc:
            raise TransportError(self.registry, "get token", reason=type(exc).__name__) from None
        if response.status_code in (401, 403):
            who = f"user {credential.username!r}" if credential.username else "anonymous access"
            raise AuthenticationError(
                self.registry, "get token", status=response.status_code, reason=f"token service refused {who}"
            )
        if response.status_code != 200:
            raise AuthenticationError(self.registry, "get token", status=response.status_code)
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            raise AuthenticationError(self.registry, "get token", reason="token response is not JSON") from None
        if not token:
            raise AuthenticationError(self.registry, "get token", reason="token response has no token")
        return str(token), lifetime


def repository_scope(repository: str, push: bool = False) -> str:
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"
