"""Hand-crafted malicious layers: each pull fails naming the entry and the rule, writes
nothing outside DEST, leaves DEST as it was (absent, or the previous ready tree) and
never marks it ready."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile

import pytest
from pull_support import TarBuilder, leftovers, push_tar, push_view

import ocikit
from ocikit.errors import DigestMismatchError, UnsafeContentError, VerificationError
from ocikit.pull.policy import PullPolicy
from ocikit.pull.ready import read_marker


@pytest.fixture
def env(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original")
    return tmp_path, str(tmp_path / "layout"), str(tmp_path / "dest"), outside


@pytest.fixture(params=[0, 2], ids=["inline-writes", "writer-threads"], autouse=True)
def writers(request, monkeypatch):
    """Every rule holds whether files are written by the parser or by writer threads."""
    monkeypatch.setenv("OCIKIT_WRITER_THREADS", str(request.param))
    return request.param


def _fails(layout: str, dest: str, exc_type=UnsafeContentError, **kwargs):
    with pytest.raises(exc_type) as info:
        ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(**kwargs))
    assert not os.path.exists(dest), "a failed pull must not create DEST"
    assert read_marker(dest) is None
    parent, name = os.path.split(dest)
    assert leftovers(parent, name) == []
    return info.value


def _outside_untouched(outside) -> None:
    assert sorted(os.listdir(outside)) == ["victim"]
    assert (outside / "victim").read_text() == "original"


@pytest.mark.parametrize(
    "name, rule",
    [("../escape", "path traversal"), ("a/../../escape", "path traversal"), ("/abs/escape", "absolute path")],
)
def test_names_that_leave_dest(env, name, rule):
    tmp, layout, dest, outside = env
    push_tar(layout, TarBuilder().file("ok", b"fine").file(name, b"evil").bytes())
    error = _fails(layout, dest)
    assert error.rule == rule and error.entry == name
    assert not (tmp / "escape").exists()


def test_write_through_symlink_is_refused(env):
    tmp, layout, dest, outside = env
    # In a container image an absolute symlink is legal (it is rootfs-relative) -- but
    # nothing may ever be written *through* it.
    push_tar(layout, TarBuilder().symlink("link", str(outside)).file("link/victim", b"evil").bytes())
    error = _fails(layout, dest)
    assert (error.entry, error.rule) == ("link/victim", "path through symlink")
    _outside_untouched(outside)


def test_write_through_relative_symlink_is_refused(env):
    tmp, layout, dest, outside = env
    push_view(layout, [TarBuilder().dir("sub").symlink("l", "sub").file("l/x", b"x").bytes()])
    error = _fails(layout, dest)
    assert error.rule == "path through symlink"


@pytest.mark.parametrize("target", ["../../outside/victim", "/etc/passwd", "../b/../../x"])
def test_symlink_escaping_a_view_is_refused(env, target):
    tmp, layout, dest, outside = env
    push_view(layout, [TarBuilder().dir("a").symlink("a/link", target).bytes()])
    error = _fails(layout, dest)
    assert error.rule.startswith("symlink target outside destination")


def test_view_symlink_into_its_own_root_is_allowed(env):
    tmp, layout, dest, outside = env
    config = {"relocation": {"root": "/opt/view", "viewPath": "/opt/view", "placeholder": "", "files": []}}
    push_view(layout, [TarBuilder().file("lib/libz.so.1", b"elf").symlink("lib/libz.so", "/opt/view/lib/libz.so.1").bytes()], config)
    ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(relocate=False))
    assert os.readlink(os.path.join(dest, "lib/libz.so")) == "/opt/view/lib/libz.so.1"


@pytest.mark.parametrize(
    "target, rule",
    [
        ("../outside/victim", "hardlink target outside destination (path traversal)"),
        ("/etc/passwd", "hardlink target outside destination (absolute path)"),
        ("missing", "hardlink target missing ('missing' is not in the archive)"),
    ],
)
def test_hardlinks_outside_or_missing(env, target, rule):
    tmp, layout, dest, outside = env
    push_view(layout, [TarBuilder().file("a", b"a").hardlink("h", target).bytes()])
    error = _fails(layout, dest)
    assert (error.entry, error.rule) == ("h", rule)
    assert os.stat(outside / "victim").st_nlink == 1


def test_hardlink_through_symlink(env):
    tmp, layout, dest, outside = env
    push_tar(layout, TarBuilder().symlink("l", str(outside)).hardlink("h", "l/victim").bytes())
    error = _fails(layout, dest)
    assert error.rule == "path through symlink"
    assert os.stat(outside / "victim").st_nlink == 1


@pytest.mark.parametrize(
    "kind, rule", [(tarfile.CHRTYPE, "device node"), (tarfile.BLKTYPE, "device node"), (tarfile.FIFOTYPE, "fifo")]
)
def test_devices_and_fifos_need_permission(env, kind, rule):
    tmp, layout, dest, outside = env
    push_view(layout, [TarBuilder().file("ok").device("dev/thing", kind).bytes()])
    error = _fails(layout, dest)
    assert (error.entry, error.rule) == ("dev/thing", rule)


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_a_rootfs_skips_device_nodes_and_counts_them(env, kind):
    """A root filesystem's /dev is the runtime's business (containerd skips device nodes too):
    skipped with a message, counted in the result, never created without --allow-devices."""
    tmp, layout, dest, outside = env
    push_tar(layout, TarBuilder().file("ok").device("dev/null", kind).bytes())
    messages = []

    class Listener(ocikit.Progress):
        def message(self, text):
            messages.append(text)

    result = ocikit.pull(f"oci:{layout}:v1", dest, progress=Listener())
    assert result.skipped == ["dev/null"] and not os.path.lexists(os.path.join(dest, "dev", "null"))
    assert os.path.exists(os.path.join(dest, "ok")) and any("dev/null" in m for m in messages)


def test_fifo_allowed_when_asked(env):
    tmp, layout, dest, outside = env
    push_tar(layout, TarBuilder().device("pipe", tarfile.FIFOTYPE).bytes())
    ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(allow_devices=True))
    assert stat.S_ISFIFO(os.lstat(os.path.join(dest, "pipe")).st_mode)


def test_special_mode_bits_are_stripped_unless_preserved(env):
    tmp, layout, dest, outside = env
    tar = TarBuilder().file("suid", b"#!", 0o4755).file("sgid", b"#!", 0o2755).dir("sticky", 0o1777).bytes()
    push_tar(layout, tar)
    ocikit.pull(f"oci:{layout}:v1", dest)
    modes = {n: stat.S_IMODE(os.lstat(os.path.join(dest, n)).st_mode) for n in ("suid", "sgid", "sticky")}
    # setuid/setgid go; the sticky bit stays (without it a 1777 directory is an open door)
    assert modes == {"suid": 0o755, "sgid": 0o755, "sticky": 0o1777}
    kept = str(tmp / "kept")
    ocikit.pull(f"oci:{layout}:v1", kept, PullPolicy(preserve_special_modes=True))
    modes = {n: stat.S_IMODE(os.lstat(os.path.join(kept, n)).st_mode) for n in ("suid", "sgid", "sticky")}
    assert modes == {"suid": 0o4755, "sgid": 0o2755, "sticky": 0o1777}


def test_artifact_cannot_spoof_the_ready_marker(env):
    tmp, layout, dest, outside = env
    push_tar(layout, TarBuilder().file(".ocikit/ready.json", b'{"digest": "sha256:fake"}').bytes())
    error = _fails(layout, dest)
    assert error.rule.startswith("reserved name")


def test_truncated_entry_lies_about_its_size(env):
    tmp, layout, dest, outside = env
    good = TarBuilder().file("big", b"y" * 10000).bytes()
    # cut the archive inside the file's data: the header promised 10000 bytes
    push_tar(layout, good[:512 + 4000])
    # the blob is pinned by its digest: bytes that do not decode are a verification failure (exit 5)
    error = _fails(layout, dest, VerificationError)
    assert "truncated" in str(error) and "big" in str(error)


def test_declared_size_beyond_max_size_is_refused_before_reading(env):
    tmp, layout, dest, outside = env
    header = tarfile.TarInfo("huge")
    header.size = 1 << 40  # claims a terabyte; the stream is tiny
    raw = header.tobuf(format=tarfile.GNU_FORMAT)
    push_tar(layout, raw + bytes(1024))
    error = _fails(layout, dest, UnsafeContentError, max_size=1 << 20)
    assert error.entry == "huge" and error.rule.startswith("size limit exceeded (declares 1099511627776 bytes")


def test_zero_bomb_hits_max_size(env, tmp_path):
    tmp, layout, dest, outside = env
    # 64 MiB of zeros inside one tar entry compresses to a few KiB of zstd
    header = tarfile.TarInfo("zeros")
    header.size = 64 << 20
    script = f"head -c {header.size} /dev/zero"
    zeros = subprocess.run(["sh", "-c", script], check=True, capture_output=True).stdout
    push_tar(layout, header.tobuf(format=tarfile.GNU_FORMAT) + zeros + bytes(1024))
    blob_sizes = [os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(layout, "blobs")) for f in fs]
    assert max(blob_sizes) < 1 << 20  # the blob really is small
    error = _fails(layout, dest, UnsafeContentError, max_size=16 << 20)
    assert error.rule.startswith("size limit exceeded")


def test_view_layer_larger_than_declared(env):
    tmp, layout, dest, outside = env
    tar = TarBuilder().file("a", b"a" * 5000).bytes()
    from pull_support import compress

    from ocikit.digest import digest_bytes

    blob_digest = digest_bytes(compress(tar, "zstd"))
    config = {"layers": [{"digest": blob_digest, "diffId": digest_bytes(tar), "tarSize": 2048}]}
    push_view(layout, [tar], config)
    error = _fails(layout, dest)
    assert "declared" in error.rule


def test_wrong_uncompressed_digest_fails(env):
    tmp, layout, dest, outside = env
    tar = TarBuilder().file("a", b"content").bytes()
    push_tar(layout, tar, **{"io.deis.oras.content.digest": "sha256:" + "0" * 64})
    error = _fails(layout, dest, DigestMismatchError)
    assert "uncompressed" in str(error)


def test_tampered_blob_fails(env):
    tmp, layout, dest, outside = env
    push_tar(layout, TarBuilder().file("a", b"content" * 100).bytes(), kind="none")
    blobs = os.path.join(layout, "blobs", "sha256")
    biggest = max(os.listdir(blobs), key=lambda n: os.path.getsize(os.path.join(blobs, n)))
    path = os.path.join(blobs, biggest)
    data = bytearray(open(path, "rb").read())
    data[600] ^= 1
    open(path, "wb").write(bytes(data))
    _fails(layout, dest, DigestMismatchError)


def test_sparse_files_are_refused(env, tmp_path):
    tmp, layout, dest, outside = env
    src = tmp_path / "sparse-src"
    src.mkdir()
    subprocess.run(["truncate", "-s", "4M", str(src / "holes")], check=True)
    tar = subprocess.run(["tar", "-C", str(src), "--sparse", "--format=gnu", "-cf", "-", "holes"], check=True, capture_output=True).stdout
    push_tar(layout, tar)
    error = _fails(layout, dest)
    assert error.rule.startswith("unsupported entry type")


def test_failed_replacement_keeps_the_old_ready_tree(env):
    tmp, layout, dest, outside = env
    push_tar(layout, TarBuilder().file("data", b"version 1").bytes())
    first = ocikit.pull(f"oci:{layout}:v1", dest)
    push_tar(layout, TarBuilder().file("data", b"version 2").file("../escape", b"x").bytes())
    with pytest.raises(UnsafeContentError):
        ocikit.pull(f"oci:{layout}:v1", dest)
    assert open(os.path.join(dest, "data")).read() == "version 1"
    assert read_marker(dest)["digest"] == first.digest
    assert leftovers(str(tmp), "dest") == []


def test_oras_directory_entries_must_stay_under_the_title(env):
    tmp, layout, dest, outside = env
    from pull_support import push_layers

    from ocikit.spec import mediatypes as mt

    tar = TarBuilder().file("docs/readme", b"ok").file("other/file", b"sneaky").bytes()
    push_layers(layout, [(tar, "gzip", {mt.ANNOTATION_TITLE: "docs", mt.ORAS_ANNOTATION_UNPACK: "true"})])
    error = _fails(layout, dest)
    assert (error.entry, error.rule) == ("other/file", "outside title directory 'docs'")


def test_dest_not_made_by_ocikit_is_never_replaced(env):
    tmp, layout, dest, outside = env
    os.makedirs(dest)
    open(os.path.join(dest, "precious"), "w").write("mine")
    push_tar(layout, TarBuilder().file("a").bytes())
    with pytest.raises(ocikit.errors.AlreadyExistsError):
        ocikit.pull(f"oci:{layout}:v1", dest)
    assert os.listdir(dest) == ["precious"]


def test_one_bad_layer_stops_the_others_and_is_the_error_reported(env):
    tmp, layout, dest, outside = env
    big = TarBuilder()
    for i in range(3000):
        big.file(f"many/f{i}", b"x" * 100)
    bad = TarBuilder().file("ok", b"x").file("../escape", b"evil").bytes()
    push_view(layout, [big.bytes(), bad])
    error = _fails(layout, dest)
    assert (error.entry, error.rule) == ("../escape", "path traversal")
