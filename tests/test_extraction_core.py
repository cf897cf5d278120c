"""One extractor, one policy: every path that writes an untrusted tree obeys the same rules.

The same attacks run against a full pull, ``pull --include`` (zTOC range reads) and, where a
single file is concerned, ``get-file``: each defect of issue 11 that lived in the seam
between those paths is a case here, and each case runs against every path.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile

import pytest
from pull_support import TarBuilder, push_layers, push_tar, push_view

import ocikit
from ocikit.content.layout import LayoutStore
from ocikit.errors import UnsafeContentError, VerificationError
from ocikit.extract.safe_tar import ExtractPolicy
from ocikit.pull.policy import PullPolicy
from ocikit.pull.ready import read_marker
from ocikit.spec import mediatypes as mt
from ocikit.ztoc.api import get_file

OCIKIT = [sys.executable, "-m", "ocikit_cli.main"]
PATHS = ["full", "include"]


def _pull(layout: str, dest: str, path: str, **policy) -> ocikit.PullResult:
    """A full pull, or the same pull through zTOC range reads of every path ("*")."""
    if path == "include":
        policy["include"] = ("*",)
    return ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(**policy))


def _refused(layout: str, dest: str, path: str, error=UnsafeContentError, **policy):
    with pytest.raises(error) as info:
        _pull(layout, dest, path, **policy)
    assert read_marker(dest) is None and not os.path.lexists(dest)
    return info.value


def _view_config(root: str = "/opt/view") -> dict:
    return {
        "schemaVersion": 1,
        "relocation": {"root": root, "viewPath": root, "placeholder": "", "files": [], "relativeRpaths": False},
    }


# -- policy: max_size, set-id bits, reserved names ----------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_max_size_holds_on_every_path(tmp_path, path):
    zeros = b"\0" * (300 << 10)  # compresses to almost nothing: a small blob, a big file
    push_tar(str(tmp_path / "l"), TarBuilder().file("big", zeros).bytes(), kind="gzip")
    error = _refused(str(tmp_path / "l"), str(tmp_path / "d"), path, max_size=100 << 10)
    assert error.rule.startswith("size limit exceeded")


def test_get_file_honours_max_size_and_drops_setuid(tmp_path):
    layout = str(tmp_path / "l")
    push_tar(layout, TarBuilder().file("big", b"\0" * (300 << 10)).file("tool", b"#!/bin/sh\n", 0o4755).bytes(),
             kind="gzip")
    with pytest.raises(UnsafeContentError, match="size limit exceeded"):
        get_file(f"oci:{layout}:v1", "big", str(tmp_path / "out"), rules=ExtractPolicy(max_size=100 << 10))
    assert not os.path.exists(tmp_path / "out") and os.listdir(tmp_path) == ["l"]
    result = get_file(f"oci:{layout}:v1", "tool", str(tmp_path / "tool"))
    assert stat.S_IMODE(os.stat(tmp_path / "tool").st_mode) == 0o755 and result.mode == 0o755
    kept = get_file(f"oci:{layout}:v1", "tool", str(tmp_path / "kept"), rules=ExtractPolicy(preserve_special_modes=True))
    assert kept.mode == 0o4755


@pytest.mark.parametrize("path", PATHS)
def test_setuid_goes_and_sticky_stays_on_every_path(tmp_path, path):
    tar = TarBuilder().file("suid", b"#!", 0o4755).dir("tmp", 0o1777).file("tmp/x").bytes()
    push_tar(str(tmp_path / "l"), tar, kind="gzip")
    dest = tmp_path / "d"
    _pull(str(tmp_path / "l"), str(dest), path)
    assert stat.S_IMODE(os.lstat(dest / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777


@pytest.mark.parametrize("path", PATHS)
def test_an_image_cannot_write_the_marker_directory(tmp_path, path):
    tar = TarBuilder().dir(".ocikit").symlink(".ocikit/ready.json", "../../sibling/x").bytes()
    push_tar(str(tmp_path / "l"), tar, kind="gzip")
    error = _refused(str(tmp_path / "l"), str(tmp_path / "d"), path)
    assert error.rule.startswith("reserved name")


def test_a_title_stripped_after_the_check_cannot_produce_the_marker_directory(tmp_path):
    """A single-layer ORAS view: ``view/.ocikit`` becomes ``.ocikit`` once the title is stripped."""
    layout = str(tmp_path / "l")
    tar = TarBuilder().dir("view").dir("view/.ocikit").file("view/.ocikit/ready.json", b'{"digest": "x"}').bytes()
    annotations = {mt.ANNOTATION_TITLE: "view", mt.ORAS_ANNOTATION_UNPACK: "true"}
    push_layers(layout, [(tar, "gzip", annotations)], artifact_type=mt.OCIKIT_VIEW_ARTIFACT,
                config=(mt.OCIKIT_VIEW_CONFIG, json.dumps(_view_config()).encode()))
    error = _refused(layout, str(tmp_path / "d"), "full")
    assert error.rule.startswith("reserved name")


# -- the symlink rule ----------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_a_symlink_chain_cannot_climb_out(tmp_path, path):
    """``d/s -> .`` makes ``s/..`` the parent of ``d``: ``d/esc -> s/../../f`` leaves the tree."""
    tar = TarBuilder().dir("d").symlink("d/s", ".").symlink("d/esc", "s/../../f").bytes()
    push_view(str(tmp_path / "l"), [tar], config=_view_config())
    error = _refused(str(tmp_path / "l"), str(tmp_path / "d"), path)
    assert "symlink target outside destination" in error.rule and "climbs out" in error.rule


@pytest.mark.parametrize("target", ["/opt/view/../../../../etc/passwd", "/opt/view/lib/../../etc/shadow"])
@pytest.mark.parametrize("relocate", [True, False])
def test_absolute_targets_under_the_view_root_cannot_climb_out(tmp_path, target, relocate):
    tar = TarBuilder().dir("lib").symlink("lib/evil", target).bytes()
    push_view(str(tmp_path / "l"), [tar], config=_view_config())
    error = _refused(str(tmp_path / "l"), str(tmp_path / "d"), "full", relocate=relocate)
    assert "symlink target outside destination" in error.rule


@pytest.mark.parametrize("path", PATHS)
def test_symlinks_that_stay_inside_are_kept(tmp_path, path):
    tar = (TarBuilder().dir("d").dir("d/e").file("f").symlink("d/s", ".").symlink("d/ok", "s/../f")
           .symlink("d/e/up", "../../f").symlink("abs", "/opt/view/f").bytes())
    push_view(str(tmp_path / "l"), [tar], config=_view_config())
    dest = tmp_path / "d"
    _pull(str(tmp_path / "l"), str(dest), path)
    assert (dest / "d" / "ok").read_bytes() == b"x" and (dest / "d" / "e" / "up").read_bytes() == b"x"
    assert os.readlink(dest / "abs").endswith("/f")


# -- formats: PAX global headers, non-ASCII names, whiteouts, devices, times --------------


def _global_header_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"path": "renamed", "comment": "global"}) as tar:
        for name in ("a", "b"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return buffer.getvalue()


@pytest.mark.parametrize("path", PATHS)
def test_a_pax_global_header_renames_nothing(tmp_path, path):
    """Go (containerd, scanners) apply global headers to nothing: ocikit sees the same tree."""
    push_tar(str(tmp_path / "l"), _global_header_tar(), kind="gzip")
    dest = tmp_path / "d"
    _pull(str(tmp_path / "l"), str(dest), path)
    assert sorted(n for n in os.listdir(dest) if n != ".ocikit") == ["a", "b"]


def test_global_headers_do_not_pile_up_in_memory(tmp_path):
    """Twenty 1 MiB global headers in a tiny blob: memory stays near the baseline."""
    parts = []
    for i in range(20):
        part = io.BytesIO()
        with tarfile.open(fileobj=part, mode="w", format=tarfile.PAX_FORMAT,
                          pax_headers={f"k{i}": "v" * ((1 << 20) - 100)}) as tar:  # one ~1 MiB record
            tar.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
            end = tar.offset  # the end of the member, before the end-of-archive blocks
        parts.append(part.getvalue()[:end])
    layout = str(tmp_path / "l")
    push_tar(layout, b"".join(parts) + bytes(1024), kind="zstd")
    push_tar(str(tmp_path / "small"), TarBuilder().file("f").bytes(), kind="zstd")
    baseline = _peak_rss_kib(str(tmp_path / "small"), str(tmp_path / "d0"))
    peak = _peak_rss_kib(layout, str(tmp_path / "d"))
    assert peak - baseline < 64 << 10, f"{(peak - baseline) >> 10} MiB above a one-file pull"
    assert sorted(os.listdir(tmp_path / "d")) == [".ocikit"] + sorted(f"f{i}" for i in range(20))


def _peak_rss_kib(layout: str, dest: str) -> int:
    script = (
        "import resource, ocikit; from ocikit.pull.policy import PullPolicy\n"
        f"ocikit.pull('oci:{layout}:v1', '{dest}', PullPolicy(max_size=1 << 30))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    return int(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout)


def test_non_ascii_pax_names_work_through_ztocs(tmp_path):
    """PAX record lengths count bytes: names written by Python's tarfile (or Go) with é, ü, 日本."""
    names = ["é/ü.txt", "日本/語.txt", "plain"]
    builder = TarBuilder()
    for name in names:
        builder.file(name, name.encode() * 100)
    layout = str(tmp_path / "l")
    push_tar(layout, builder.bytes(), kind="gzip")
    ocikit.build_ztocs(f"oci:{layout}:v1", min_layer_size=0)
    result = get_file(f"oci:{layout}:v1", "日本/語.txt", str(tmp_path / "one"))
    assert (tmp_path / "one").read_bytes() == "日本/語.txt".encode() * 100 and result.spans
    dest = tmp_path / "d"
    _pull(layout, str(dest), "include")
    assert (dest / "é" / "ü.txt").read_bytes() == "é/ü.txt".encode() * 100


