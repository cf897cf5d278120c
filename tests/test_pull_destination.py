"""Destination safety: whose DEST it is, where the lock lives, ``.ocikit`` in every mode, deep
staging leftovers, and the policy as part of what a tree is (issue 11, "Destination and marker").

Each attack of the issue is a test here. Mount points are real (a tmpfs, the way a Kubernetes
``emptyDir`` or a PersistentVolume is one); a parent the puller cannot write is a real
read-only bind mount. The suite runs as root; where mounting is impossible these tests skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator

import pytest
from pull_support import TarBuilder, leftovers, push_layers, push_tar, push_view

import ocikit
from ocikit.errors import AlreadyExistsError, LocalIOError, UnsafeContentError, WaitTimeoutError
from ocikit.pull.nodecache import NodeCache
from ocikit.pull.policy import PullPolicy
from ocikit.pull.ready import read_marker
from ocikit.spec import mediatypes as mt

OCIKIT = [sys.executable, "-m", "ocikit_cli.main"]
USER_FILES = {"notes.txt": "mine", "data/results.csv": "1,2,3"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*OCIKIT, *args], capture_output=True, text=True)


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount here (needs root): {done.stderr.strip()}")


@contextlib.contextmanager
def _tmpfs(path) -> Iterator[str]:
    """``path`` as a mount point of its own, like an emptyDir volume."""
    os.makedirs(path, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path))
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def _read_only(path) -> Iterator[None]:
    """``path`` bound read-only onto itself (mounts below it stay as they are): its entries
    cannot be created, renamed or removed."""
    _mount("--rbind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _plant_user_files(dest: str) -> None:
    for name, text in USER_FILES.items():
        os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
        with open(os.path.join(dest, name), "w") as fh:
            fh.write(text)


def _user_files_intact(dest: str) -> None:
    for name, text in USER_FILES.items():
        with open(os.path.join(dest, name)) as fh:
            assert fh.read() == text, f"{name} was changed"


def _artifact(tmp_path, version: bytes = b"1") -> str:
    layout = str(tmp_path / "layout")
    push_tar(layout, TarBuilder().dir("bin").file("bin/tool", b"#!/bin/sh\n", 0o755).file("v", version).bytes())
    return layout


# -- 1. ownership: a DEST with user files is refused before anything is written ----------------


@pytest.mark.parametrize("through_cache", [False, True], ids=["direct", "cache"])
@pytest.mark.parametrize("parent", ["writable", "read-only"])
def test_a_mount_point_with_user_files_is_refused_and_kept(tmp_path, through_cache, parent):
    layout = _artifact(tmp_path)
    box = tmp_path / "box"
    with _tmpfs(box / "volume") as dest:
        _plant_user_files(dest)
        with _read_only(box) if parent == "read-only" else contextlib.nullcontext():
            with pytest.raises(AlreadyExistsError, match="holds files ocikit did not write"):
                ocikit.pull(f"oci:{layout}:v1", dest, cache=str(tmp_path / "cache") if through_cache else None)
        _user_files_intact(dest)
        assert sorted(os.listdir(dest)) == ["data", "notes.txt"]  # no .ocikit, no lock, no staging
        assert read_marker(dest) is None


def test_the_cli_refuses_with_one_line_and_exit_1(tmp_path):
    layout = _artifact(tmp_path)
    with _tmpfs(tmp_path / "volume") as dest:
        _plant_user_files(dest)
        run = _cli("pull", f"oci:{layout}:v1", dest)
        assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
        assert "--merge" in run.stderr and "Traceback" not in run.stderr
        _user_files_intact(dest)


def test_a_published_cache_tree_refuses_a_target_with_user_files(tmp_path):
    layout = _artifact(tmp_path)
    cache = NodeCache(str(tmp_path / "cache"))
    entry = cache.ensure(f"oci:{layout}:v1")
    with _tmpfs(tmp_path / "pod") as target:
        _plant_user_files(target)
        with pytest.raises(AlreadyExistsError):
            cache.publish(entry, target, mode="copy")
        _user_files_intact(target)
        assert ".ocikit" not in os.listdir(target)


def test_an_empty_mount_point_and_a_repull_are_fine(tmp_path):
    layout = _artifact(tmp_path)
    with _tmpfs(tmp_path / "volume") as dest:
        os.mkdir(os.path.join(dest, "lost+found"))  # a fresh ext4 volume has it: not content
        first = ocikit.pull(f"oci:{layout}:v1", dest)
        _artifact(tmp_path, b"2")
        second = ocikit.pull(f"oci:{layout}:v1", dest)  # the record says DEST is ocikit's: replaced
        assert second.digest != first.digest and open(os.path.join(dest, "v")).read() == "2"
        owned = json.load(open(os.path.join(dest, ".ocikit", "owned.json")))
        assert owned["owner"] == "ocikit" and owned["mode"] == "replace" and owned["dest"] == dest
        assert sorted(os.listdir(dest)) == [".ocikit", "bin", "lost+found", "v"]


def test_a_dest_from_before_the_ownership_record_is_still_ocikits(tmp_path):
    layout = _artifact(tmp_path)
    dest = str(tmp_path / "dest")
    ocikit.pull(f"oci:{layout}:v1", dest)
    os.unlink(os.path.join(dest, ".ocikit", "owned.json"))  # what an older ocikit left
    _artifact(tmp_path, b"2")
    assert not ocikit.pull(f"oci:{layout}:v1", dest).unchanged
    assert open(os.path.join(dest, "v")).read() == "2"


# -- --merge: the artifact's paths are added, nothing else is removed ---------------------------


@pytest.mark.parametrize("where", ["directory", "mount-point"])
def test_merge_keeps_user_files(tmp_path, where):
    layout = _artifact(tmp_path)
    with _tmpfs(tmp_path / "volume") if where == "mount-point" else contextlib.nullcontext(str(tmp_path / "d")) as dest:
        _plant_user_files(dest)
        os.symlink("/etc", os.path.join(dest, "bin-link"))
        ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(merge=True))
        _user_files_intact(dest)
        assert open(os.path.join(dest, "v")).read() == "1" and os.path.isfile(os.path.join(dest, "bin/tool"))
        assert read_marker(dest)["digest"]
        _artifact(tmp_path, b"2")
        # once merged, DEST holds user files: without --merge it is refused, with it updated
        with pytest.raises(AlreadyExistsError):
            ocikit.pull(f"oci:{layout}:v1", dest)
        run = _cli("pull", "--merge", f"oci:{layout}:v1", dest)
        assert run.returncode == 0, run.stderr
        _user_files_intact(dest)
        assert open(os.path.join(dest, "v")).read() == "2" and os.readlink(os.path.join(dest, "bin-link")) == "/etc"
        assert json.load(open(os.path.join(dest, ".ocikit", "owned.json")))["mode"] == "merge"
        assert leftovers(os.path.dirname(dest), os.path.basename(dest)) == []


def test_merge_never_replaces_a_user_directory(tmp_path):
    """The artifact has a file ``v`` where the user has a directory: refused before anything moves."""
    layout = _artifact(tmp_path)
    dest = str(tmp_path / "d")
    os.makedirs(os.path.join(dest, "v"))
    open(os.path.join(dest, "v", "inside"), "w").write("mine")
    with pytest.raises(AlreadyExistsError, match="is a directory there"):
        ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(merge=True))
    assert sorted(os.listdir(dest)) == ["v"] and open(os.path.join(dest, "v", "inside")).read() == "mine"


def test_merge_through_the_cache_keeps_user_files(tmp_path):
    layout = _artifact(tmp_path)
    with _tmpfs(tmp_path / "volume") as dest:
        _plant_user_files(dest)
        ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(merge=True, link_mode="copy"), cache=str(tmp_path / "cache"))
        _user_files_intact(dest)
        assert open(os.path.join(dest, "v")).read() == "1" and read_marker(dest) is not None


# -- 2. the lock: beside DEST, or in a real DEST/.ocikit; never through a symlink ----------------


def test_the_lock_lives_beside_dest_and_never_follows_a_symlink(tmp_path):
    layout = _artifact(tmp_path)
    dest = str(tmp_path / "dest")
    ocikit.pull(f"oci:{layout}:v1", dest)
    assert os.path.isfile(tmp_path / ".dest.ocikit-lock") and not os.path.exists(os.path.join(dest, ".ocikit", "lock"))
    planted = tmp_path / "other"
    os.symlink(str(tmp_path / "victim-lock"), str(tmp_path / ".other.ocikit-lock"))
    with pytest.raises(LocalIOError, match="cannot lock"):
        ocikit.pull(f"oci:{layout}:v1", str(planted))
    assert not os.path.lexists(tmp_path / "victim-lock") and not os.path.exists(planted)


def test_in_a_read_only_parent_the_lock_is_inside_a_real_marker_directory(tmp_path):
    layout = _artifact(tmp_path)
    box = tmp_path / "box"
    with _tmpfs(box / "volume") as dest:
        with _read_only(box):
            ocikit.pull(f"oci:{layout}:v1", dest)
            assert sorted(os.listdir(os.path.join(dest, ".ocikit"))) == ["lock", "owned.json", "ready.json"]
            _artifact(tmp_path, b"2")
            assert not ocikit.pull(f"oci:{layout}:v1", dest).unchanged
            assert open(os.path.join(dest, "v")).read() == "2"


# -- 3. .ocikit is reserved in every mode; marker I/O never follows a symlink -------------------


def _view_config(root: str = "/opt/view", external: tuple[str, ...] = ()) -> dict:
    return {
        "schemaVersion": 1, "externalSymlinks": list(external),
        "relocation": {"root": root, "viewPath": root, "placeholder": "", "files": [], "relativeRpaths": False},
    }


def _vector(layout: str, sibling: str, vector: str) -> dict:
    """An artifact that tries to make DEST/.ocikit a symlink to ``sibling``'s marker directory."""
    if vector == "oras-title-stripped":
        tar = TarBuilder().dir("view").symlink("view/.ocikit", f"{sibling}/.ocikit").bytes()
        annotations = {mt.ANNOTATION_TITLE: "view", mt.ORAS_ANNOTATION_UNPACK: "true"}
        push_layers(layout, [(tar, "gzip", annotations)], artifact_type=mt.OCIKIT_VIEW_ARTIFACT,
                    config=(mt.OCIKIT_VIEW_CONFIG, json.dumps(_view_config()).encode()))
        return {}
    if vector == "external-symlink":
        push_view(layout, [TarBuilder().symlink(".ocikit", f"{sibling}/.ocikit").bytes()],
                  config=_view_config(external=(".ocikit",)))
        return {}
    if vector == "view-root-dotdot":
        root = sibling + "/.."
        push_view(layout, [TarBuilder().symlink(".ocikit", f"{root}/{os.path.basename(sibling)}/.ocikit").bytes()],
                  config=_view_config(root=root))
        return {"relocate": False}
    assert vector == "include"
    push_tar(layout, TarBuilder().file("a").symlink(".ocikit", f"../{os.path.basename(sibling)}/.ocikit").bytes())
    return {"include": ("*",)}


