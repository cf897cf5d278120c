"""Registry mirrors: a read-through store that asks mirror hosts first.

A cluster can put a pull-through cache or a peer-to-peer distributor (Spegel, Dragonfly,
a ``docker-registry`` in proxy mode) in front of the registry. Mirrors come from two places:

* ``Options.mirrors`` — ``{registry: (host, ...)}`` (``--mirror HOST`` on the CLI; the key
  ``"*"`` applies to every registry);
* ``Options.hosts_dir`` — containerd's ``hosts.toml`` directory layout (``certs.d``):
  ``<dir>/<registry>/hosts.toml`` (``host_port_`` and ``host:port`` spellings for ports)
  or ``<dir>/_default/hosts.toml``, with ``server`` and ``[host."URL"]`` tables carrying
  ``capabilities``, ``skip_verify``, ``ca``, ``header`` and ``override_path``.

Mirrors are tried in order, the upstream last. Content is addressed by digest and
verified, so a mirror with only the ``pull`` capability serves blobs and manifests by
digest; turning a *tag* into a digest is trusted only to hosts with ``resolve``
(containerd's rule: a public mirror must not decide what a tag means). Referrers (the
compatibility check reads them) are listed through mirrors too: found by digest, verified
by digest, a mirror can at worst omit one. Requests to a
mirror carry ``?ns=<registry>`` as containerd sends them. A mirror that fails or lacks the
content is skipped silently; only the upstream's error is reported.

Credentials: a mirror is another host, so it never receives the explicit credentials
given for the registry (``Options.username/password``); it authenticates with what the
docker config or a credential helper holds for the mirror's own host, else anonymously.
A hosts.toml ``server`` is the registry's own endpoint and keeps them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..digest import VerifyingReader
from ..errors import InvalidContentError, OcikitError, UnsupportedError
from ..options import Options
from ..reference import DOCKER_HUB, RegistryReference
from ..spec.descriptor import Descriptor
from .base import ByteCallback, ByteReader, Store

log = logging.getLogger(__name__)

PULL, RESOLVE, PUSH = "pull", "resolve", "push"
_ALL = frozenset({PULL, RESOLVE, PUSH})


@dataclass(frozen=True)
class MirrorHost:
    """One ``[host."URL"]`` entry (or a ``--mirror`` host)."""

    host: str  # host[:port]
    scheme: str = ""  # "" = decided like any registry (http on loopback, else https)
    path: str = ""  # an API prefix in the URL (only with override_path)
    capabilities: frozenset[str] = field(default=frozenset({PULL, RESOLVE}))
    skip_verify: bool = False
    ca: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    override_path: bool = False

    @classmethod
    def parse(cls, text: str, **settings: Any) -> "MirrorHost":
        """``host[:port]`` or ``http(s)://host[:port][/path]``."""
        if "://" not in text:
            text = "//" + text
        parts = urlsplit(text)
        if parts.scheme not in ("", "http", "https") or not parts.netloc:
            raise InvalidContentError(f"invalid mirror host {text.lstrip('/')!r}")
        return cls(host=parts.netloc, scheme=parts.scheme, path=parts.path.rstrip("/"), **settings)


@dataclass(frozen=True)
class HostsConfig:
    """A registry's hosts configuration: mirrors in order, and the upstream server."""

    server: MirrorHost | None
    mirrors: tuple[MirrorHost, ...]


def load_hosts_config(hosts_dir: str, registry: str) -> HostsConfig | None:
    """Read ``hosts.toml`` for ``registry`` from a containerd ``certs.d``-style directory."""
    for name in _namespace_dirs(registry):
        path = os.path.join(hosts_dir, name, "hosts.toml")
        if os.path.isfile(path):
            return parse_hosts_toml(path)
    return None


def _namespace_dirs(registry: str) -> list[str]:
    names = []
    if ":" in registry and not registry.endswith("]"):
        host, port = registry.rsplit(":", 1)
        names.append(f"{host}_{port}_")
    names += [registry, "_default"]
    return names


