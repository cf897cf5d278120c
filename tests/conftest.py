"""Shared fixtures: temporary layouts, and real docker-registry instances on loopback."""

from __future__ import annotations

import os

import pytest
from environment import FIXTURES, require_binary, skip_or_fail
from hypothesis import settings

from ocikit.testing.registry import RegistryServer, registry_available

# CI runs the same generated examples every time, so a red build names a reproducible input;
# a developer's runs explore new ones (and keep failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory: pytest.TempPathFactory):
    """One docker-registry for the whole session (repositories keep tests apart)."""
    if not registry_available():
        require_binary("docker-registry")
    server = RegistryServer(workdir=str(tmp_path_factory.mktemp("registry")))
    yield server
    server.close()


@pytest.fixture
def registry(registry_server: RegistryServer) -> str:
    """The ``host:port`` of the session registry."""
    return registry_server.host


@pytest.fixture
def layout_dir(tmp_path) -> str:
    return str(tmp_path / "layout")


@pytest.fixture(scope="session")
def fixtures_dir() -> str:
    """The repository's committed ``fixtures/`` directory (provenance in fixtures/README.md)."""
    return FIXTURES


@pytest.fixture(scope="session")
def shared_fixtures(fixtures_dir: str) -> str:
    """Old name of ``fixtures_dir`` (same sub-directories), kept so branches written before the move merge."""
    return fixtures_dir


@pytest.fixture(scope="session")
def containerd():
    """Debian's containerd on a private socket and state directory (needs root to mount snapshots)."""
    from ocikit.testing.containerd import ContainerdServer, containerd_available

    if not containerd_available():
        require_binary("containerd", "ctr")
        skip_or_fail("containerd needs root to mount snapshots")
    with ContainerdServer() as server:
        yield server