@pytest.mark.parametrize("vector", ["oras-title-stripped", "external-symlink", "view-root-dotdot", "include"])
def test_no_artifact_can_make_the_marker_directory_a_symlink(tmp_path, vector):
    sibling = str(tmp_path / "sibling")
    os.makedirs(os.path.join(sibling, ".ocikit"))
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    policy = _vector(layout, sibling, vector)
    with pytest.raises(UnsafeContentError):
        ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(**policy))
    assert os.listdir(os.path.join(sibling, ".ocikit")) == []  # nothing written outside DEST
    assert not os.path.lexists(dest) and leftovers(str(tmp_path), "dest") == []
    with pytest.raises(WaitTimeoutError):
        ocikit.wait_ready(sibling, timeout=0)


@pytest.mark.parametrize("root", ["/..", "/opt/view/../..", "/opt/./view", "opt/view"])
def test_a_view_root_that_is_not_a_clean_absolute_path_is_refused(tmp_path, root):
    """Under ``/..`` the target ``/../etc/shadow`` looks inside the root; the kernel reads /etc/shadow."""
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_view(layout, [TarBuilder().symlink("shadow", root.rstrip("/") + "/etc/shadow").bytes()],
              config=_view_config(root=root))
    for relocate in (False, True):
        with pytest.raises(UnsafeContentError, match="invalid view root"):
            ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(relocate=relocate))
        assert not os.path.lexists(dest)