def test_a_layer_replacing_a_directory_lists_whiteouts_under_it(tmp_path):
    """What umoci writes: ``a`` becomes a file (or link) and ``a/.wh.b`` hides the lower child."""
    layout = str(tmp_path / "l")
    lower = TarBuilder().dir("a").file("a/b").file("keep").bytes()
    for upper in (TarBuilder().file("a", b"now a file").file("a/.wh.b", b"").bytes(),
                  TarBuilder().symlink("a", "keep").file("a/.wh.b", b"").bytes()):
        push_layers(layout, [(lower, "gzip", {}), (upper, "gzip", {})],
                    config=(mt.OCI_CONFIG, b'{"rootfs": {"type": "layers", "diff_ids": []}}'))
        dest = tmp_path / "d"
        ocikit.pull(f"oci:{layout}:v1", str(dest), PullPolicy(rootfs=True))
        assert not (dest / "a").is_dir() and (dest / "keep").exists()


def _lower_link_image(layout: str) -> None:
    """A rootfs whose second layer hard-links a first-layer file that the third layer replaces."""
    lower = TarBuilder().file("usr/lib/libz.so.1", b"zlib 1.2").file("usr/lib/other", b"other").bytes()
    middle = TarBuilder().hardlink("usr/lib/libz-copy", "usr/lib/libz.so.1").hardlink("usr/bin/o", "usr/lib/other").bytes()
    upper = TarBuilder().file("usr/lib/libz.so.1", b"zlib 1.3").bytes()
    push_layers(layout, [(lower, "gzip", {}), (middle, "gzip", {}), (upper, "zstd", {})],
                config=(mt.OCI_CONFIG, b'{"rootfs": {"type": "layers", "diff_ids": []}}'))


