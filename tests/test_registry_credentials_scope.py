"""Credentials go to the registry they were given for, and to the token realm it names — nowhere else.

The other host is real: a registry whose ``http.host`` points its upload ``Location`` headers
at a second, anonymous docker-registry sharing its storage and upload secret (the way a
registry fronted by a storage service hands out signed upload URLs). A recording proxy
(``FaultProxy``) stands in front of that second host, so every header that reaches it is seen.
Redirects of blob downloads are injected by a second proxy in front of the registry.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys

import bcrypt
import pytest

from ocikit.content.base import push_bytes, read_all
from ocikit.errors import AuthenticationError
from ocikit.options import Options, RetryPolicy
from ocikit.reference import parse_reference
from ocikit.registry.store import RegistryStore
from ocikit.spec import mediatypes as mt
from ocikit.testing.fault_proxy import Fault, FaultProxy
from ocikit.testing.registry import RegistryServer, TokenAuthConfig
from ocikit.testing.token_service import ISSUER, SERVICE, TokenService

USER, PASSWORD = "alice", "s3cret-Pa55word"
OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")
FAST = Options(retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05), chunk_size=64 << 10)


class ForeignUploadSite:
    """``registry`` (with auth) hands out upload Locations on ``upload_host``, another host:port.

    ``upload_host`` records what it receives and forwards to an anonymous twin registry that
    shares the storage and upload secret. ``front`` is a proxy in front of ``registry`` for
    injecting redirects.
    """

    def __init__(self, workdir, **auth) -> None:
        storage, secret = str(workdir / "storage"), "shared-upload-state-secret"
        for name in ("twin", "registry"):
            (workdir / name).mkdir()
        self.twin = RegistryServer(workdir=str(workdir / "twin"), storage=storage, secret=secret)
        self.upload_host = FaultProxy(self.twin.host)
        self.registry = RegistryServer(
            workdir=str(workdir / "registry"), storage=storage, secret=secret,
            public_url=f"http://{self.upload_host.host}", **auth,
        )
        self.front = FaultProxy(self.registry.host)

    def store(self, repository: str, host: str = "", **options) -> RegistryStore:
        options = {"username": USER, "password": PASSWORD, **options}
        reference = parse_reference(f"{host or self.registry.host}/{repository}")
        return RegistryStore.open(reference, dataclasses.replace(FAST, **options))

    def requests_with_credentials(self) -> list[tuple[str, str]]:
        """(method, path) of every request that reached the upload host with an Authorization header."""
        return [(r.method, r.path.split("?")[0]) for r in self.upload_host.requests if "authorization" in r.headers]

    def clear(self) -> None:
        self.upload_host.clear()
        self.front.clear()

    def close(self) -> None:
        self.front.close()
        self.registry.close()
        self.upload_host.close()
        self.twin.close()


@pytest.fixture(scope="module")
def basic_site(tmp_path_factory, registry_server):  # registry_server: skip/fail consistently if absent
    workdir = tmp_path_factory.mktemp("basic-site")
    htpasswd = workdir / "htpasswd"
    htpasswd.write_bytes(USER.encode() + b":" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)) + b"\n")
    site = ForeignUploadSite(workdir, htpasswd=str(htpasswd))
    yield site
    site.close()


@pytest.fixture(scope="module")
def token_site(tmp_path_factory, registry_server):
    workdir = tmp_path_factory.mktemp("token-site")
    service = TokenService(str(workdir), USER, PASSWORD)
    token = TokenAuthConfig(realm=service.realm, service=SERVICE, issuer=ISSUER, root_cert_bundle=service.cert_path)
    site = ForeignUploadSite(workdir, token=token)
    yield site, service
    site.close()
    service.close()


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


def _upload_every_way(store: RegistryStore, upload_host: FaultProxy) -> list[bytes]:
    """A monolithic PUT, and a chunked upload whose dropped PATCH forces a status GET and a resend."""
    monolithic = os.urandom(100_000)
    push_bytes(store, mt.OCI_LAYER_TAR, monolithic)
    upload_host.add(Fault("PATCH", "/blobs/uploads/", "drop_request", after_bytes=10_000, times=1))
    chunked = os.urandom(300_000)
    desc = store.push_stream([chunked], mt.OCI_LAYER_TAR)
    assert read_all(store, desc, limit=1 << 20) == chunked
    return [monolithic, chunked]


@pytest.mark.parametrize("site_name", ["basic_site", "token_site"])
def test_foreign_upload_host_never_gets_credentials(request, site_name):
    site = request.getfixturevalue(site_name)
    site = site[0] if isinstance(site, tuple) else site
    site.clear()
    _upload_every_way(site.store(f"scope/{site_name}"), site.upload_host)
    methods = {r.method for r in site.upload_host.requests}
    assert {"PUT", "PATCH", "GET"} <= methods  # the uploads really went to the other host
    assert site.requests_with_credentials() == []


def test_bearer_tokens_are_fetched_only_from_the_registrys_realm(token_site):
    site, service = token_site
    site.clear()
    service.requests.clear()
    push_bytes(site.store("scope/realm"), mt.OCI_LAYER_TAR, os.urandom(5000))
    assert service.requests and all(r["user"] == USER for r in service.requests)
    assert not any(r.path.startswith("/token") for r in site.upload_host.requests)


def test_foreign_upload_host_asking_for_credentials_is_refused_in_one_line(basic_site, tmp_path):
    basic_site.clear()
    basic_site.upload_host.add(
        Fault("*", "/blobs/uploads/", "status", status=401, times=-1,
              headers={"WWW-Authenticate": 'Basic realm="storage"'})
    )
    view = tmp_path / "view"
    (view / "bin").mkdir(parents=True)
    (view / "bin" / "tool").write_bytes(os.urandom(20_000))
    env = {**os.environ, "OCIKIT_USERNAME": USER, "OCIKIT_PASSWORD": PASSWORD}
    result = subprocess.run(
        [OCIKIT, "push-view", str(view), f"{basic_site.registry.host}/scope/refused:v1"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ocikit: error:")
    assert basic_site.upload_host.host in result.stderr and "sends credentials only to" in result.stderr
    assert "_state" not in result.stderr and PASSWORD not in result.stdout + result.stderr
    assert basic_site.requests_with_credentials() == []


def _redirect_blob_gets_to_upload_host(site: ForeignUploadSite, repository: str, digest: str) -> None:
    location = f"http://{site.upload_host.host}/v2/{repository}/blobs/{digest}"
    site.front.add(Fault("GET", f"/blobs/{digest}", "status", status=307, headers={"Location": location}))


def test_redirected_download_carries_no_credentials(basic_site):
    basic_site.clear()
    store = basic_site.store("scope/redirect", host=basic_site.front.host)
    data = os.urandom(50_000)
    desc = push_bytes(store, mt.OCI_LAYER_TAR, data)  # learns the Basic challenge first
    basic_site.clear()
    _redirect_blob_gets_to_upload_host(basic_site, "scope/redirect", desc.digest)
    assert read_all(store, desc) == data
    assert any(r.method == "GET" and desc.digest in r.path for r in basic_site.upload_host.requests)
    assert basic_site.requests_with_credentials() == []


def test_a_challenge_from_a_redirect_target_is_not_answered(basic_site):
    """The storage host names a token realm of its own: the password must not go there."""
    basic_site.clear()
    store = basic_site.store("scope/evil-realm", host=basic_site.front.host)
    desc = push_bytes(store, mt.OCI_LAYER_TAR, os.urandom(5000))
    basic_site.clear()
    _redirect_blob_gets_to_upload_host(basic_site, "scope/evil-realm", desc.digest)
    realm = f"http://{basic_site.upload_host.host}/token"
    basic_site.upload_host.add(
        Fault("*", "", "status", status=401, times=-1, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
    )
    with pytest.raises(AuthenticationError) as info:
        read_all(store, desc)
    assert basic_site.requests_with_credentials() == []
    assert "sends credentials only to" in str(info.value)
    assert store.exists(desc)  # the registry's own Basic auth still works afterwards


# -- mirrors ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_mirror(tmp_path_factory, registry_server):
    """A mirror that asks for Basic auth with credentials of its own, behind a recording proxy."""
    workdir = tmp_path_factory.mktemp("private-mirror")
    htpasswd = workdir / "htpasswd"
    mirror_password = "mirror-only-Pa55"
    htpasswd.write_bytes(b"mirror:" + bcrypt.hashpw(mirror_password.encode(), bcrypt.gensalt(rounds=4)) + b"\n")
    server = RegistryServer(workdir=str(workdir), htpasswd=str(htpasswd))
    proxy = FaultProxy(server.host)
    yield proxy, ("mirror", mirror_password)
    proxy.close()
    server.close()


def _publish(registry: str, repository: str, tmp_path) -> None:
    view = tmp_path / "published-view"
    (view / "share").mkdir(parents=True)
    (view / "share" / "data").write_bytes(os.urandom(30_000))
    subprocess.run([OCIKIT, "push-view", str(view), f"{registry}/{repository}:v1"], check=True, capture_output=True)


def _pull_with_mirror(registry: str, repository: str, mirror: str, dest, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [OCIKIT, "pull", f"{registry}/{repository}:v1", str(dest), "--mirror", mirror],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )


def test_registry_credentials_are_not_sent_to_a_mirror(registry, private_mirror, tmp_path):
    proxy, _ = private_mirror
    _publish(registry, "scope/mirrored", tmp_path)
    proxy.clear()
    env = {"OCIKIT_USERNAME": USER, "OCIKIT_PASSWORD": PASSWORD}  # given for the registry
    result = _pull_with_mirror(registry, "scope/mirrored", proxy.host, tmp_path / "dest", env)
    assert result.returncode == 0, result.stderr  # the mirror refused; the upstream served
    assert (tmp_path / "dest" / "share" / "data").stat().st_size == 30_000
    assert proxy.requests  # the mirror was asked first
    assert [r.path for r in proxy.requests if "authorization" in r.headers] == []


def test_a_mirror_uses_the_credentials_configured_for_its_own_host(registry, private_mirror, tmp_path):
    proxy, (mirror_user, mirror_password) = private_mirror
    _publish(registry, "scope/own-creds", tmp_path)
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"{mirror_user}:{mirror_password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {proxy.host: {"auth": auth}}}))
    proxy.clear()
    env = {"DOCKER_CONFIG": str(config), "OCIKIT_USERNAME": USER, "OCIKIT_PASSWORD": PASSWORD}
    result = _pull_with_mirror(registry, "scope/own-creds", proxy.host, tmp_path / "dest", env)
    assert result.returncode == 0, result.stderr
    sent = {r.headers["authorization"] for r in proxy.requests if "authorization" in r.headers}
    assert sent == {f"Basic {auth}"}  # the mirror's own credentials, never the registry's