def parse_hosts_toml(path: str) -> HostsConfig:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except (OSError, ValueError) as exc:
        raise InvalidContentError(f"cannot read {path}: {exc}") from None
    base = os.path.dirname(path)
    server = None
    if isinstance(document.get("server"), str):
        server = MirrorHost.parse(document["server"], **_settings(document, base), capabilities=_ALL)
    mirrors = []
    hosts = document.get("host") or {}
    if not isinstance(hosts, Mapping):
        raise InvalidContentError(f"{path}: 'host' must be a table of host URLs")
    for url, table in hosts.items():  # TOML tables keep their file order
        if not isinstance(table, Mapping):
            raise InvalidContentError(f"{path}: [host.{url!r}] must be a table")
        caps = table.get("capabilities")
        capabilities = frozenset(caps) if isinstance(caps, list) else _ALL
        mirrors.append(MirrorHost.parse(url, **_settings(table, base), capabilities=capabilities))
    return HostsConfig(server, tuple(mirrors))


def _settings(table: Mapping[str, Any], base: str) -> dict[str, Any]:
    ca = table.get("ca") or ()
    cas = (ca,) if isinstance(ca, str) else tuple(str(c) for c in ca)
    headers = table.get("header") or {}
    return {
        "skip_verify": bool(table.get("skip_verify", False)),
        "ca": tuple(c if os.path.isabs(c) else os.path.join(base, c) for c in cas),
        "headers": {str(k): ", ".join(v) if isinstance(v, list) else str(v) for k, v in headers.items()},
        "override_path": bool(table.get("override_path", False)),
    }


def mirror_config(registry: str, options: Options) -> HostsConfig:
    """Mirrors for ``registry`` from ``Options.mirrors`` (first) and ``Options.hosts_dir``."""
    explicit = tuple(options.mirrors.get(registry, ())) + tuple(options.mirrors.get("*", ()))
    mirrors = [MirrorHost.parse(h) for h in explicit]
    server = None
    if options.hosts_dir:
        config = load_hosts_config(options.hosts_dir, registry)
        if config is not None:
            mirrors += config.mirrors
            server = config.server
    return HostsConfig(server, tuple(mirrors))


def open_with_mirrors(ref: RegistryReference, options: Options) -> Store:
    """The registry store for ``ref``, wrapped in a :class:`MirrorStore` when mirrors are configured."""
    from ..registry.store import RegistryStore

    config = mirror_config(ref.registry, options)
    if config.server is None and not config.mirrors:
        return RegistryStore.open(ref, options)
    upstream: Store
    if config.server is not None and _canonical(config.server.host) != _canonical(ref.registry):
        upstream = _open_host(config.server, ref, options, namespace="")
    else:
        upstream = RegistryStore.open(ref, options)
    # Explicit credentials (-u, OCIKIT_USERNAME) belong to the registry the reference names; a
    # mirror gets only what the docker config and credential helpers hold for its own host.
    mirror_options = dataclasses.replace(options, username="", password="")
    mirrors = [(m, _open_host(m, ref, mirror_options, namespace=ref.registry)) for m in config.mirrors]
    return MirrorStore(upstream, mirrors)


def _canonical(host: str) -> str:
    return "registry-1.docker.io" if host in (DOCKER_HUB, "index.docker.io") else host


def _open_host(host: MirrorHost, ref: RegistryReference, options: Options, namespace: str) -> Store:
    from ..registry.client import RepositoryClient
    from ..registry.store import RegistryStore
    from ..registry.transport import Transport

    if host.override_path or host.path:
        raise UnsupportedError(f"mirror {host.host}{host.path}: API paths other than /v2 are not supported")
    host_options = options
    if host.skip_verify:
        host_options = dataclasses.replace(host_options, insecure=True)
    if host.ca:
        host_options = dataclasses.replace(host_options, ca_bundle=host.ca[0])
    transport = Transport(host.host, host_options, scheme=host.scheme, namespace=namespace)
    transport.session.headers.update(host.headers)
    return RegistryStore(RepositoryClient(transport, ref.repository))


