"""The one way to attach a referrer: every former caller goes through attach_referrer, with the same bytes.

The digests below are what each caller produced before they were folded into
``ocikit.graph.attach.attach_referrer`` (same inputs, main at b893e5f): a referrer's
digest is what registries, layouts and other tools key on, so it must not drift.
"""

import pytest

import ocikit.compat.artifact as compat_artifact
import ocikit.compat.labels as compat_labels
import ocikit.graph.attach as graph_attach
import ocikit.ztoc.soci as soci
from ocikit.content.base import fetch_manifest, push_bytes, push_manifest
from ocikit.content.layout import LayoutStore
from ocikit.content.memory import MemoryStore
from ocikit.errors import InvalidReferenceError, RegistryError
from ocikit.graph.attach import Blob, attach_referrer, discover, newest_referrer
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor
from ocikit.spec.manifest import build_manifest

CREATED = "2024-01-02T03:04:05Z"
SUBJECT = "sha256:c37dbdd11d3a99bfe81037c21f4c8353fd3c79554871ea60ca449cce78f6a754"


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def subject(store):
    config = push_bytes(store, mt.OCI_CONFIG, b'{"architecture":"amd64","os":"linux"}')
    layer = push_bytes(store, mt.OCI_LAYER_TAR, b"layer-bytes")
    desc = push_manifest(store, build_manifest([layer], config=config))
    assert desc.digest == SUBJECT
    return desc


@pytest.fixture
def ztoc(store, subject):
    layer = fetch_manifest(store, subject).layers[0]
    return push_bytes(store, mt.SOCI_ZTOC_BLOB, b"ztoc-bytes").with_annotations(**{
        mt.SOCI_ANNOTATION_LAYER_DIGEST: layer.digest,
        mt.SOCI_ANNOTATION_LAYER_MEDIATYPE: layer.media_type,
        mt.SOCI_ANNOTATION_SPAN_SIZE: "4194304",
    })


@pytest.fixture
def calls(monkeypatch):
    """Spy on attach_referrer wherever a former caller looks it up."""
    seen: list[str] = []
    real = graph_attach.attach_referrer

    def spying(store, subject, artifact_type, *args, **kwargs):
        seen.append(artifact_type)
        return real(store, subject, artifact_type, *args, **kwargs)

    for module in (graph_attach, soci, compat_artifact, compat_labels):
        monkeypatch.setattr(module, "attach_referrer", spying)
    return seen


def test_ocikit_attach_files(store, subject, calls, tmp_path):
    payload = tmp_path / "sig.txt"
    payload.write_bytes(b"signature bytes\n")
    desc = graph_attach.attach(store, subject, "application/vnd.example.sig", [str(payload)], {"k": "v"})
    assert desc.digest == "sha256:a67307c7e0a34b1aaeeaf5d85bab0470cfd51c677106fe945f5adab9b10ea00f"
    empty = graph_attach.attach(store, subject, "application/vnd.example.empty")
    assert empty.digest == "sha256:94a4dd78a276ead0db82fa47e1df0858938a534262c576c5ad8b0ddca711d6f1"
    assert calls == ["application/vnd.example.sig", "application/vnd.example.empty"]
    assert desc.annotations == {"k": "v"} and desc.artifact_type == "application/vnd.example.sig"


def test_soci_v1_index(store, subject, ztoc, calls):
    desc = soci.attach_index(store, subject, [ztoc], "tool-id")
    assert desc.digest == "sha256:c4bf0fb5d4911f61dd46d6a7840ed664a5315f87016fbcb67daa7413ba477760"
    parsed = fetch_manifest(store, desc)
    assert "artifactType" not in parsed.document  # SOCI v1 is typed by its config only
    assert desc.artifact_type == mt.SOCI_INDEX_V1 and calls == [""]
    assert store.exists(graph_attach.EMPTY_DESCRIPTOR)  # the config's {} blob is there


def test_zstd_ztoc_index(store, subject, ztoc, calls):
    desc = soci.attach_index(store, subject, [ztoc.replace(media_type=mt.OCIKIT_ZSTD_TOC_LAYER)], "tool-id", zstd=True)
    assert desc.digest == "sha256:aa4bcf4ad8c3abb39a88627781b1ef66ac73e0c3f1b419742edd6ca3da7b5f48"
    assert calls == [mt.OCIKIT_ZSTD_TOC_ARTIFACT]