@pytest.mark.parametrize("where", ["directory", "mount-point"])
def test_a_planted_marker_symlink_is_an_error_not_a_way_out(tmp_path, where):
    """Someone replaced DEST/.ocikit by a symlink to a sibling's: the pull refuses, writes nothing there."""
    layout = _artifact(tmp_path)
    sibling = tmp_path / "sibling"
    os.makedirs(sibling / ".ocikit")
    with _tmpfs(tmp_path / "volume") if where == "mount-point" else contextlib.nullcontext(str(tmp_path / "d")) as dest:
        ocikit.pull(f"oci:{layout}:v1", dest)
        shutil.rmtree(os.path.join(dest, ".ocikit"))
        os.symlink(str(sibling / ".ocikit"), os.path.join(dest, ".ocikit"))
        assert read_marker(dest) is None  # a reader does not follow it either
        _artifact(tmp_path, b"2")
        run = _cli("pull", f"oci:{layout}:v1", dest)
        assert run.returncode == 6 and "reserved name" in run.stderr and run.stderr.count("\n") == 1, run.stderr
        assert os.listdir(sibling / ".ocikit") == [] and open(os.path.join(dest, "v")).read() == "1"


def test_wait_does_not_take_a_forged_sibling_marker(tmp_path):
    """A marker ocikit wrote for DEST A, found in B (copied, or written through a symlink), is not B's."""
    layout = _artifact(tmp_path)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    result = ocikit.pull(f"oci:{layout}:v1", a)
    os.makedirs(os.path.join(b, ".ocikit"))
    shutil.copy(os.path.join(a, ".ocikit", "ready.json"), os.path.join(b, ".ocikit", "ready.json"))
    with pytest.raises(WaitTimeoutError):
        ocikit.wait_ready(b, timeout=0)
    run = _cli("wait", b, "--timeout", "0.2")
    assert run.returncode == 8, run.stdout
    os.unlink(os.path.join(b, ".ocikit", "ready.json"))
    os.rmdir(os.path.join(b, ".ocikit"))
    os.symlink(os.path.join(a, ".ocikit"), os.path.join(b, ".ocikit"))
    assert _cli("wait", b, "--timeout", "0.2").returncode == 8
    assert ocikit.wait_ready(a, timeout=0)["digest"] == result.digest  # A itself is ready