class MirrorStore:
    """Reads from mirrors first, then the upstream; writes and listings go to the upstream only."""

    def __init__(self, upstream: Store, mirrors: Iterable[tuple[MirrorHost, Store]]) -> None:
        self.upstream = upstream
        self.mirrors = list(mirrors)

    def describe(self) -> str:
        return self.upstream.describe()

    def _readers(self, capability: str) -> list[Store]:
        return [store for host, store in self.mirrors if capability in host.capabilities] + [self.upstream]

    def _first(self, capability: str, call: Any) -> Any:
        candidates = self._readers(capability)
        for store in candidates[:-1]:
            try:
                return call(store)
            except OcikitError as exc:  # a missing or broken mirror is not the user's problem
                log.debug("mirror %s skipped: %s", store.describe(), exc)
            except OSError as exc:
                log.debug("mirror %s skipped: %s", store.describe(), exc)
        return call(candidates[-1])

    def exists(self, desc: Descriptor) -> bool:
        mirrors = self._readers(PULL)[:-1]
        return any(_quiet_exists(store, desc) for store in mirrors) or self.upstream.exists(desc)

    def fetch(self, desc: Descriptor) -> VerifyingReader:
        # Registry readers connect on the first read: read it here so a mirror that lacks the
        # blob falls through to the next host instead of failing the pull later.
        return self._first(PULL, lambda store: _PrimedReader(store.fetch(desc)))  # type: ignore[no-any-return]

    def fetch_range(self, desc: Descriptor, offset: int, length: int) -> bytes:
        return self._first(PULL, lambda store: store.fetch_range(desc, offset, length))  # type: ignore[no-any-return]

    def resolve(self, reference: str) -> Descriptor:
        by_digest = reference.startswith(("sha256:", "sha512:"))
        return self._first(PULL if by_digest else RESOLVE, lambda store: store.resolve(reference))  # type: ignore[no-any-return]

    def referrers(self, subject: Descriptor, artifact_type: str = "") -> list[Descriptor]:
        # Referrers (compatibility metadata, signatures) are found by the subject's digest and
        # every document is verified by digest; a mirror can at worst omit one, like an outage.
        # An empty answer from a mirror is not final: the upstream may know more.
        answered = False
        for store in self._readers(PULL)[:-1]:
            try:
                found = store.referrers(subject, artifact_type)  # type: ignore[attr-defined]
            except (OcikitError, OSError) as exc:
                log.debug("mirror %s skipped: %s", store.describe(), exc)
                continue
            if found:
                return found  # type: ignore[no-any-return]
            answered = True
        try:
            return self.upstream.referrers(subject, artifact_type)  # type: ignore[attr-defined,no-any-return]
        except (OcikitError, OSError):
            if answered:
                return []
            raise

    def push(self, desc: Descriptor, data: "ByteReader | bytes", on_bytes: ByteCallback | None = None) -> None:
        self.upstream.push(desc, data, on_bytes)

    def push_stream(self, chunks: Iterable[bytes], media_type: str, on_bytes: ByteCallback | None = None) -> Descriptor:
        return self.upstream.push_stream(chunks, media_type, on_bytes)

    def tag(self, desc: Descriptor, tag: str) -> None:
        self.upstream.tag(desc, tag)

    def __getattr__(self, name: str) -> Any:
        # tags, referrers, delete, mount...: the upstream's capabilities, unchanged
        return getattr(self.upstream, name)


def _quiet_exists(store: Store, desc: Descriptor) -> bool:
    try:
        return store.exists(desc)
    except (OcikitError, OSError):
        return False


class _PrimedReader:
    """A verifying reader whose first chunk was already read (to prove the source has the blob)."""

    def __init__(self, reader: VerifyingReader) -> None:
        self._reader = reader
        try:
            self._first = reader.read(1 << 16)
        except BaseException:
            reader.close()
            raise

    def read(self, size: int = -1) -> bytes:
        if self._first:
            first, self._first = self._first, b""
            if size is not None and 0 <= size < len(first):
                first, self._first = first[:size], first[size:]
            return first
        return self._reader.read(size)

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def verify_to_end(self) -> None:
        self._first = b""
        self._reader.verify_to_end()

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "_PrimedReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
