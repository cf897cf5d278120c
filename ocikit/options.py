"""Connection options shared by every operation that touches a registry.

One immutable :class:`Options` travels from the CLI's global flags (or a Python caller)
to :func:`ocikit.content.open.open_store`. Defaults are safe: TLS verified, plain HTTP
only for loopback registries, bounded timeouts and retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter for 429, 5xx and connection errors."""

    attempts: int = 5  # total tries per request, the first included
    base_delay: float = 0.5  # seconds before the second try
    max_delay: float = 10.0  # cap for one sleep (Retry-After is capped by max_retry_after)
    max_retry_after: float = 60.0


@dataclass(frozen=True)
class Options:
    """How to reach registries.

    The scheme rule lives in :meth:`ocikit.registry.transport.Transport.base_url`: HTTPS with
    verification (``ca_bundle`` added to the trusted CAs); ``plain_http`` speaks plain HTTP to
    every registry; ``insecure`` skips TLS verification and falls back to plain HTTP when a
    registry does not speak TLS; loopback registries (``localhost``, ``127.*``, ``[::1]``) try
    HTTPS first and fall back to plain HTTP, as docker does, so a TLS registry behind
    ``kubectl port-forward`` works. ``password`` is never logged or shown.
    """

    insecure: bool = False
    plain_http: bool = False  # no TLS at all, for every registry (oras --plain-http)
    username: str = ""
    password: str = field(default="", repr=False)
    registry_config: str = ""  # a docker config.json to read instead of the default locations
    ca_bundle: str = ""  # a CA bundle path for private registries
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # registry -> mirror hosts
    hosts_dir: str = ""  # containerd-style hosts.toml directory (certs.d)
    concurrency: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    chunk_size: int = 16 << 20  # PATCH chunk size (memory per concurrent chunked upload)
    # Seekable blobs up to this size go up in one streaming PUT; larger ones in PATCH chunks,
    # because proxies in front of registries often cap request bodies (nginx, ingress).
    monolithic_max: int = 512 << 20
    user_agent: str = "ocikit"


DEFAULT_OPTIONS = Options()
