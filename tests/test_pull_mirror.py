"""Registry mirrors: hosts.toml parsing, and pulls that go through a second, real registry."""

from __future__ import annotations

import dataclasses
import os

import pytest
from pull_support import TarBuilder, ThrottledProxy, push_tar

import ocikit
from ocikit.content.mirror import MirrorHost, load_hosts_config, mirror_config
from ocikit.errors import InvalidContentError, RegistryError
from ocikit.options import Options, RetryPolicy
from ocikit.testing.registry import RegistryServer, free_port

FAST = Options(retry=RetryPolicy(attempts=1), connect_timeout=2, read_timeout=10)


def _write(path, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


def test_hosts_toml_parsing(tmp_path):
    certs = tmp_path / "certs.d"
    _write(
        certs / "registry.example.com_5000_" / "hosts.toml",
        """
server = "https://registry.example.com:5000"

[host."http://10.0.0.5:30020"]
  capabilities = ["pull", "resolve"]
  [host."http://10.0.0.5:30020".header]
    X-Dragonfly-Registry = "https://registry.example.com:5000"
    X-Multi = ["a", "b"]

[host."https://mirror.example.com"]
  capabilities = ["pull"]
  ca = "mirror-ca.pem"
  skip_verify = true
""",
    )
    _write(certs / "_default" / "hosts.toml", '[host."https://everything.example.com"]\n')
    config = load_hosts_config(str(certs), "registry.example.com:5000")
    assert config.server == MirrorHost("registry.example.com:5000", "https", capabilities=frozenset({"pull", "resolve", "push"}))
    first, second = config.mirrors
    assert (first.host, first.scheme, first.capabilities) == ("10.0.0.5:30020", "http", frozenset({"pull", "resolve"}))
    assert first.headers == {"X-Dragonfly-Registry": "https://registry.example.com:5000", "X-Multi": "a, b"}
    assert (second.host, second.capabilities, second.skip_verify) == ("mirror.example.com", frozenset({"pull"}), True)
    assert second.ca == (str(certs / "registry.example.com_5000_" / "mirror-ca.pem"),)
    fallback = load_hosts_config(str(certs), "ghcr.io")
    assert [m.host for m in fallback.mirrors] == ["everything.example.com"] and fallback.server is None
    _write(certs / "broken.io" / "hosts.toml", "server = [unclosed")
    with pytest.raises(InvalidContentError, match="cannot read"):
        load_hosts_config(str(certs), "broken.io")


def test_mirror_options_and_hosts_dir_combine(tmp_path):
    certs = tmp_path / "certs.d"
    _write(certs / "ghcr.io" / "hosts.toml", '[host."https://cache.internal"]\n  capabilities = ["pull"]\n')
    options = Options(mirrors={"ghcr.io": ("spegel.local:30020",), "*": ("http://p2p:4001",)}, hosts_dir=str(certs))
    hosts = [(m.host, m.scheme) for m in mirror_config("ghcr.io", options).mirrors]
    assert hosts == [("spegel.local:30020", ""), ("p2p:4001", "http"), ("cache.internal", "https")]


@pytest.fixture(scope="module")
def mirror_registry(tmp_path_factory):
    server = RegistryServer(workdir=str(tmp_path_factory.mktemp("mirror-registry")))
    yield server.host
    server.close()


@pytest.fixture
def published(tmp_path, registry):
    layout = str(tmp_path / "layout")
    desc = push_tar(layout, TarBuilder().file("payload", os.urandom(30000)).bytes())
    ocikit.copy(f"oci:{layout}:v1", f"{registry}/mirror/app:v1")
    return desc


def test_empty_mirror_falls_back_to_upstream(tmp_path, registry, mirror_registry, published):
    proxy = ThrottledProxy(mirror_registry, bytes_per_second=100 << 20)  # counts what the mirror was asked
    try:
        options = dataclasses.replace(FAST, mirrors={registry: (proxy.host,)})
        result = ocikit.pull(f"{registry}/mirror/app:v1", str(tmp_path / "dest"), options=options)
    finally:
        proxy.close()
    assert result.digest == published.digest
    (layer,) = ocikit.get_manifest(f"{registry}/mirror/app:v1").layers
    assert layer.digest in proxy.blob_gets  # asked the mirror first, then the upstream


def test_mirror_serves_when_upstream_is_down(tmp_path, registry, mirror_registry, published):
    ocikit.copy(f"{registry}/mirror/app:v1", f"{mirror_registry}/mirror/app:v1")
    dead = f"127.0.0.1:{free_port()}"  # nothing listens here
    options = dataclasses.replace(FAST, mirrors={dead: (mirror_registry,)})
    result = ocikit.pull(f"{dead}/mirror/app:v1", str(tmp_path / "dest"), options=options)
    assert result.digest == published.digest and os.path.getsize(tmp_path / "dest" / "payload") == 30000


def test_pull_only_mirror_is_not_trusted_with_tags(tmp_path, registry, mirror_registry, published):
    ocikit.copy(f"{registry}/mirror/app:v1", f"{mirror_registry}/mirror/app:v1")
    dead = f"127.0.0.1:{free_port()}"
    certs = tmp_path / "certs.d"
    _write(certs / dead / "hosts.toml", f'[host."http://{mirror_registry}"]\n  capabilities = ["pull"]\n')
    options = dataclasses.replace(FAST, hosts_dir=str(certs))
    with pytest.raises(RegistryError):  # the tag must be resolved by the (dead) upstream
        ocikit.pull(f"{dead}/mirror/app:v1", str(tmp_path / "by-tag"), options=options)
    result = ocikit.pull(f"{dead}/mirror/app@{published.digest}", str(tmp_path / "by-digest"), options=options)
    assert result.digest == published.digest


def test_cli_mirror_flag(tmp_path, registry, mirror_registry, published):
    import subprocess
    import sys

    ocikit.copy(f"{registry}/mirror/app:v1", f"{mirror_registry}/mirror/app:v1")
    dead = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "ocikit_cli.main", "pull", f"{dead}/mirror/app:v1", str(tmp_path / "dest"),
         "--mirror", mirror_registry, "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert os.path.exists(tmp_path / "dest" / "payload")
