"""Faults a real registry will not produce on cue, injected by a loopback proxy in front of it.

Every case ends either with verified content or with a clear typed error.
"""

import io
import os

import pytest

from ocikit.content.base import push_bytes, read_all
from ocikit.errors import (
    DigestMismatchError,
    PermissionDeniedError,
    ServerError,
    TooManyRequestsError,
    TransportError,
)
from ocikit.options import Options, RetryPolicy
from ocikit.reference import parse_reference
from ocikit.registry.store import RegistryStore
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor
from ocikit.testing.fault_proxy import Fault, FaultProxy
from ocikit.testing.store_tests import make_artifact

FAST = Options(retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05), chunk_size=256 << 10)


@pytest.fixture
def proxy(registry_server):
    proxy = FaultProxy(registry_server.host)
    yield proxy
    proxy.close()


def _stores(registry, proxy, name):
    direct = RegistryStore.open(parse_reference(f"{registry}/faults/{name}"), FAST)
    faulty = RegistryStore.open(parse_reference(f"{proxy.host}/faults/{name}"), FAST)
    return direct, faulty


def _blob(direct, size=3 << 20):
    data = os.urandom(size)
    return data, push_bytes(direct, mt.OCI_LAYER_TAR, data)


def test_download_resumes_after_dropped_connections(registry, proxy):
    direct, faulty = _stores(registry, proxy, "resume")
    data, desc = _blob(direct)
    fault = proxy.add(Fault("GET", "/blobs/sha256:", "drop_response", after_bytes=1 << 20, times=2))
    assert read_all(faulty, desc, limit=1 << 30) == data
    assert fault.hits == 2
    statuses = [status for method, path, status in proxy.log if method == "GET" and "/blobs/" in path]
    assert 206 in statuses  # the resumptions were Range requests answered with partial content


def test_download_gives_up_with_a_clear_error(registry, proxy):
    direct, faulty = _stores(registry, proxy, "giveup")
    _, desc = _blob(direct, 1 << 20)
    proxy.add(Fault("GET", "/blobs/sha256:", "drop_response", after_bytes=1000, times=-1))
    with pytest.raises(TransportError) as info:
        read_all(faulty, desc, limit=1 << 30)
    message = str(info.value)
    assert "gave up" in message and proxy.host in message and "\n" not in message


def test_corrupted_body_fails_verification(registry, proxy):
    direct, faulty = _stores(registry, proxy, "corrupt")
    _, desc = _blob(direct, 200_000)
    proxy.add(Fault("GET", "/blobs/sha256:", "corrupt", after_bytes=12345))
    with pytest.raises(DigestMismatchError):
        read_all(faulty, desc, limit=1 << 30)


@pytest.mark.parametrize("status, headers", [(500, {}), (503, {}), (429, {"Retry-After": "0"})])
def test_transient_statuses_are_retried(registry, proxy, status, headers):
    direct, faulty = _stores(registry, proxy, f"transient{status}")
    manifest = make_artifact(direct)
    direct.tag(manifest, "v1")
    fault = proxy.add(Fault("HEAD", "/manifests/v1", "status", status=status, headers=headers, times=2))
    assert faulty.resolve("v1").digest == manifest.digest
    assert fault.hits == 2


def test_persistent_500_names_registry_operation_and_code(registry, proxy):
    direct, faulty = _stores(registry, proxy, "persistent")
    direct.tag(make_artifact(direct), "v1")
    fault = proxy.add(Fault("GET", "/manifests/v1", "status", status=500, times=-1))
    with pytest.raises(ServerError) as info:
        faulty.client.get_manifest("v1")
    assert fault.hits == FAST.retry.attempts
    message = str(info.value)
    assert proxy.host in message and "fetch manifest" in message and "500" in message and "UNAVAILABLE" in message


def test_persistent_429_is_too_many_requests(registry, proxy):
    direct, faulty = _stores(registry, proxy, "throttled")
    direct.tag(make_artifact(direct), "v1")
    proxy.add(Fault("HEAD", "/manifests/v1", "status", status=429, headers={"Retry-After": "0"}, times=-1))
    with pytest.raises(TooManyRequestsError):
        faulty.resolve("v1")


def test_client_errors_are_not_retried(registry, proxy):
    direct, faulty = _stores(registry, proxy, "denied")
    direct.tag(make_artifact(direct), "v1")
    fault = proxy.add(Fault("GET", "/manifests/v1", "status", status=403, times=-1))
    with pytest.raises(PermissionDeniedError):
        faulty.client.get_manifest("v1")
    assert fault.hits == 1


def test_truncated_manifest_body_is_retried(registry, proxy):
    direct, faulty = _stores(registry, proxy, "truncmanifest")
    manifest = make_artifact(direct)
    direct.tag(manifest, "v1")
    fault = proxy.add(Fault("GET", "/manifests/v1", "drop_response", after_bytes=20, times=1))
    raw, _ = faulty.client.get_manifest("v1")
    assert Descriptor.from_bytes(mt.OCI_MANIFEST, raw).digest == manifest.digest
    assert fault.hits == 1


def test_chunked_upload_resumes_after_a_dropped_patch(registry, proxy):
    direct, faulty = _stores(registry, proxy, "patch")
    chunks = [os.urandom(100_000) for _ in range(8)]  # 800 kB in 256 KiB PATCHes
    fault = proxy.add(Fault("PATCH", "/blobs/uploads/", "drop_request", after_bytes=50_000, times=1))
    desc = faulty.push_stream(iter(chunks), mt.OCI_LAYER_TAR)
    assert fault.hits == 1
    assert read_all(direct, desc, limit=1 << 30) == b"".join(chunks)


def test_monolithic_upload_restarts_after_a_dropped_put(registry, proxy):
    direct, faulty = _stores(registry, proxy, "put")
    data = os.urandom(600_000)
    desc = Descriptor.from_bytes(mt.OCI_LAYER_TAR, data)
    fault = proxy.add(Fault("PUT", "/blobs/uploads/", "drop_request", after_bytes=100_000, times=1))
    faulty.push(desc, io.BytesIO(data))
    assert fault.hits == 1
    assert read_all(direct, desc, limit=1 << 30) == data


def test_upload_of_wrong_content_is_rejected(registry, proxy):
    _, faulty = _stores(registry, proxy, "wrong")
    desc = Descriptor.from_bytes(mt.OCI_LAYER_TAR, b"what was promised")
    with pytest.raises(DigestMismatchError):
        faulty.push(desc, io.BytesIO(b"what was delivered"))
    assert not faulty.exists(desc)


def test_unreachable_registry_is_a_transport_error():
    store = RegistryStore.open(parse_reference("127.0.0.1:1/nothing/here"), FAST)
    with pytest.raises(TransportError) as info:
        store.resolve("latest")
    assert "connection failed" in str(info.value)


def test_large_seekable_blob_goes_up_in_chunks(registry, proxy):
    options = Options(retry=FAST.retry, chunk_size=256 << 10, monolithic_max=512 << 10)
    store = RegistryStore.open(parse_reference(f"{proxy.host}/faults/chunked-file"), options)
    data = os.urandom(1 << 20)
    desc = Descriptor.from_bytes(mt.OCI_LAYER_TAR, data)
    store.push(desc, io.BytesIO(data))
    patches = [path for method, path, _ in proxy.log if method == "PATCH"]
    assert len(patches) == 4
    assert read_all(store, desc, limit=1 << 30) == data