def test_compat_document_with_a_pinned_created(store, subject, calls):
    body = b'{"compatibilities":{}}'
    desc = attach_referrer(store, subject, mt.IMAGE_COMPAT_ARTIFACT, [Blob(mt.IMAGE_COMPAT_SPEC_LAYER, body)],
                           annotations={"x": "y"}, created=CREATED)
    assert desc.digest == "sha256:01e22a38fcedbf5eb49446103045906333d1afad97e8b0cb431a708907b85e79"
    assert desc.annotations == {mt.ANNOTATION_CREATED: CREATED, "x": "y"}


def test_compat_attach_and_nfd_go_through_the_one_function(store, subject, calls, monkeypatch):
    monkeypatch.setattr(compat_artifact, "nfd_document", lambda report: {"apiVersion": "v1alpha1"})
    report = {"mediaType": mt.OCIKIT_COMPAT_SCAN_REPORT, "facts": {}, "requirements": []}  # saved, empty
    first = compat_artifact.attach_compat(store, subject, report, nfd=True, created=CREATED)
    again = compat_artifact.attach_compat(store, subject, report, created=CREATED)
    assert calls == [mt.IMAGE_COMPAT_ARTIFACT, mt.NFD_COMPAT_ARTIFACT, mt.IMAGE_COMPAT_ARTIFACT]
    assert again == first  # a pinned created time: the same referrer, not one more


def test_labels(store, subject, calls, monkeypatch):
    monkeypatch.setattr(compat_artifact, "now_rfc3339", lambda: CREATED)
    desc = compat_labels.add_labels(store, subject, {"team": "hpc"})
    assert desc.digest == "sha256:ea8542c4912469390f59b0c9829979bf52312fb5b2c86570d29b3294c0ddcd64"
    assert calls == [mt.OCIKIT_LABELS_ARTIFACT]


def test_a_bad_artifact_type_is_refused_before_anything_is_pushed(store, subject, tmp_path):
    payload = tmp_path / "big"
    payload.write_bytes(b"x" * 1000)
    with pytest.raises(InvalidReferenceError):
        graph_attach.attach(store, subject, "not-a-type", [str(payload)])
    with pytest.raises(InvalidReferenceError):
        attach_referrer(store, subject, "no/spaces allowed", [Blob("text/plain", b"x")])
    assert not store.exists(Descriptor.from_bytes("application/octet-stream", b"x" * 1000))
    assert not store.exists(Descriptor.from_bytes("text/plain", b"x"))


def _index(store, subject, build, replace=None):
    return attach_referrer(store, subject, "application/vnd.example.index", [Blob("text/plain", build.encode())],
                           annotations={"build": build}, created=f"2025-01-0{build}T00:00:00Z", replace=replace)


def _same_kind(desc):
    return desc.artifact_type == "application/vnd.example.index"


def test_replace_deletes_only_what_the_predicate_picks(store, subject):
    other = attach_referrer(store, subject, "application/vnd.example.sbom")
    first = _index(store, subject, "1")
    second = _index(store, subject, "2", replace=_same_kind)
    listed = [node.descriptor.digest for node in discover(store, subject)]
    assert sorted(listed) == sorted([other.digest, second.digest]) and not store.exists(first)
    assert _index(store, subject, "2", replace=_same_kind) == second  # re-attaching never deletes itself
    assert store.exists(second)


class FakeRegistryWithoutDeletes(LayoutStore):
    """FAKE: a store whose deletes are refused the way distribution answers with deletion disabled."""

    def delete(self, desc):
        raise RegistryError("fake", f"delete manifest {desc.digest}", status=405)


def test_a_store_that_refuses_deletes_keeps_both_and_the_newest_wins(tmp_path):
    store = FakeRegistryWithoutDeletes(str(tmp_path / "layout"))
    subject = push_manifest(store, build_manifest([push_bytes(store, mt.OCI_LAYER_TAR, b"l")]))
    first = _index(store, subject, "1")
    second = _index(store, subject, "2", replace=_same_kind)
    assert {d.digest for d in store.referrers(subject)} == {first.digest, second.digest}
    assert newest_referrer(store, subject, "application/vnd.example.index") == second


def test_other_registry_errors_while_replacing_are_not_swallowed(tmp_path):
    class Failing(LayoutStore):
        def delete(self, desc):
            raise RegistryError("fake", "delete manifest", status=500)

    store = Failing(str(tmp_path / "layout"))
    subject = push_manifest(store, build_manifest([push_bytes(store, mt.OCI_LAYER_TAR, b"l")]))
    _index(store, subject, "1")
    with pytest.raises(RegistryError, match="HTTP 500"):
        _index(store, subject, "2", replace=_same_kind)
