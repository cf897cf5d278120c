"""Attaching and reading the compatibility and labels referrers: OCI layout and a real docker-registry."""

from __future__ import annotations

import itertools
import json

import pytest
from compat_support import debian_libs, spack_view_fixture, validator  # noqa: F401

from ocikit.compat.artifact import attach_compat, newest_referrer, read_compat_document
from ocikit.compat.check import TOO_OLD, check_reference
from ocikit.compat.host import HostInfo
from ocikit.compat.labels import add_labels, parse_label_arguments, read_labels
from ocikit.compat.scan import scan
from ocikit.content.base import fetch_manifest, read_all
from ocikit.content.layout import LayoutStore
from ocikit.content.open import open_store
from ocikit.errors import InvalidContentError
from ocikit.spec import mediatypes as mt
from ocikit.testing.store_tests import make_artifact

_repos = itertools.count()


@pytest.fixture(scope="module")
def view_report(spack_view_fixture):  # noqa: F811
    return scan(spack_view_fixture["view"])


@pytest.fixture(params=["layout", "registry"])
def store(request, tmp_path):
    if request.param == "layout":
        return LayoutStore(str(tmp_path / "layout"))
    registry = request.getfixturevalue("registry")
    store, _ = open_store(f"{registry}/compat/repo{next(_repos)}")
    return store


def test_compat_artifact_is_a_wg_referrer(store, view_report):
    image = make_artifact(store)
    descriptor = attach_compat(store, image, view_report)
    assert descriptor.artifact_type == mt.IMAGE_COMPAT_ARTIFACT

    found = store.referrers(image, artifact_type=mt.IMAGE_COMPAT_ARTIFACT)
    assert [d.digest for d in found] == [descriptor.digest]
    if hasattr(store, "referrers_mode"):  # docker-registry 2.8 has no referrers API
        assert store.referrers_mode == "tag-schema"
        fallback_tag = image.digest.replace(":", "-")
        assert fallback_tag in store.tags()
    assert found[0].annotations[mt.SUPERCONTAINERS_GLIBC] == "2.36.0"
    assert mt.ANNOTATION_CREATED in found[0].annotations

    manifest = fetch_manifest(store, descriptor)
    assert manifest.artifact_type == mt.IMAGE_COMPAT_ARTIFACT
    assert manifest.config is not None and manifest.config.media_type == mt.OCI_EMPTY
    assert manifest.subject is not None and manifest.subject.digest == image.digest
    assert [layer.media_type for layer in manifest.layers] == [mt.IMAGE_COMPAT_SPEC_LAYER]
    body = json.loads(read_all(store, manifest.layers[0]))
    validator("image-compatibility.spec.v1.schema.json").validate(body)
    assert body["compatibilities"]["io.ocikit"]["requirements"] == [r.to_dict() for r in view_report.requirements]


def test_check_reference_reads_only_the_referrer(store, view_report):
    image = make_artifact(store)
    assert check_reference(store, image) is None  # nothing attached yet
    attach_compat(store, image, view_report)
    image_layers = {d.digest for d in fetch_manifest(store, image).layers}
    fetched: list[str] = []
    real_fetch = store.fetch

    def recording_fetch(desc):  # type: ignore[no-untyped-def]
        fetched.append(desc.digest)
        return real_fetch(desc)

    store.fetch = recording_fetch  # type: ignore[method-assign]
    old = HostInfo(machine="x86_64", libc="glibc", glibc="2.31", cpu_flags=frozenset(), libraries={})
    result = check_reference(store, image, old)
    assert fetched and not image_layers.intersection(fetched)  # the image's layers were never read
    assert result is not None and not result.compatible
    libc = next(i for i in result.items if i.requirement.kind == "libc")
    assert libc.status == TOO_OLD and "GLIBC_2.36" in libc.why
    assert image.digest in result.subject


def test_newest_compat_artifact_wins(tmp_path, view_report, debian_libs, monkeypatch):  # noqa: F811
    store = LayoutStore(str(tmp_path / "layout"))
    image = make_artifact(store)
    from ocikit.compat import artifact

    monkeypatch.setattr(artifact, "now_rfc3339", lambda: "2024-01-01T00:00:00Z")
    attach_compat(store, image, view_report)
    monkeypatch.setattr(artifact, "now_rfc3339", lambda: "2025-01-01T00:00:00Z")
    newer = attach_compat(store, image, scan(debian_libs))
    assert newest_referrer(store, image, mt.IMAGE_COMPAT_ARTIFACT).digest == newer.digest
    document = read_compat_document(store, image)
    assert document["compatibilities"]["org.supercontainers"]["mpi.implementation"] == "mpich,openmpi"


