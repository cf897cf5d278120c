"""SOCI index manifest v2 (``ztoc convert``), v2-first discovery, honest byte counts, the v1 rules.

The v2 layout is checked field by field against what soci-snapshotter's ``soci convert``
writes (``soci/soci_convert.go``, ``soci/soci_index.go``), on a real docker-registry and in
OCI layouts; byte counts are taken at a proxy in front of the registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from environment import require_binary
from ztoc_helpers import SPAN, gnu_tar, gzip_file, make_tree, push_image, tar_with

import ocikit
from ocikit.content.base import fetch_manifest, push_bytes, push_manifest
from ocikit.content.layout import LayoutStore
from ocikit.content.open import open_store
from ocikit.errors import UnsupportedError
from ocikit.pull.policy import PullPolicy
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor, Platform
from ocikit.spec.manifest import build_index
from ocikit.testing.fault_proxy import FaultProxy
from ocikit.testing.images import make_image
from ocikit.ztoc.api import build_ztocs, convert_ztocs, get_file, list_ztocs, ztoc_info
from ocikit.ztoc.soci import attach_index, load_ztoc

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")
HOST = Platform.host()


@pytest.fixture(scope="module")
def layer(tmp_path_factory):
    """A real gzip layer (GNU tar + gzip) of a small software tree, and that tree."""
    work = tmp_path_factory.mktemp("v2")
    root = str(work / "tree")
    os.mkdir(root)
    make_tree(root)
    return root, gzip_file(gnu_tar(root, str(work / "layer.tar")), str(work / "layer.gz"))


@pytest.fixture
def proxy(registry_server):
    proxy = FaultProxy(registry_server.host)
    yield proxy
    proxy.close()


def _image(ref: str, layer_path: str) -> tuple[object, Descriptor]:
    store, _ = open_store(ref)
    return store, push_image(store, [(layer_path, mt.OCI_LAYER_GZIP)], tag=ref.rsplit(":", 1)[1])


def assert_v2_layout(store, converted: Descriptor) -> list[tuple[Descriptor, Descriptor]]:
    """The layout ``soci convert`` writes; returns the (image entry, SOCI index entry) pairs."""
    top = fetch_manifest(store, converted)
    assert top.media_type == mt.OCI_INDEX and top.document["mediaType"] == mt.OCI_INDEX
    socis = [e for e in top.manifests if e.artifact_type == mt.SOCI_INDEX_V2]
    pairs = []
    for soci in socis:
        assert soci.media_type == mt.OCI_MANIFEST and soci.platform is not None
        image_digest = soci.annotations[mt.SOCI_ANNOTATION_IMAGE_MANIFEST_DIGEST]
        (image,) = [e for e in top.manifests if e.digest == image_digest]
        assert image.media_type == mt.OCI_MANIFEST and image.platform == soci.platform
        manifest = fetch_manifest(store, image)
        assert manifest.annotations[mt.SOCI_ANNOTATION_INDEX_DIGEST] == soci.digest
        assert dict(image.annotations) == dict(manifest.annotations)  # the entry carries them too
        index = fetch_manifest(store, soci)
        assert "subject" not in index.document and "artifactType" not in index.document  # bound, not a referrer
        assert index.config == Descriptor(mt.SOCI_INDEX_V2, mt.EMPTY_DIGEST, 2)
        assert store.exists(index.config)
        assert index.annotations[mt.SOCI_ANNOTATION_BUILD_TOOL].startswith("ocikit")
        layer_digests = [layer.digest for layer in manifest.layers]
        listed = [z.annotations[mt.SOCI_ANNOTATION_LAYER_DIGEST] for z in index.layers]
        assert listed == [d for d in layer_digests if d in listed]  # image-layer order
        for ztoc in index.layers:
            assert ztoc.media_type == mt.SOCI_ZTOC_BLOB and store.exists(ztoc)
            assert {mt.SOCI_ANNOTATION_LAYER_MEDIATYPE, mt.SOCI_ANNOTATION_SPAN_SIZE} <= set(ztoc.annotations)
        pairs.append((image, soci))
    assert pairs, "no SOCI v2 index in the converted image"
    return pairs


def test_a_converted_image_is_read_through_v2_with_ranges_only(registry, proxy, layer, tmp_path):
    root, layer_path = layer
    ref = f"{registry}/v2/read:v1"
    store, manifest = _image(ref, layer_path)
    report = convert_ztocs(ref, span_size=SPAN, min_layer_size=0)
    assert report.reference == f"{registry}/v2/read:v1-soci" and report.source == manifest.digest
    ((image, _),) = assert_v2_layout(store, store.resolve("v1-soci"))
    assert fetch_manifest(store, image).layers == fetch_manifest(store, manifest).layers  # layers shared

    via_proxy = f"{proxy.host}/v2/read:v1-soci"
    (record,) = list_ztocs(via_proxy)
    assert record.via == "soci-v2" and record.span_size == SPAN
    assert [i.digest for i in ztoc_info(via_proxy)] == [record.ztoc.digest]
    proxy.clear()
    result = get_file(via_proxy, "bin/tool", str(tmp_path / "tool"))
    assert (tmp_path / "tool").read_bytes() == open(os.path.join(root, "bin/tool"), "rb").read()
    assert result.built_ztocs == [] and result.index_bytes == record.ztoc.size
    assert result.bytes_fetched == proxy.blob_bytes()  # what it says is what the registry served
    layer_gets = [r for r in proxy.requests if r.method == "GET" and result.layer in r.path]
    assert layer_gets and all("range" in r.headers for r in layer_gets)  # the layer only by ranges
    assert result.bytes_fetched - result.index_bytes < result.layer_size / 2


def test_bytes_are_counted_truthfully_when_zTOCs_are_built_in_memory(registry, proxy, layer, tmp_path):
    _, layer_path = layer
    _image(f"{registry}/v2/plain:v1", layer_path)
    proxy.clear()
    result = get_file(f"{proxy.host}/v2/plain:v1", "share/doc/README", str(tmp_path / "README"))
    assert result.built_ztocs == [result.layer]
    assert result.index_bytes == result.layer_size  # the layer was read whole to index it
    assert result.bytes_fetched == proxy.blob_bytes() > result.layer_size


def test_v1_referrers_are_still_found_and_reused_by_convert(registry, layer):
    _, layer_path = layer
    ref = f"{registry}/v2/legacy:v1"
    _image(ref, layer_path)
    built = build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    (record,) = list_ztocs(ref)
    assert record.via == "soci-v1" and record.ztoc.digest == built.layers[0].ztoc
    report = convert_ztocs(ref, span_size=SPAN, min_layer_size=0)
    assert [o.status for o in report.platforms[0].layers] == ["reused"]  # not read again
    (converted,) = list_ztocs(report.reference)
    assert converted.via == "soci-v2" and converted.ztoc.digest == record.ztoc.digest


def test_convert_is_idempotent_and_a_fixed_point(tmp_path, layer):
    _, layer_path = layer
    store = LayoutStore(str(tmp_path / "l"))
    push_image(store, [(layer_path, mt.OCI_LAYER_GZIP)])
    ref = f"oci:{tmp_path / 'l'}:v1"
    first = convert_ztocs(ref, span_size=SPAN, min_layer_size=0)
    again = convert_ztocs(ref, span_size=SPAN, min_layer_size=0)
    assert again.digest == first.digest
    assert again.platforms[0].index == first.platforms[0].index
    twice = convert_ztocs(first.reference, to=f"oci:{tmp_path / 'l'}:twice", span_size=SPAN, min_layer_size=0)
    assert twice.digest == first.digest  # converting a converted image changes nothing
    assert_v2_layout(store, store.resolve("v1-soci"))


def test_convert_from_a_layout_into_a_registry(tmp_path, registry, layer):
    root, layer_path = layer
    store = LayoutStore(str(tmp_path / "l"))
    push_image(store, [(layer_path, mt.OCI_LAYER_GZIP)])
    target = f"{registry}/v2/fromlayout:soci"
    report = convert_ztocs(f"oci:{tmp_path / 'l'}:v1", to=target, span_size=SPAN, min_layer_size=0)
    remote, _ = open_store(target)
    assert remote.resolve("soci").digest == report.digest
    assert_v2_layout(remote, remote.resolve("soci"))
    get_file(target, "lib/libbig.so.1", str(tmp_path / "lib"))
    assert (tmp_path / "lib").read_bytes() == open(os.path.join(root, "lib/libbig.so.1"), "rb").read()


def _multi_arch(store) -> tuple[Descriptor, dict[str, Descriptor]]:
    payload = os.urandom(1 << 20)
    entries = {}
    for arch in ("amd64", "arm64"):
        desc = make_image(store, [{"big.bin": payload + arch.encode()}, {"etc/arch": arch.encode()}],
                          architecture=arch)
        platform = Platform("linux", arch, "v8" if arch == "arm64" else "")
        entries[arch] = desc.replace(platform=platform)
    raw = build_index(entries.values(), annotations={"org.example": "kept"})
    return push_manifest(store, raw, tag="multi"), entries


def test_multi_platform_images(tmp_path):
    store = LayoutStore(str(tmp_path / "l"))
    index, entries = _multi_arch(store)
    ref = f"oci:{tmp_path / 'l'}:multi"
    small = 100_000  # the 1 MiB layer is indexed, the tiny arch layer is skipped
    report = convert_ztocs(ref, to=f"{ref}-all", all_platforms=True, min_layer_size=small)
    pairs = assert_v2_layout(store, store.resolve("multi-all"))
    assert sorted(str(s.platform) for _, s in pairs) == ["linux/amd64", "linux/arm64/v8"]
    top = fetch_manifest(store, store.resolve("multi-all"))
    assert top.annotations == {"org.example": "kept"}
    assert [e.artifact_type for e in top.manifests] == [mt.OCI_CONFIG] * 2 + [mt.SOCI_INDEX_V2] * 2
    assert [[o.status for o in p.layers] for p in report.platforms] == [["built", "skipped"]] * 2
    arm = list_ztocs(f"{ref}-all", platform="linux/arm64")
    assert [r.via for r in arm] == ["soci-v2"]
    listed = subprocess.run([OCIKIT, "ztoc", "ls", f"{ref}-all", "--platform", "linux/arm64", "--json"],
                            capture_output=True, text=True)
    assert [r["ztoc"] for r in json.loads(listed.stdout)] == [arm[0].ztoc.digest]

    default = convert_ztocs(ref, to=f"{ref}-host", min_layer_size=small)  # this host's platform only
    assert [p.platform for p in default.platforms] == [str(entries[HOST.architecture].platform)]
    top = fetch_manifest(store, store.resolve("multi-host"))
    other = "arm64" if HOST.architecture == "amd64" else "amd64"
    assert entries[other] in top.manifests  # the platform not asked for keeps its exact entry
    assert len([e for e in top.manifests if e.artifact_type == mt.SOCI_INDEX_V2]) == 1

    chosen = convert_ztocs(ref, to=f"{ref}-arm", platforms=("linux/arm64",), min_layer_size=small)
    assert [p.platform for p in chosen.platforms] == ["linux/arm64/v8"]


def test_layers_under_the_minimum_are_skipped_and_nothing_to_index_is_an_error(tmp_path, layer):
    _, layer_path = layer
    store = LayoutStore(str(tmp_path / "l"))
    push_image(store, [(layer_path, mt.OCI_LAYER_GZIP)])
    ref = f"oci:{tmp_path / 'l'}:v1"
    with pytest.raises(UnsupportedError, match="nothing to convert"):
        convert_ztocs(ref, min_layer_size=os.path.getsize(layer_path) + 1)
    assert "v1-soci" not in store.tags()


def test_an_opaque_whiteout_layer_keeps_xattrs(tmp_path):
    store = LayoutStore(str(tmp_path / "l"))
    plain = tar_with([("etc/", None, {"type": b"5", "mode": 0o755}), ("etc/a", b"a" * 5000, {})])
    opaque = tar_with([("etc/", None, {"type": b"5", "mode": 0o755}), ("etc/.wh..wh..opq", b"", {}),
                       ("etc/b", b"b" * 5000, {})])
    xattr = tar_with([("etc/c", b"c", {"pax_headers": {"SCHILY.xattr.user.k": "v"}})])
    import gzip

    layers = [push_bytes(store, mt.OCI_LAYER_GZIP, gzip.compress(t, mtime=0)) for t in (plain, opaque, xattr)]
    config = push_bytes(store, mt.OCI_CONFIG, b'{"architecture":"amd64","os":"linux"}')
    from ocikit.spec.manifest import build_manifest

    push_manifest(store, build_manifest(layers, config=config), tag="v1")
    report = convert_ztocs(f"oci:{tmp_path / 'l'}:v1", min_layer_size=0)
    index = fetch_manifest(store, report.platforms[0].index)
    disabled = [z.annotations.get(mt.SOCI_ANNOTATION_DISABLE_XATTRS) for z in index.layers]
    assert disabled == ["true", None, None]  # SOCI's rule: no xattrs and no opaque directory


def test_a_rebuild_with_another_span_replaces_the_v1_index(registry, layer):
    _, layer_path = layer
    ref = f"{registry}/v2/rebuild:v1"
    store, manifest = _image(ref, layer_path)
    foreign = attach_index(store, manifest, [], "AWS SOCI CLI v0.2")  # another tool's index stays
    build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    build_ztocs(ref, span_size=2 * SPAN, min_layer_size=0)
    soci = store.referrers(manifest, artifact_type=mt.SOCI_INDEX_V1)
    ours = [d for d in soci if d.digest != foreign.digest]
    assert len(ours) == 1 and foreign.digest in {d.digest for d in soci}
    (record,) = list_ztocs(ref)
    assert record.span_size == 2 * SPAN and record.index_digest == ours[0].digest


def test_the_golden_xattr_rule_matches_soci(tmp_path):
    """SOCI's ``shouldDisableXattrs`` on a zTOC parsed back from its bytes."""
    from ocikit.ztoc.build import build_ztoc
    from ocikit.ztoc.soci import should_disable_xattrs

    path = tmp_path / "l.tar"
    path.write_bytes(tar_with([("d/.wh..wh..opq", b"", {})]))
    with open(path, "rb") as fh:
        assert should_disable_xattrs(build_ztoc(fh, SPAN)) is False
    path.write_bytes(tar_with([("d/f", b"x", {})]))
    with open(path, "rb") as fh:
        assert should_disable_xattrs(build_ztoc(fh, SPAN)) is True