def test_a_planted_fifo_marker_does_not_hang_wait(tmp_path):
    dest = tmp_path / "d"
    os.makedirs(dest / ".ocikit")
    os.mkfifo(dest / ".ocikit" / "ready.json")
    assert _cli("wait", str(dest), "--timeout", "0.2").returncode == 8  # read with O_NONBLOCK: no writer needed


# -- 4. staging leftovers of any depth go --------------------------------------------------------


def test_a_failed_pull_of_a_very_deep_path_leaves_nothing_behind(tmp_path):
    """10,000 levels (20,000 bytes of path, far beyond PATH_MAX and Python's recursion limit)."""
    deep = "/".join(["d"] * 10000)
    bad, good = str(tmp_path / "bad"), str(tmp_path / "good")
    push_tar(bad, TarBuilder().file(f"{deep}/leaf", b"deep").file("z/big", b"\0" * (300 << 10)).bytes(), kind="gzip")
    push_tar(good, TarBuilder().file("ok", b"fine").bytes(), kind="gzip")
    dest = str(tmp_path / "dest")
    with pytest.raises(UnsafeContentError, match="size limit exceeded"):
        ocikit.pull(f"oci:{bad}:v1", dest, PullPolicy(include=("*",), max_size=100 << 10))
    assert leftovers(str(tmp_path), "dest") == [] and not os.path.lexists(dest)
    assert ocikit.pull(f"oci:{good}:v1", dest).files == 1


