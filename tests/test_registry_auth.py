"""Auth against real docker-registry instances: htpasswd (Basic) and token (Bearer).

The token variant is docker-registry configured with ``auth.token``; the token issuer is
a small test service (ocikit.testing.token_service) whose certificate the registry trusts.
"""

import base64
import json
import logging
import os
import stat
import subprocess
import sys

import bcrypt
import pytest

from ocikit.content.base import push_bytes, read_all
from ocikit.errors import AuthenticationError
from ocikit.options import Options
from ocikit.reference import parse_reference
from ocikit.registry.store import RegistryStore
from ocikit.spec import mediatypes as mt
from ocikit.testing.registry import RegistryServer, TokenAuthConfig
from ocikit.testing.store_tests import make_artifact
from ocikit.testing.token_service import ISSUER, SERVICE, TokenService

USER, PASSWORD = "alice", "s3cret-Pa55word"


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory, registry_server):  # registry_server: skip/fail consistently if absent
    workdir = tmp_path_factory.mktemp("basic-registry")
    htpasswd = workdir / "htpasswd"
    htpasswd.write_bytes(USER.encode() + b":" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)) + b"\n")
    server = RegistryServer(workdir=str(workdir), htpasswd=str(htpasswd))
    yield server
    server.close()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory, registry_server):
    workdir = tmp_path_factory.mktemp("token-registry")
    service = TokenService(str(workdir), USER, PASSWORD)
    server = RegistryServer(
        workdir=str(workdir),
        token=TokenAuthConfig(realm=service.realm, service=SERVICE, issuer=ISSUER, root_cert_bundle=service.cert_path),
    )
    yield server, service
    server.close()
    service.close()


def _store(host, repo, **options):
    return RegistryStore.open(parse_reference(f"{host}/{repo}"), Options(**options))


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch, tmp_path):
    # Tests must not pick up the machine's own docker config.
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


def test_basic_anonymous_is_refused_clearly(basic_registry):
    with pytest.raises(AuthenticationError) as info:
        _store(basic_registry.host, "a/anon").resolve("latest")
    assert "requires credentials" in str(info.value)


def test_basic_wrong_password(basic_registry):
    with pytest.raises(AuthenticationError) as info:
        _store(basic_registry.host, "a/wrong", username=USER, password="not-it").resolve("latest")
    assert "not-it" not in str(info.value)


def test_basic_push_and_pull_with_explicit_credentials(basic_registry, caplog):
    caplog.set_level(logging.DEBUG)
    store = _store(basic_registry.host, "a/ok", username=USER, password=PASSWORD)
    manifest = make_artifact(store, os.urandom(5000))
    store.tag(manifest, "v1")
    assert store.resolve("v1").digest == manifest.digest
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for record in caplog.records:
        assert PASSWORD not in record.getMessage() and encoded not in record.getMessage()


def test_basic_credentials_from_docker_config(basic_registry, monkeypatch, tmp_path):
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    store = _store(basic_registry.host, "a/dockerconfig")
    desc = push_bytes(store, mt.OCI_LAYER_TAR, b"configured")
    assert read_all(store, desc) == b"configured"


def test_basic_credentials_from_registry_auth_file(basic_registry, monkeypatch, tmp_path):
    auth_file = tmp_path / "auth.json"
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth_file.write_text(json.dumps({"auths": {f"https://{basic_registry.host}": {"auth": auth}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    store = _store(basic_registry.host, "a/authfile")
    assert read_all(store, push_bytes(store, mt.OCI_LAYER_TAR, b"auth file")) == b"auth file"


def test_basic_credentials_from_a_credential_helper(basic_registry, monkeypatch, tmp_path):
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    helper = helper_dir / "docker-credential-ocikittest"
    helper.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "server = sys.stdin.read().strip()\n"
        f"if server != {basic_registry.host!r}: sys.exit(1)\n"
        f"print(json.dumps({{'ServerURL': server, 'Username': {USER!r}, 'Secret': {PASSWORD!r}}}))\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"credHelpers": {basic_registry.host: "ocikittest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    monkeypatch.setenv("PATH", f"{helper_dir}:{os.environ['PATH']}")
    store = _store(basic_registry.host, "a/helper")
    assert read_all(store, push_bytes(store, mt.OCI_LAYER_TAR, b"helper")) == b"helper"


def test_cli_password_stdin_never_echoes_the_secret(basic_registry, tmp_path):
    ocikit = os.path.join(os.path.dirname(sys.executable), "ocikit")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path)}
    base = [ocikit, "-u", USER, "--password-stdin"]
    good = subprocess.run(
        base + ["tags", "--json", f"{basic_registry.host}/a/cli"], input=PASSWORD + "\n", capture_output=True,
        text=True, env=env,
    )
    assert good.returncode == 3, good.stderr  # authenticated; the repository simply does not exist yet
    assert PASSWORD not in good.stdout + good.stderr
    bad = subprocess.run(
        base + ["tags", "--json", f"{basic_registry.host}/a/cli"],
        input="wrong-" + PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 4
    assert PASSWORD not in bad.stdout + bad.stderr
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("ocikit: error:")


def test_bearer_tokens_are_cached_per_scope(token_registry):
    server, service = token_registry
    service.requests.clear()
    store = _store(server.host, "b/cached", username=USER, password=PASSWORD)
    blobs = [push_bytes(store, mt.OCI_LAYER_TAR, os.urandom(1000 + i)) for i in range(10)]
    for desc in blobs:
        assert store.exists(desc)
        read_all(store, desc)
    scopes = [tuple(r["scopes"]) for r in service.requests]
    # one token for push (pull,push) and at most one for pull-only requests, not one per request
    assert len(scopes) == len(set(scopes)) <= 2
    assert all(r["user"] == USER for r in service.requests)


def test_bearer_wrong_password_is_refused_by_the_token_service(token_registry):
    server, _ = token_registry
    with pytest.raises(AuthenticationError) as info:
        _store(server.host, "b/wrong", username=USER, password="nope").resolve("latest")
    assert "token service refused" in str(info.value) and "nope" not in str(info.value)


def test_bearer_cross_repository_mount(token_registry):
    server, _ = token_registry
    source = _store(server.host, "b/source", username=USER, password=PASSWORD)
    target = _store(server.host, "b/target", username=USER, password=PASSWORD)
    desc = push_bytes(source, mt.OCI_LAYER_TAR, os.urandom(4096))
    assert target.mount(desc, source) is True
    assert target.exists(desc)