def _runnable(store, tag: str) -> Descriptor:
    """An image with diff_ids, runnable by container tools; one 2 MiB layer worth indexing."""
    return make_image(store, [{"opt/data.bin": os.urandom(2 << 20), "etc/hello": b"hi\n"}], tag=tag)


def test_a_converted_image_survives_skopeo_copy_and_pulls_as_a_plain_image(registry, tmp_path):
    require_binary("skopeo")
    ref = f"{registry}/v2/runnable:v1"
    store, _ = open_store(ref)
    _runnable(store, "v1")
    report = convert_ztocs(ref, min_layer_size=0)
    copy = f"{registry}/v2/runnable-copy:soci"
    # Debian's skopeo 1.9 drops artifactType from index entries (it predates image-spec 1.1), so
    # it refuses --preserve-digests on this index; the image manifest and SOCI index keep theirs.
    subprocess.run(["skopeo", "copy", "--all", "--src-tls-verify=false",
                    "--dest-tls-verify=false", f"docker://{report.reference}", f"docker://{copy}"],
                   check=True, capture_output=True, timeout=120)
    copied, _ = open_store(copy)
    entries = fetch_manifest(copied, "soci").manifests
    assert [e.digest for e in entries] == [report.platforms[0].converted, report.platforms[0].index]
    assert [r.via for r in list_ztocs(copy)] == ["soci-v2"]  # the index travelled with the image
    again = convert_ztocs(copy, to=f"{registry}/v2/runnable-copy:again", min_layer_size=0)
    assert again.digest == report.digest  # converting the copy restores the exact converted index
    assert_v2_layout(copied, copied.resolve("again"))
    dest = str(tmp_path / "rootfs")
    result = ocikit.pull(copy, dest, PullPolicy(rootfs=True))
    assert open(os.path.join(dest, "etc/hello"), "rb").read() == b"hi\n"
    assert result.digest in (report.digest, report.platforms[0].converted)