def test_a_stale_deep_staging_directory_is_removed_by_the_next_pull(tmp_path):
    """What a pull killed half-way through a deep tree leaves (read-only directories included)."""
    stale = tmp_path / ".dest.ocikit-staging-0123456789ab"
    stale.mkdir()
    fd = os.open(stale, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(5000):
        os.mkdir("d", 0o500, dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.close(fd)
    layout = _artifact(tmp_path)
    ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "dest"))
    assert leftovers(str(tmp_path), "dest") == []


def test_a_very_deep_tree_publishes_from_the_cache(tmp_path):
    """Publishing copies the cached tree iteratively: 3,000 levels is no RecursionError (was exit 70)."""
    deep = "/".join(["d"] * 3000)
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_tar(layout, TarBuilder().file(f"{deep}/leaf", b"deep").bytes(), kind="gzip")
    result = ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(link_mode="copy"), cache=str(tmp_path / "cache"))
    assert result.files == 1 and result.directories == 3000
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(3000):
            deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        assert os.stat("leaf", dir_fd=fd).st_size == 4
    finally:
        os.close(fd)
    cache = NodeCache(str(tmp_path / "cache"))
    locked = str(tmp_path / "read-only")
    assert cache.publish(cache.ls()[0], locked, mode="copy", read_only=True).directories == 3000
    assert os.stat(os.path.join(locked, "d")).st_mode & 0o222 == 0
    subprocess.run(["rm", "-rf", dest, locked, str(tmp_path / "cache")], check=True)


# -- 5. the policy is part of what a tree is ----------------------------------------------------


def _permissive_image(layout: str) -> None:
    tar = (TarBuilder().file("suid", b"#!/bin/sh\n", 0o4755).device("pipe", tarfile.FIFOTYPE)
           .file("big", b"\0" * (300 << 10)).bytes())
    push_tar(layout, tar, kind="gzip")


PERMISSIVE = PullPolicy(allow_devices=True, preserve_special_modes=True)


def test_a_permissive_cache_never_serves_a_strict_pull(tmp_path):
    layout, cache = str(tmp_path / "layout"), str(tmp_path / "cache")
    _permissive_image(layout)  # an image: a strict pull skips its fifo, drops set-id bits
    loose = ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "loose"), PERMISSIVE, cache=cache)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "loose/pipe").st_mode) and os.stat(tmp_path / "loose/suid").st_mode & 0o4000
    strict = ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "strict"), cache=cache)
    assert not os.path.lexists(tmp_path / "strict/pipe")
    assert stat.S_IMODE(os.stat(tmp_path / "strict/suid").st_mode) == 0o755
    assert strict.downloaded == 0 and loose.downloaded > 0  # re-extracted from the cached blobs
    with pytest.raises(UnsafeContentError, match="size limit exceeded"):
        ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "small"), PullPolicy(max_size=100 << 10), cache=cache)
    assert not os.path.lexists(tmp_path / "small")
    keys = {entry.tree_key for entry in NodeCache(cache).ls()}
    assert keys == {PERMISSIVE.tree_key(), PullPolicy().tree_key()}


def test_a_dest_built_permissively_is_rebuilt_for_a_strict_pull(tmp_path):
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_tar(layout, TarBuilder().file("suid", b"#!/bin/sh\n", 0o4755).bytes(), kind="gzip")
    ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(preserve_special_modes=True))
    assert os.stat(os.path.join(dest, "suid")).st_mode & 0o4000
    strict = ocikit.pull(f"oci:{layout}:v1", dest)
    assert not strict.unchanged and stat.S_IMODE(os.stat(os.path.join(dest, "suid")).st_mode) == 0o755
    assert read_marker(dest)["treeKey"] == PullPolicy().tree_key()
    assert ocikit.pull(f"oci:{layout}:v1", dest).unchanged  # the same policy again: a no-op
    assert not ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(relocate=False)).unchanged
