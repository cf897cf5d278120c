"""The real spack 1.1 copy view from fixtures/spack-views, relocated to where it was unpacked.

The view's files name ``/opt/._view/<hash>`` (44 characters). Spack shrank the original
install prefixes into it by padding with ``/``, which ocikit reclaims: ``bin/xz`` and ``bin/lzmainfo`` hold
``[25 slashes]opt/._view/<hash>/share/locale``, so destinations up to 68 characters fit.
The tests unpack into a short directory under /tmp to stay within that.

The system has its own liblzma, libbz2 and libzstd, so a binary that runs proves nothing by
itself: ``ldd`` (with an empty environment) must resolve the libraries inside the view.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
from environment import SPACK_VIEW_ARCHIVE, require_binary
from relocate_build import clean_env_run, resolved_libraries, snapshot

from ocikit.errors import RelocationError
from ocikit.relocate import relocate_tree
from ocikit.relocate.filekind import FileKind, classify

ROOT = "/opt/._view/m5vlrdleywqmp3aiv3sv2s54dysxhz6m"
ROOM = 68  # len(ROOT) + 24 reclaimable slashes in bin/xz's LOCALEDIR string
ELF_WITH_RPATH = (
    "bin/bzip2", "bin/bzip2recover", "bin/lzmadec", "bin/lzmainfo", "bin/xz", "bin/xzdec", "bin/zstd",
    "lib/libbz2.so.1.0.8", "lib/liblzma.so.5.4.1", "lib/libz.so.1.2.13", "lib/libzstd.so.1.5.4",
)  # fmt: skip
NEEDS = {"bin/xz": "liblzma.so.5", "bin/lzmainfo": "liblzma.so.5", "bin/bzip2": "libbz2.so.1.0"}  # zstd is static


@pytest.fixture(scope="module")
def pristine_view(tmp_path_factory) -> str:
    """The view directory alone (not the install tree), unpacked once per module."""
    require_binary("zstd")
    top = str(tmp_path_factory.mktemp("spack-view"))
    subprocess.run(["tar", "--zstd", "-xf", SPACK_VIEW_ARCHIVE, "-C", top, "opt/._view"], check=True)
    return top


@pytest.fixture
def unpacked(pristine_view):
    top = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short on purpose, see the module docstring
    try:
        subprocess.run(["cp", "-a", f"{pristine_view}/opt", f"{top}/opt"], check=True)
        yield top
    finally:
        shutil.rmtree(top)


def _assert_view_runs(view: str) -> None:
    for binary, soname in NEEDS.items():
        assert os.path.normpath(resolved_libraries(f"{view}/{binary}")[soname]) == f"{view}/lib/{soname}", binary
    xz = clean_env_run(f"{view}/bin/xz", "--version")
    assert xz.returncode == 0 and xz.stdout.startswith("xz (XZ Utils) 5.4.1"), xz.stderr
    bzip2 = clean_env_run(f"{view}/bin/bzip2", "--help")
    assert bzip2.returncode == 0 and "Version 1.0.8" in bzip2.stderr
    zstd = clean_env_run(f"{view}/bin/zstd", "--version")
    assert zstd.returncode == 0 and "v1.5.4" in zstd.stdout
    for rel in ELF_WITH_RPATH:
        dynamic = subprocess.run(["readelf", "-d", f"{view}/{rel}"], capture_output=True, text=True, check=False).stdout
        paths = [line for line in dynamic.splitlines() if "rpath" in line or "runpath" in line]
        assert paths and not any("/opt/" in line for line in paths), (rel, paths)


def test_view_does_not_find_its_libraries_before_relocation(pristine_view):
    view = pristine_view + ROOT
    assert resolved_libraries(f"{view}/bin/xz")["liblzma.so.5"] != f"{view}/lib/liblzma.so.5"


def test_view_relocated_to_its_longer_unpack_path_runs(unpacked):
    view = unpacked + ROOT
    assert ROOT < view and len(view) <= ROOM
    archives = {rel: os.path.getsize(f"{view}/{rel}") for rel in ("lib/libbz2.a", "lib/liblzma.a")}

    report = relocate_tree(view, ROOT, view)

    _assert_view_runs(view)
    assert set(ELF_WITH_RPATH) <= set(report.files_changed)
    assert report.kinds == {"elf": 11, "text": 4}
    assert report.max_new_length == ROOM
    assert sorted(report.symlinks_changed) == ["bin/bzcmp", "bin/bzegrep", "bin/bzfgrep", "bin/bzless"]
    assert os.readlink(f"{view}/bin/bzcmp") == "bzdiff"
    pc = subprocess.run(
        ["pkg-config", "--variable=prefix", f"{view}/lib/pkgconfig/zlib.pc"], capture_output=True, check=False
    )
    assert pc.stdout.decode().strip() == view
    for rel, size in archives.items():  # spack-stage paths only; never resized
        assert os.path.getsize(f"{view}/{rel}") == size
        assert subprocess.run(["ar", "t", f"{view}/{rel}"], capture_output=True, check=False).returncode == 0


def test_view_to_a_path_beyond_the_padding_fails_before_writing(unpacked):
    view = unpacked + ROOT
    before = snapshot(view)
    too_long = "/mnt/" + "v" * (ROOM - 4)
    with pytest.raises(RelocationError) as caught:
        relocate_tree(view, ROOT, too_long)
    assert sorted(p["path"] for p in caught.value.problems) == ["bin/lzmainfo", "bin/xz"]  # LOCALEDIR
    assert caught.value.max_new_length == ROOM
    assert f"at most {ROOM} characters" in str(caught.value)
    assert snapshot(view) == before


def _emulate_push_with_placeholder(view: str, placeholder: str) -> list[str]:
    """What push-view records: root → same-length placeholder in files, absolute links made relative."""
    listed = []
    for directory, _, names in os.walk(view):
        for name in names:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, view)
            if os.path.islink(path):
                target = os.readlink(path)
                if target.startswith(ROOT + "/"):
                    os.unlink(path)
                    os.symlink(os.path.relpath(view + target[len(ROOT) :], directory), path)
                continue
            with open(path, "rb") as f:
                data = f.read()
            if ROOT.encode() in data:
                with open(path, "wb") as f:
                    f.write(data.replace(ROOT.encode(), placeholder.encode()))
                listed.append(rel)
    return listed


def test_pull_flow_placeholder_to_destination_with_a_file_list(unpacked):
    view = unpacked + ROOT
    placeholder = "/" + "_ocikit_placeholder_".ljust(len(ROOT) - 9, "_") + ROOT[-8:]
    assert len(placeholder) == len(ROOT)
    listed = _emulate_push_with_placeholder(view, placeholder)
    assert len(listed) == 15
    before = snapshot(view)

    with pytest.raises(RelocationError, match=f"mount the tree at {ROOT} so"):  # not at the placeholder
        relocate_tree(view, placeholder, "/mnt/" + "v" * ROOM, files=listed, original_root=ROOT)
    report = relocate_tree(view, placeholder, view, files=listed, original_root=ROOT)

    _assert_view_runs(view)
    assert report.files_examined == len(listed)
    after = snapshot(view)
    touched = {os.path.relpath(p, view) for p in before if before[p] != after.get(p)}
    assert touched == set(listed)


def test_view_file_kinds_come_from_content(pristine_view):
    view = pristine_view + ROOT
    kinds = {}
    for rel in ("lib/liblzma.a", "lib/libz.so.1.2.13", "lib/pkgconfig/zlib.pc", "bin/xzdiff"):
        with open(f"{view}/{rel}", "rb") as f:
            kinds[rel] = classify(f.read()).kind
    with open(f"{view}/share/locale/de/LC_MESSAGES/xz.mo", "rb") as f:
        assert classify(f.read()) == (FileKind.BINARY, "gettext catalog")
    assert kinds == {
        "lib/liblzma.a": FileKind.BINARY,
        "lib/libz.so.1.2.13": FileKind.ELF,
        "lib/pkgconfig/zlib.pc": FileKind.TEXT,
        "bin/xzdiff": FileKind.TEXT,
    }