def test_cli_convert_and_ls(tmp_path, layer):
    _, layer_path = layer
    store = LayoutStore(str(tmp_path / "l"))
    push_image(store, [(layer_path, mt.OCI_LAYER_GZIP)])
    ref = f"oci:{tmp_path / 'l'}:v1"
    out = subprocess.run([OCIKIT, "ztoc", "convert", ref, "--to", f"{ref}-v2", "--span-size", "64KiB",
                          "--min-layer-size", "0", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    assert document["reference"].endswith(":v1-v2") and document["platforms"][0]["layers"][0]["status"] == "built"
    listed = subprocess.run([OCIKIT, "ztoc", "ls", f"{ref}-v2"], capture_output=True, text=True)
    assert listed.returncode == 0 and "soci-v2" in listed.stdout
    bad = subprocess.run([OCIKIT, "ztoc", "convert", ref, "--to", f"{ref}-x", "--min-layer-size", "1G"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "nothing to convert" in bad.stderr and "Traceback" not in bad.stderr
    z = load_ztoc(store, list_ztocs(f"{ref}-v2")[0].ztoc)
    assert z.span_size == SPAN
    for command in ("convert", "build"):
        zero = subprocess.run([OCIKIT, "ztoc", command, ref, "--span-size", "0"], capture_output=True, text=True)
        assert zero.returncode == 2 and "span size must be positive" in zero.stderr  # usage, not a crash


def test_a_docker_manifest_becomes_an_oci_manifest_sharing_its_blobs(tmp_path, layer):
    _, layer_path = layer
    store = LayoutStore(str(tmp_path / "l"))
    oci = push_image(store, [(layer_path, mt.OCI_LAYER_GZIP)])
    source = fetch_manifest(store, oci)
    config = source.config.replace(media_type=mt.DOCKER_CONFIG)
    docker = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": config.to_dict(),
              "layers": [source.layers[0].replace(media_type=mt.DOCKER_LAYER_GZIP).to_dict()]}
    from ocikit.spec.manifest import canonical_json

    push_manifest(store, canonical_json(docker), tag="docker")
    report = convert_ztocs(f"oci:{tmp_path / 'l'}:docker", span_size=SPAN, min_layer_size=0)
    ((image, _),) = assert_v2_layout(store, store.resolve("docker-soci"))
    converted = fetch_manifest(store, image)
    assert converted.media_type == mt.OCI_MANIFEST and converted.config.media_type == mt.OCI_CONFIG
    assert converted.config.digest == config.digest  # the config itself is not touched
    assert converted.layers[0].media_type == mt.DOCKER_LAYER_GZIP  # nor the layers, as soci convert
    assert report.platforms[0].layers[0].status == "built"


def _ctr(containerd, *args: str) -> str:
    done = containerd.ctr("-n", "ocikit-soci", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_containerd_pulls_and_unpacks_a_converted_image(registry, containerd, tmp_path):
    ref = f"{registry}/v2/ctr:v1"
    store, _ = open_store(ref)
    _runnable(store, "v1")
    report = convert_ztocs(ref, min_layer_size=0)
    _ctr(containerd, "images", "pull", "--plain-http", "--snapshotter", "native", report.reference)
    listed = _ctr(containerd, "images", "ls")
    assert report.digest in listed and "linux/amd64" in listed
    mount = tmp_path / "mnt"
    mount.mkdir()
    _ctr(containerd, "images", "mount", "--snapshotter", "native", report.reference, str(mount))
    try:
        assert (mount / "etc/hello").read_bytes() == b"hi\n"  # the image, not the SOCI index, was unpacked
    finally:
        containerd.ctr("-n", "ocikit-soci", "images", "unmount", str(mount))
    content = _ctr(containerd, "content", "ls")
    assert report.platforms[0].index[7:] in content  # the SOCI index came along as part of the image


def test_pull_include_reads_a_converted_image_through_v2(registry, proxy, layer, tmp_path):
    root, layer_path = layer
    ref = f"{registry}/v2/include:v1"
    _image(ref, layer_path)
    report = convert_ztocs(ref, span_size=SPAN, min_layer_size=0)
    proxy.clear()
    dest = str(tmp_path / "subset")
    result = ocikit.pull(f"{proxy.host}/v2/include:v1-soci", dest, PullPolicy(include=("bin/*",)))
    assert open(os.path.join(dest, "bin/tool"), "rb").read() == open(os.path.join(root, "bin/tool"), "rb").read()
    layer_digest = report.platforms[0].layers[0].layer
    layer_gets = [r for r in proxy.requests if r.method == "GET" and layer_digest in r.path]
    assert layer_gets and all("range" in r.headers for r in layer_gets)  # zTOC found: no whole-layer read
    config = fetch_manifest(open_store(ref)[0], report.platforms[0].converted).config
    assert result.downloaded == proxy.blob_bytes() - config.size  # all but the config the pull plan reads


def test_convert_reannotates_a_reused_zTOC_from_an_old_v1_index(tmp_path):
    import gzip

    from ocikit.ztoc.build import build_ztoc
    from ocikit.ztoc.soci import push_ztoc

    store = LayoutStore(str(tmp_path / "l"))
    opaque = tar_with([("etc/", None, {"type": b"5", "mode": 0o755}), ("etc/.wh..wh..opq", b"", {}),
                       ("etc/b", b"b" * 5000, {})])
    layer = push_bytes(store, mt.OCI_LAYER_GZIP, gzip.compress(opaque, mtime=0))
    config = push_bytes(store, mt.OCI_CONFIG, b'{"architecture":"amd64","os":"linux"}')
    from ocikit.spec.manifest import build_manifest

    plain = push_bytes(store, mt.OCI_LAYER_GZIP, gzip.compress(tar_with([("etc/a", b"a" * 5000, {})]), mtime=0))
    manifest = push_manifest(store, build_manifest([layer, plain], config=config), tag="v1")
    with store.fetch(layer) as reader:
        ztoc = build_ztoc(reader, 4 << 20, "ocikit v0.0.1")
    wrong = push_ztoc(store, layer, ztoc).with_annotations(**{mt.SOCI_ANNOTATION_DISABLE_XATTRS: "true"})
    attach_index(store, manifest, [wrong], "ocikit v0.0.1")  # what ocikit wrote before SOCI's rule
    report = convert_ztocs(f"oci:{tmp_path / 'l'}:v1", min_layer_size=0)
    assert [o.status for o in report.platforms[0].layers] == ["reused", "built"]
    entry = fetch_manifest(store, report.platforms[0].index).layers[0]
    assert entry.digest == wrong.digest and mt.SOCI_ANNOTATION_DISABLE_XATTRS not in entry.annotations
    rebuilt = build_ztocs(f"oci:{tmp_path / 'l'}:v1", min_layer_size=0)  # v1: the plain layer is new
    assert [o.status for o in rebuilt.layers] == ["exists", "built"]
    (index,) = rebuilt.indexes
    entries = fetch_manifest(store, index).layers
    assert [e.annotations.get(mt.SOCI_ANNOTATION_DISABLE_XATTRS) for e in entries] == [None, "true"]


def test_a_missing_bound_index_falls_back_to_building_in_memory(tmp_path, layer):
    root, layer_path = layer
    store = LayoutStore(str(tmp_path / "l"))
    image = fetch_manifest(store, push_image(store, [(layer_path, mt.OCI_LAYER_GZIP)]))
    document = json.loads(image.raw)
    document["annotations"] = {mt.SOCI_ANNOTATION_INDEX_DIGEST: "sha256:" + "0" * 64}  # copied without its index
    from ocikit.spec.manifest import canonical_json

    push_manifest(store, canonical_json(document), tag="orphan")
    ref = f"oci:{tmp_path / 'l'}:orphan"
    assert list_ztocs(ref) == []
    result = get_file(ref, "bin/tool", str(tmp_path / "tool"))
    assert result.built_ztocs == [result.layer]
    assert (tmp_path / "tool").read_bytes() == open(os.path.join(root, "bin/tool"), "rb").read()
