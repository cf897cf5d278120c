"""The one spack ``spec.json`` reader: real Spack 1.1.0 files, the older layouts, bad input, and its two users.

The Spack 1.1.0 files are the ones in the real spack copy view (fixtures/spack-specfiles/spack-1.1.0,
provenance in fixtures/README.md); the v1–v3 samples are hand-written in spack's older layouts.
"""

import json
import os
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ocikit.compat.spack as compat_spack
import ocikit.spack.view as spack_view
from ocikit.compat.scan import scan
from ocikit.errors import InvalidContentError, LocalIOError
from ocikit.spack.specfile import SpecFile, is_spec_file, parse_spec_document, read_spec_file

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "spack-specfiles")
SPACK_1_1 = os.path.join(FIXTURES, "spack-1.1.0")
HAND_WRITTEN = os.path.join(FIXTURES, "hand-written")

# name -> (version, hash): the install prefixes of the fixture view (fixtures/README.md)
VIEW_PACKAGES = {
    "bzip2": ("1.0.8", "vlb22pwkz6lpluae676hedxl4hejfuup"),
    "gcc-runtime": ("12.2.0", "ho4btyqxkcj6smvuxllpgft3exdlvhun"),
    "xz": ("5.4.1", "5dutzbxj5lkbfsuucpdxh4mpqlco2frt"),
    "zlib": ("1.2.13", "n6pnftvwnruwxqkvmdrqfkgz46j2g6td"),
    "zstd": ("1.5.4", "s7jxyn3yp6tk657f5zyyvtqwy5ziup7a"),
}


def _real(name: str) -> str:
    return os.path.join(SPACK_1_1, name, "spec.json")


def _legacy(version: int) -> str:
    return os.path.join(HAND_WRITTEN, f"app.v{version}.spec.json")


@pytest.mark.parametrize("name", sorted(VIEW_PACKAGES))
def test_spack_1_1_files_name_their_package_first(name):
    spec = read_spec_file(_real(name))
    assert spec.version == 5
    assert spec.root is not None and spec.root.name == name
    assert (spec.root.version, spec.root.hash) == VIEW_PACKAGES[name]
    assert (spec.root.platform, spec.root.os, spec.root.target) == ("linux", "debian12", "x86_64")
    assert all(child is not None for _, _, child in spec.edges())  # every edge names a node of the file


def test_spack_1_1_edges_carry_deptypes_virtuals_and_externals():
    spec = read_spec_file(_real("zstd"))
    edges = {edge.name: (edge.deptypes, edge.virtuals, edge.runtime) for edge in spec.root.dependencies}
    assert edges["glibc"] == (("link",), ("libc",), True)
    assert edges["gcc"] == (("build",), ("c", "cxx"), False)
    assert edges["gcc-runtime"] == (("link",), (), True)
    glibc = spec.child(spec.root.dependencies[[e.name for e in spec.root.dependencies].index("glibc")])
    assert glibc is not None and (glibc.spec, glibc.external_path) == ("glibc@2.36", "/usr")
    assert spec.node("zstd").variants["programs"] is True
    assert spec.node("no-such-package") is None


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_specfile_layouts_give_the_same_dag(version):
    spec = read_spec_file(_legacy(version))
    assert spec.version == version
    assert [n.spec for n in spec.nodes][0] == "app@2.0"
    resolved = {(parent.name, child.name): edge.runtime for parent, edge, child in spec.edges() if child}
    # v1 and v2 edges name the child's build hash, v3 its dag hash: all resolve
    assert resolved == {("app", "mpich"): True, ("app", "zlib"): True, ("app", "cmake"): False,
                        ("mpich", "zlib"): True}
    assert spec.node("cmake").external_path == "/usr"
    assert spec.node("mpich").variants == {"device": "ch4"}
    app = spec.root
    if version < 3:
        assert app.target == "skylake" and app.target_features == ("avx", "avx2", "fma", "sse4_2")
    else:
        assert (app.target, app.target_features) == ("x86_64", ())


def test_compat_finds_link_externals_through_build_hash_edges(tmp_path):
    """A 0.17 spec (v2) links its externals by build hash; compat must see them (it did not before)."""
    with open(_legacy(2), encoding="utf-8") as stream:
        document = json.load(stream)
    document["spec"]["nodes"][0]["dependencies"][0]["type"] = ["build", "link"]  # app links the external cmake
    _write(tmp_path / "view" / ".spack" / "app" / "spec.json", document)
    info = compat_spack.read_spack_metadata(str(tmp_path / "view"), [".spack/app/spec.json"])
    assert [p.spec for p in info.packages] == ["app@2.0"]
    assert [e.spec for e in info.externals] == ["cmake@3.20.2"]
    assert info.targets() == ["skylake"] and info.target_features("skylake") == ("avx", "avx2", "fma", "sse4_2")