@pytest.mark.parametrize("path", PATHS)
def test_a_hard_link_to_a_lower_layer_file_is_that_file_as_the_layers_merge(tmp_path, path):
    layout = str(tmp_path / "l")
    _lower_link_image(layout)
    dest = tmp_path / "d"
    _pull(layout, str(dest), path, rootfs=True)
    assert (dest / "usr/lib/libz-copy").read_bytes() == b"zlib 1.2"  # linked before the upper layer replaced it
    assert (dest / "usr/lib/libz.so.1").read_bytes() == b"zlib 1.3"
    assert (dest / "usr/bin/o").read_bytes() == b"other"
    assert os.path.samefile(dest / "usr/bin/o", dest / "usr/lib/other")


def test_get_file_follows_a_hard_link_into_a_lower_layer(tmp_path):
    layout = str(tmp_path / "l")
    _lower_link_image(layout)
    result = get_file(f"oci:{layout}:v1", "usr/lib/libz-copy", str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == b"zlib 1.2" and result.size == len(b"zlib 1.2")


@pytest.mark.parametrize("path", PATHS)
def test_a_view_cannot_hard_link_across_its_layers(tmp_path, path):
    """A view's layers are merged side by side, not stacked: a link must name a file of its own layer."""
    layout = str(tmp_path / "l")
    push_view(layout, [TarBuilder().file("a", b"a").bytes(), TarBuilder().hardlink("b", "a").bytes()],
              config=_view_config())
    error = _refused(layout, str(tmp_path / "d"), path)
    assert "hardlink target missing" in str(error)


def test_devices_keep_their_mode_not_the_umask(tmp_path):
    push_view(str(tmp_path / "l"), [TarBuilder().device("pipe", tarfile.FIFOTYPE).bytes()], config=_view_config())
    old = os.umask(0o022)
    try:
        ocikit.pull(f"oci:{tmp_path / 'l'}:v1", str(tmp_path / "d"), PullPolicy(allow_devices=True))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(tmp_path / "d" / "pipe").st_mode) == 0o666


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mtime", [10**12, -(10**15)])
def test_times_a_filesystem_cannot_store_are_clamped(tmp_path, path, mtime):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.size, info.pax_headers = 1, {"mtime": str(mtime)}
        tar.addfile(info, io.BytesIO(b"x"))
    push_tar(str(tmp_path / "l"), buffer.getvalue(), kind="gzip")
    _pull(str(tmp_path / "l"), str(tmp_path / "d"), path)
    assert os.lstat(tmp_path / "d" / "f").st_mtime == 0  # containerd's boundTime: the epoch


