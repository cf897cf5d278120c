"""Shared fixtures: temporary layouts, and real docker-registry instances on loopback."""

from __future__ import annotations

import os
import shutil

import pytest

from ocikit.testing.registry import RegistryServer, registry_available

def _shared_fixtures_dir() -> str:
    # ../shared/fixtures next to the checkout; helper worktrees sit one level deeper (wt/<name>).
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("OCIKIT_SHARED_FIXTURES", "")]
    candidates += [os.path.join(here, *([".."] * up), "shared", "fixtures") for up in (2, 3)]
    return next((os.path.abspath(c) for c in candidates if c and os.path.isdir(c)), os.path.abspath(candidates[1]))


SHARED_FIXTURES = _shared_fixtures_dir()
REPO_FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "fixtures"))


def _require(binary: str) -> None:
    # CI installs every peer; a missing one is a set-up bug there, so fail loudly when CI=1.
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed but CI requires it")
        pytest.skip(f"{binary} not installed")


@pytest.fixture(scope="session")
def registry_server(tmp_path_factory: pytest.TempPathFactory):
    """One docker-registry for the whole session (repositories keep tests apart)."""
    if not registry_available():
        _require("docker-registry")
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
def shared_fixtures() -> str:
    if not os.path.isdir(SHARED_FIXTURES):
        pytest.skip("../shared/fixtures is not present")
    return SHARED_FIXTURES
