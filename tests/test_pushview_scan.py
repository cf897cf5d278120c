"""Scanning views: the real spack fixture's ownership map, symlink rules, roots, plain directories."""

import json
import os

import pytest
from pushview_support import REAL_ROOT, VIEW_PATH, unpack_fixture

from ocikit.errors import UnsafeContentError
from ocikit.formats.tar.writer import DIRECTORY, FILE, SYMLINK
from ocikit.spack.artifact import placeholder_for
from ocikit.spack.layering import plan_layers
from ocikit.spack.view import scan_view


@pytest.fixture(scope="module")
def fixture_view(tmp_path_factory):
    return unpack_fixture(str(tmp_path_factory.mktemp("scan")))


@pytest.fixture(scope="module")
def view(fixture_view):
    return scan_view(fixture_view, root=REAL_ROOT, view_path=VIEW_PATH)


def test_roots_packages_and_store_root(view):
    assert (view.kind, view.view_path, view.real_root, view.name) == ("spack", VIEW_PATH, REAL_ROOT, "view")
    assert view.store_root == "/opt/software"
    assert view.spack_version.startswith("1.1.0")
    # names, versions and hashes as listed in the fixture README
    assert {(p.name, p.version, p.hash[:7]) for p in view.packages} == {
        ("bzip2", "1.0.8", "vlb22pw"),
        ("gcc-runtime", "12.2.0", "ho4btyq"),
        ("xz", "5.4.1", "5dutzbx"),
        ("zlib", "1.2.13", "n6pnftv"),
        ("zstd", "1.5.4", "s7jxyn3"),
    }
    zlib = next(p for p in view.packages if p.name == "zlib")
    assert zlib.prefix == "/opt/software/linux-x86_64/zlib-1.2.13-n6pnftvwnruwxqkvmdrqfkgz46j2g6td"


def test_every_file_is_owned_as_the_fixture_readme_counts(view):
    # README: per-prefix counts of files and symlinks (bzip2 21/9, gcc-runtime 14/0, xz 108/108,
    # zlib 10/2, zstd 16/7); each prefix's files land in the view, its .spack/ as .spack/<name>/.
    expected = {"bzip2": (21, 9), "gcc-runtime": (14, 0), "xz": (108, 108), "zlib": (10, 2), "zstd": (16, 7)}
    for package in view.packages:
        owned = [e for e in view.entries if e.owner == package.key]
        counts = (sum(e.kind == FILE for e in owned), sum(e.kind == SYMLINK for e in owned))
        assert counts == expected[package.name], package.name
    assert all(e.kind == DIRECTORY for e in view.entries if e.owner is None)


def test_package_files_carry_install_manifest_mtimes(view, fixture_view):
    manifest = json.load(open(os.path.join(fixture_view, ".spack", "zlib", "install_manifest.json")))
    prefix = next(p for p in view.packages if p.name == "zlib").prefix
    libz = next(e for e in view.entries if e.rel == "lib/libz.so.1.2.13")
    assert libz.mtime == int(manifest[prefix + "/lib/libz.so.1.2.13"]["time"])
    assert libz.mtime != libz.stat.st_mtime_ns // 10**9  # the view copy is younger


def test_absolute_symlinks_into_the_view_become_relative(view):
    links = {e.rel: e.link for e in view.entries if e.kind == SYMLINK}
    # README: bin/bzcmp -> /opt/._view/<hash>/bin/bzdiff
    assert links["bin/bzcmp"] == "bzdiff"
    assert not any(target.startswith("/") for target in links.values())


def test_view_symlink_gives_view_path_and_real_root(tmp_path):
    real = tmp_path / "._view" / "abc"
    (real / "bin").mkdir(parents=True)
    (real / "bin" / "tool").write_text("#!/bin/sh\n")
    os.symlink(str(real / "bin" / "tool"), real / "bin" / "alias")
    os.symlink(str(real), tmp_path / "view")
    scanned = scan_view(str(tmp_path / "view"))
    assert scanned.view_path == str(tmp_path / "view")
    assert scanned.real_root == str(real)
    assert scanned.kind == "directory" and scanned.name == "view"
    assert {e.rel: e.link for e in scanned.entries if e.kind == SYMLINK} == {"bin/alias": "tool"}


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside"])
def test_symlinks_leaving_the_view_are_refused_unless_allowed(tmp_path, target):
    (tmp_path / "v").mkdir()
    os.symlink(target, tmp_path / "v" / "escape")
    with pytest.raises(UnsafeContentError) as err:
        scan_view(str(tmp_path / "v"))
    assert str(tmp_path / "v" / "escape") in str(err.value) and "--allow-external-symlinks" in str(err.value)
    kept = scan_view(str(tmp_path / "v"), allow_external_symlinks=True)
    assert [(e.rel, e.link, e.external) for e in kept.entries] == [("escape", target, True)]


def test_plain_directory_is_one_package_owning_everything(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("x")
    scanned = scan_view(str(tmp_path / "d"))
    plans = plan_layers(scanned, "packages")
    assert [(p.role, p.title) for p in plans] == [("package", "d")]
    assert [m.name for m in plans[0].members] == ["sub", "sub/f"]


def test_layer_plan_per_package_and_view_layer_last(view):
    plans = plan_layers(view, "packages", extension=".tar.zst")
    assert [p.title for p in plans] == [
        "bzip2-1.0.8-vlb22pw.tar.zst",
        "gcc-runtime-12.2.0-ho4btyq.tar.zst",
        "xz-5.4.1-5dutzbx.tar.zst",
        "zlib-1.2.13-n6pnftv.tar.zst",
        "zstd-1.5.4-s7jxyn3.tar.zst",
        "view-view.tar.zst",
    ]
    assert {m.kind for p in plans[:-1] for m in p.members} <= {FILE, SYMLINK}
    assert {m.kind for m in plans[-1].members} == {DIRECTORY}


def test_split_above_max_layer_size_at_file_boundaries(view):
    limit = 4 << 20
    plans = [p for p in plan_layers(view, "packages", limit) if p.package and p.package.name == "gcc-runtime"]
    assert len(plans) > 1 and [p.part for p in plans] == list(range(1, len(plans) + 1))
    for plan in plans:
        assert plan.tar_size <= limit or len(plan.members) == 1
    whole = next(p for p in plan_layers(view, "packages") if p.package and p.package.name == "gcc-runtime")
    assert [m.name for p in plans for m in p.members] == [m.name for m in whole.members]


def test_single_layer_names_everything_under_the_title(view):
    [plan] = plan_layers(view, "single")
    assert plan.title == "view" and plan.members[0].name == "view" and plan.members[0].kind == DIRECTORY
    assert all(m.name.startswith("view/") for m in plan.members[1:])
    assert len(plan.members) == len(view.entries) + 1


def test_placeholder_same_length_deterministic_and_refuses_tiny_roots():
    assert len(placeholder_for(REAL_ROOT)) == len(REAL_ROOT)
    assert placeholder_for(REAL_ROOT) == placeholder_for("/opt/._view/" + "z" * 32)
    assert placeholder_for(REAL_ROOT).startswith("/__ocikit_root_placeholder__")
    assert REAL_ROOT not in placeholder_for(REAL_ROOT)
    with pytest.raises(ValueError):
        placeholder_for("/opt/v")