def test_a_view_with_a_version_1_spec_is_scanned(tmp_path):
    view = tmp_path / "view"
    _write(view / ".spack" / "app" / "spec.json", json.load(open(_legacy(1), encoding="utf-8")))
    (view / "bin").mkdir()
    (view / "bin" / "app").write_bytes(b"#!/bin/sh\n")
    scanned = spack_view.scan_view(str(view))
    assert [(p.name, p.version, p.hash) for p in scanned.packages] == [("app", "2.0", "d" + "a" * 31)]


def test_view_scanning_and_compat_facts_both_read_through_the_one_reader(tmp_path, monkeypatch):
    view = tmp_path / "view"
    for name in VIEW_PACKAGES:
        os.makedirs(view / ".spack" / name)
        shutil.copy(_real(name), view / ".spack" / name / "spec.json")
    (view / "lib").mkdir()
    (view / "lib" / "libz.a").write_bytes(b"!<arch>\n")
    calls: list[tuple[str, str]] = []

    def spy(module):
        def reading(path, *args, **kwargs):
            calls.append((module.__name__, os.path.relpath(path, view)))
            return read_spec_file(path, *args, **kwargs)

        monkeypatch.setattr(module, "read_spec_file", reading)

    spy(spack_view)
    spy(compat_spack)
    scanned = spack_view.scan_view(str(view))
    report = scan(str(view), workers=1)
    assert {(p.name, (p.version, p.hash)) for p in scanned.packages} == set(VIEW_PACKAGES.items())
    assert [p.name for p in report.spack.packages] == sorted(VIEW_PACKAGES)
    assert report.spack.providers["libc"].node.spec == "glibc@2.36"
    expected = {os.path.join(".spack", name, "spec.json") for name in VIEW_PACKAGES}
    assert {path for module, path in calls if module == "ocikit.spack.view"} == expected
    assert {path for module, path in calls if module == "ocikit.compat.spack"} == expected


def test_spec_file_paths():
    assert is_spec_file(".spack/zlib/spec.json") and is_spec_file("opt/x/.spack/spec.json")
    assert not is_spec_file("share/spec.json") and not is_spec_file(".spack/zlib/spec.json.bak")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        (b"[]", "not a spack spec file"),
        (b'{"spec": {"nodes": {}}}', "not a spack spec file"),
        (b'{"spec": {"nodes": [{"version": "1"}]}}', "has no name"),
        (b'{"spec": [{"a": {}, "b": {}}]}', "not a {name: node} map"),
        (b'{"spec": {"nodes": [{"name": "a", "dependencies": 3}]}}', "neither a list nor a map"),
    ],
)
def test_bad_spec_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "spec.json"
    path.write_bytes(content)
    with pytest.raises(InvalidContentError, match=message) as caught:
        read_spec_file(str(path), shown_as=".spack/x/spec.json")
    assert str(caught.value).startswith(".spack/x/spec.json") and "\n" not in str(caught.value)


def test_an_unreadable_spec_file_is_a_local_io_error(tmp_path):
    with pytest.raises(LocalIOError, match="cannot read"):
        read_spec_file(str(tmp_path))  # a directory


def test_compat_records_a_bad_spec_file_and_goes_on(tmp_path):
    _write(tmp_path / ".spack" / "bad" / "spec.json", {"spec": 7})
    shutil.copytree(os.path.join(SPACK_1_1, "zlib"), tmp_path / ".spack" / "zlib")
    info = compat_spack.read_spack_metadata(str(tmp_path), [".spack/bad/spec.json", ".spack/zlib/spec.json"])
    assert info.errors == [".spack/bad/spec.json is not a spack spec file (no 'spec' nodes)"]
    assert [p.name for p in info.packages] == ["zlib"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
_keys = st.sampled_from(["name", "version", "hash", "build_hash", "arch", "target", "features", "external",
                         "path", "parameters", "dependencies", "type", "deptypes", "virtuals", "spec", "nodes",
                         "_meta"])
_spec_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, _spec_like, st.builds(lambda s: {"spec": s}, _spec_like)))
def test_any_json_document_parses_or_is_invalid_content(document):
    try:
        spec = parse_spec_document(document)
    except InvalidContentError:
        return
    assert isinstance(spec, SpecFile)
    for parent, edge, child in spec.edges():
        assert parent.name and isinstance(edge.runtime, bool) and (child is None or child.name)


def _write(path, document) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(document, stream)