def test_nfd_artifact_for_a_gpu_view(tmp_path, debian_libs):  # noqa: F811
    store = LayoutStore(str(tmp_path / "layout"))
    image = make_artifact(store)
    report = scan(debian_libs)
    attach_compat(store, image, report, nfd=True)
    nfd = store.referrers(image, artifact_type=mt.NFD_COMPAT_ARTIFACT)
    assert len(nfd) == 1
    manifest = fetch_manifest(store, nfd[0])
    assert [layer.media_type for layer in manifest.layers] == [mt.NFD_COMPAT_LAYER]
    body = json.loads(read_all(store, manifest.layers[0]))  # JSON is valid YAML
    assert body["version"] == "v1alpha1"
    vendors = [
        r["matchFeatures"][0]["matchExpressions"]["vendor"]["value"] for r in body["compatibilities"][0]["rules"]
    ]
    assert vendors == [["1002"]]  # ROCm via libhiprand; OpenCL has no single PCI vendor


def test_no_nfd_artifact_when_nothing_translates(tmp_path, view_report):
    store = LayoutStore(str(tmp_path / "layout"))
    image = make_artifact(store)
    attach_compat(store, image, view_report, nfd=True)  # generic x86_64, no GPU
    assert store.referrers(image, artifact_type=mt.NFD_COMPAT_ARTIFACT) == []


def test_labels_referrer(store):
    image = make_artifact(store)
    first = add_labels(store, image, {"team": "hpc", "site": "a"})
    add_labels(store, image, parse_label_arguments(["site=b", "note=x=y"]))
    referrers = store.referrers(image, artifact_type=mt.OCIKIT_LABELS_ARTIFACT)
    assert len(referrers) == 2
    shown = next(d for d in referrers if d.digest == first.digest)
    assert shown.annotations["team"] == "hpc"  # discover shows labels without fetching the layer
    merged = read_labels(store, image)
    assert merged["team"] == "hpc" and merged["note"] == "x=y" and merged["site"] in ("a", "b")
    manifest = fetch_manifest(store, first)
    body = json.loads(read_all(store, manifest.layers[0]))
    validator("ocikit.labels.v1.schema.json").validate(body)


def test_newest_label_wins(tmp_path, monkeypatch):
    store = LayoutStore(str(tmp_path / "layout"))
    image = make_artifact(store)
    from ocikit.compat import artifact

    monkeypatch.setattr(artifact, "now_rfc3339", lambda: "2025-01-01T00:00:00Z")
    add_labels(store, image, {"site": "new"})
    monkeypatch.setattr(artifact, "now_rfc3339", lambda: "2024-01-01T00:00:00Z")
    add_labels(store, image, {"site": "old"})
    assert read_labels(store, image) == {"site": "new"}


@pytest.mark.parametrize("bad", [{}, {"": "x"}, {"has space": "x"}, {"k": "v" * 5000}, {mt.ANNOTATION_CREATED: "2020"}])
def test_bad_labels_are_refused(tmp_path, bad):
    store = LayoutStore(str(tmp_path / "layout"))
    image = make_artifact(store)
    with pytest.raises(InvalidContentError):
        add_labels(store, image, bad)
    assert store.referrers(image) == []


def test_label_arguments_need_an_equals_sign():
    with pytest.raises(InvalidContentError, match="not key=value"):
        parse_label_arguments(["novalue"])


def test_check_target_follows_an_index_to_the_host_platform(tmp_path, view_report):
    from ocikit.compat.by_reference import check_target
    from ocikit.content.base import push_manifest
    from ocikit.spec.descriptor import Platform
    from ocikit.spec.manifest import build_index

    layout = tmp_path / "layout"
    store = LayoutStore(str(layout))
    child = make_artifact(store).replace(platform=Platform("linux", "amd64"))
    push_manifest(store, build_index([child]), tag="multi")
    attach_compat(store, child, view_report)
    host = HostInfo(machine="x86_64", libc="glibc", glibc="2.30", cpu_flags=frozenset(), libraries={})
    result = check_target(f"oci:{layout}:multi", host=host)
    assert not result.compatible
    assert next(i for i in result.items if i.requirement.kind == "libc").status == TOO_OLD