def test_a_time_beyond_int64_is_a_typed_error(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"mtime": str(10**20)}  # Go refuses it too (ErrHeader)
        tar.addfile(info, io.BytesIO(b""))
    push_tar(str(tmp_path / "l"), buffer.getvalue(), kind="gzip")
    run = subprocess.run([*OCIKIT, "pull", f"oci:{tmp_path / 'l'}:v1", str(tmp_path / "d")],
                         capture_output=True, text=True)
    assert run.returncode == 5 and "overflows" in run.stderr and run.stderr.count("\n") == 1


@pytest.mark.parametrize("path", PATHS)
def test_a_path_deeper_than_path_max_extracts(tmp_path, path):
    deep = "/".join(["dd"] * 3000)  # 9 KiB of path, more than PATH_MAX
    push_tar(str(tmp_path / "l"), TarBuilder().file(f"{deep}/leaf", b"deep").bytes(), kind="gzip")
    dest = tmp_path / "d"
    _pull(str(tmp_path / "l"), str(dest), path)
    fd = os.open(dest, os.O_RDONLY)
    try:
        for part in deep.split("/"):
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        assert os.stat("leaf", dir_fd=fd).st_size == 4
    finally:
        os.close(fd)
        subprocess.run(["rm", "-rf", str(dest)], check=True)


@pytest.mark.parametrize("path", PATHS)
def test_hardlinks_to_links_or_directories_are_refused(tmp_path, path):
    for target in ("dir", "link"):
        tar = TarBuilder().dir("dir").symlink("link", "dir").hardlink("hard", target).bytes()
        layout = str(tmp_path / f"l-{target}")
        push_view(layout, [tar], config=_view_config())
        error = _refused(layout, str(tmp_path / f"d-{target}"), path)
        assert "hardlink" in error.rule


def test_a_name_too_long_for_the_filesystem_is_a_one_line_error(tmp_path):
    push_tar(str(tmp_path / "l"), TarBuilder().file("n" * 300).bytes(), kind="gzip")
    run = subprocess.run([*OCIKIT, "pull", f"oci:{tmp_path / 'l'}:v1", str(tmp_path / "d")],
                         capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "too long" in run.stderr


def test_a_flipped_byte_is_a_verification_failure(tmp_path):
    """Whatever check sees it first (zstd's or the digest), a pinned blob that does not decode is exit 5."""
    layout = str(tmp_path / "l")
    desc = push_tar(layout, TarBuilder().file("f", os.urandom(1 << 20)).bytes(), kind="zstd")
    store = LayoutStore(layout)
    layer = ocikit.get_manifest(f"oci:{layout}:v1").layers[0]
    blob = store.blob_path(layer.digest)
    data = bytearray(open(blob, "rb").read())
    data[len(data) // 2] ^= 0xFF
    os.chmod(blob, 0o644)
    open(blob, "wb").write(bytes(data))
    run = subprocess.run([*OCIKIT, "pull", f"oci:{layout}@{desc.digest}", str(tmp_path / "d")],
                         capture_output=True, text=True)
    assert run.returncode == 5, run.stderr
    assert run.stderr.count("\n") == 1 and not os.path.exists(tmp_path / "d")
    with pytest.raises(VerificationError):
        ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "d"))


def test_corrupt_tar_inside_a_valid_blob_is_typed(tmp_path):
    push_tar(str(tmp_path / "l"), b"this is not a tar archive at all" * 40, kind="gzip")
    with pytest.raises(VerificationError, match="does not decode"):
        ocikit.pull(f"oci:{tmp_path / 'l'}:v1", str(tmp_path / "d"))
