"""Start Debian's ``docker-registry`` (distribution 2.8) on a free loopback port.

Used by the test suite's fixtures and by the benchmarks: a real registry, not a fake.
``RegistryServer`` writes a config into a temporary directory, starts the binary, waits
until ``/v2/`` answers, and stops it on ``close()``. Auth variants: htpasswd (Basic)
and token (Bearer, with a token service supplied by the caller). ``proxy_remote`` makes it a
pull-through cache of another registry (distribution's ``proxy: remoteurl:``);
``access_log`` keeps its access log, from which :meth:`RegistryServer.blob_gets` counts
what it served. With ``tls=(cert, key)`` it serves HTTPS (the certificate must name
127.0.0.1), like a TLS registry reached through ``kubectl port-forward``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

REGISTRY_BINARY = "docker-registry"
# a combined-log-format access line of a blob GET: "GET /v2/<name>/blobs/<digest>[?…] HTTP/1.1" 200
_BLOB_GET = re.compile(r'"GET /v2/[^ "]*/blobs/(sha256:[0-9a-f]{64})[^ "]* HTTP/[0-9.]+" 20[06] ')


def registry_available() -> bool:
    return shutil.which(REGISTRY_BINARY) is not None


def stop_process(process: subprocess.Popen) -> None:
    """Stop a server the tests started: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TokenAuthConfig:
    realm: str  # URL of the token endpoint
    service: str
    issuer: str
    root_cert_bundle: str  # PEM with the certificate whose key signs the tokens


class RegistryServer:
    """A running docker-registry; ``host`` is ``127.0.0.1:PORT``."""

    def __init__(
        self,
        workdir: str | None = None,
        htpasswd: str | None = None,
        token: TokenAuthConfig | None = None,
        port: int | None = None,
        public_url: str | None = None,
        secret: str | None = None,
        storage: str | None = None,
        proxy_remote: str | None = None,
        access_log: bool = False,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """``public_url`` is distribution's ``http.host``: the URL written into ``Location``
        headers (a front end on another host). Two servers with the same ``storage`` and
        ``secret`` share upload sessions, so one can continue what the other started."""
        if not registry_available():
            raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="ocikit-registry-")
        self.storage = storage or os.path.join(self.workdir, "storage")
        os.makedirs(self.workdir, exist_ok=True)
        os.makedirs(self.storage, exist_ok=True)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self.config_path = os.path.join(self.workdir, "config.yml")
        self.proxy_remote = proxy_remote
        self.access_log = access_log
        with open(self.config_path, "w") as fh:
            fh.write(self._config(htpasswd, token, public_url, secret))
        self._log = open(os.path.join(self.workdir, "registry.log"), "wb")
        self._process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", self.config_path],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _config(
        self, htpasswd: str | None, token: TokenAuthConfig | None, public_url: str | None, secret: str | None
    ) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            f"    disabled: {'false' if self.access_log else 'true'}",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.host}",
        ]
        if public_url:
            lines.append(f"  host: {public_url}")
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.tls[0]}", f"    key: {self.tls[1]}"]
        if secret:
            lines.append(f"  secret: {secret}")
        if self.proxy_remote:
            lines += ["proxy:", f"  remoteurl: {self.proxy_remote}"]
        if htpasswd:
            lines += ["auth:", "  htpasswd:", "    realm: ocikit-test", f"    path: {htpasswd}"]
        elif token:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {token.realm}",
                f"    service: {token.service}",
                f"    issuer: {token.issuer}",
                f"    rootcertbundle: {token.root_cert_bundle}",
            ]
        return "\n".join(lines) + "\n"

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"docker-registry exited early: {self.log_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1, context=self._ssl_context()).close()
                return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # auth configured: the server is up
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.close()
        raise RuntimeError("docker-registry did not become ready in time")

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.tls[0])  # the test certificate is its own CA

    def log_text(self) -> str:
        self._log.flush()
        with open(os.path.join(self.workdir, "registry.log"), "rb") as fh:
            return fh.read().decode(errors="replace")

    def blob_gets(self) -> list[str]:
        """Digests of the blob ``GET`` requests this registry answered, in order (needs ``access_log``)."""
        if not self.access_log:
            raise RuntimeError("blob_gets() needs RegistryServer(access_log=True)")
        return _BLOB_GET.findall(self.log_text())

    def pause(self) -> None:
        """Stop the registry process (SIGSTOP): connections are accepted by the kernel, never answered."""
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self._process.poll() is None:
            self.resume()
        stop_process(self._process)
        self._log.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "RegistryServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
