import pytest

from ocikit.errors import InvalidReferenceError
from ocikit.reference import LayoutReference, RegistryReference, parse_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest",
    [
        ("ubuntu", "docker.io", "library/ubuntu", "", ""),
        ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", ""),
        ("spack/ubuntu-jammy", "docker.io", "spack/ubuntu-jammy", "", ""),
        ("docker.io/ubuntu", "docker.io", "library/ubuntu", "", ""),
        ("index.docker.io/library/ubuntu", "docker.io", "library/ubuntu", "", ""),
        ("localhost/x", "localhost", "x", "", ""),
        ("localhost:5000/x", "localhost:5000", "x", "", ""),
        ("localhost:5000/a/b/c:tag", "localhost:5000", "a/b/c", "tag", ""),
        ("ghcr.io/org/img@" + DIGEST, "ghcr.io", "org/img", "", DIGEST),
        ("ghcr.io/org/img:v1@" + DIGEST, "ghcr.io", "org/img", "v1", DIGEST),
        ("127.0.0.1:35000/view:latest", "127.0.0.1:35000", "view", "latest", ""),
        ("registry.example.com:443/x/y_z.w-v:1.0_rc", "registry.example.com:443", "x/y_z.w-v", "1.0_rc", ""),
        ("[::1]:5000/x", "[::1]:5000", "x", "", ""),
    ],
)
def test_registry_references(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert ref == RegistryReference(registry, repository, tag, digest)


def test_reference_defaults_to_latest():
    assert parse_reference("localhost:5000/x").reference == "latest"
    assert parse_reference("localhost:5000/x@" + DIGEST).reference == DIGEST


def test_docker_hub_api_host():
    assert parse_reference("ubuntu").api_host == "registry-1.docker.io"
    assert parse_reference("localhost:5000/x").api_host == "localhost:5000"


@pytest.mark.parametrize(
    "text, path, tag, digest",
    [
        ("oci:./layout", "./layout", "", ""),
        ("oci:./layout:v1", "./layout", "v1", ""),
        ("oci:/abs/path@" + DIGEST, "/abs/path", "", DIGEST),
        ("oci-layout:/abs/path:tag", "/abs/path", "tag", ""),
        ("oci:/dir:with:colons/x:tag", "/dir:with:colons/x", "tag", ""),
        ("oci:/dir:with:colons/x", "/dir:with:colons/x", "", ""),
    ],
)
def test_layout_references(text, path, tag, digest):
    assert parse_reference(text) == LayoutReference(path, tag, digest)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ubuntu",
        "UPPER/case",
        "localhost:5000/x:bad tag",
        "x@sha256:short",
        "x@md5:" + "a" * 32,
        "host:notaport:/x",
        "oci:",
        "a//b",
        "x:" + "t" * 129,
    ],
)
def test_invalid_references(text):
    with pytest.raises(InvalidReferenceError):
        parse_reference(text)


def test_str_roundtrip():
    for text in ["localhost:5000/a/b:t@" + DIGEST, "oci:/x:y", "docker.io/library/ubuntu:1"]:
        assert str(parse_reference(text)) == text
