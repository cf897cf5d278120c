"""Referrers on docker-registry 2.8 (tag-schema fallback) and on a FAKE referrers API."""

import json
import subprocess
import sys

import pytest

from ocikit.content.base import ensure_empty_blob, fetch_manifest, push_bytes, push_manifest
from ocikit.errors import InvalidContentError
from ocikit.graph.attach import attach, discover
from ocikit.reference import parse_reference
from ocikit.registry.referrers import fallback_tag
from ocikit.registry.store import RegistryStore
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor
from ocikit.spec.manifest import build_manifest
from ocikit.testing.fake_referrers import FakeReferrersRegistry
from ocikit.testing.store_tests import make_artifact


def _store(host, repo):
    return RegistryStore.open(parse_reference(f"{host}/{repo}"))


def test_attach_on_distribution_uses_the_tag_schema(registry):
    store = _store(registry, "refs/fallback")
    subject = make_artifact(store, b"subject")
    store.tag(subject, "v1")
    sig = attach(store, subject, "application/vnd.example.sig", annotations={"signer": "ci"})
    assert store.referrers_mode == "tag-schema"
    index = fetch_manifest(store, fallback_tag(subject.digest))
    assert index.is_index and [d.digest for d in index.manifests] == [sig.digest]
    entry = index.manifests[0]
    assert entry.artifact_type == "application/vnd.example.sig" and entry.annotations["signer"] == "ci"
    tree = discover(store, subject)
    assert [node.descriptor.digest for node in tree] == [sig.digest]


def test_referrers_of_referrers_form_a_tree(registry):
    store = _store(registry, "refs/tree")
    subject = make_artifact(store, b"tree subject")
    sbom = attach(store, subject, "application/vnd.example.sbom")
    sig = attach(store, sbom, "application/vnd.example.sig")
    tree = discover(store, subject)
    assert tree[0].descriptor.digest == sbom.digest
    assert tree[0].children[0].descriptor.digest == sig.digest
    assert discover(store, subject, artifact_type="application/vnd.example.sig") == []


_ATTACHER = """
import sys
from ocikit.graph.attach import attach
from ocikit.reference import parse_reference
from ocikit.registry.store import RegistryStore
store = RegistryStore.open(parse_reference(sys.argv[1]))
subject = store.resolve("v1")
for i in range(5):
    attach(store, subject, "application/vnd.example.note", annotations={"writer": sys.argv[2], "n": str(i)})
"""


def test_concurrent_writers_in_several_processes_lose_nothing(registry):
    store = _store(registry, "refs/concurrent")
    subject = make_artifact(store, b"contended")
    store.tag(subject, "v1")
    procs = [
        subprocess.Popen([sys.executable, "-c", _ATTACHER, f"{registry}/refs/concurrent", name])
        for name in ("p", "q", "r")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    found = store.referrers(subject)
    assert len(found) == 15
    assert {(d.annotations["writer"], d.annotations["n"]) for d in found} == {
        (w, str(i)) for w in "pqr" for i in range(5)
    }


def test_entries_whose_manifest_vanished_are_dropped(registry):
    store = _store(registry, "refs/vanish")
    subject = make_artifact(store, b"vanish subject")
    first = attach(store, subject, "application/vnd.example.a")
    store.delete(first)
    second = attach(store, subject, "application/vnd.example.b")
    assert [d.digest for d in store.referrers(subject)] == [second.digest]


def test_a_fallback_tag_that_is_not_an_index_is_refused(registry):
    store = _store(registry, "refs/bogus")
    subject = make_artifact(store, b"bogus subject")
    store.tag(make_artifact(store, b"not an index"), fallback_tag(subject.digest))
    with pytest.raises(InvalidContentError) as info:
        store.referrers(subject)
    assert "not an image index" in str(info.value)


def test_fake_referrers_api_branch(registry_server):
    """The API branch, which distribution 2.8 lacks, against a FAKE that adds only that API."""
    fake = FakeReferrersRegistry(registry_server.host)
    try:
        store = _store(fake.host, "refs/api")
        subject = make_artifact(store, b"api subject")
        attach(store, subject, "application/vnd.example.sig")
        sbom = attach(store, subject, "application/vnd.example.sbom")
        assert store.referrers_mode == "api"
        # No fallback index was written: the registry answered OCI-Subject.
        assert store.client.head_manifest(fallback_tag(subject.digest)) is None
        only = store.referrers(subject, artifact_type="application/vnd.example.sbom")
        assert [d.digest for d in only] == [sbom.digest]
        assert len(store.referrers(subject)) == 2
        assert fake.referrers_requests >= 2
    finally:
        fake.close()


def test_subject_manifest_may_be_pushed_after_its_referrer(registry):
    """The spec lets a referrer arrive before its subject; discovery works once both exist."""
    store = _store(registry, "refs/order")
    empty = ensure_empty_blob(store)
    layer = push_bytes(store, mt.OCI_LAYER_TAR, b"late subject layer")
    subject_raw = build_manifest([layer], config=empty, artifact_type="application/x.test")
    subject = Descriptor.from_bytes(mt.OCI_MANIFEST, subject_raw)
    referrer = push_manifest(store, build_manifest([], config=empty, artifact_type="application/x.r", subject=subject))
    push_manifest(store, subject_raw, tag="late")
    assert [d.digest for d in store.referrers(subject)] == [referrer.digest]
    assert json.loads(fetch_manifest(store, referrer).raw)["subject"]["digest"] == subject.digest
