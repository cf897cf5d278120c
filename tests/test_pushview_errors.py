"""Bad input to push-view: one clear error naming the path or blob, and no manifest pushed."""

import os
import shutil
import socket
import stat
import subprocess
import sys

import pytest
from environment import require_binary

from ocikit.content.open import open_store
from ocikit.errors import (
    InvalidContentError,
    LocalIOError,
    NotFoundError,
    RegistryError,
    UnsafeContentError,
    UnsupportedError,
)
from ocikit.progress import Progress
from ocikit.push.api import push_view
from ocikit.testing.fault_proxy import Fault, FaultProxy
from ocikit.testing.registry import RegistryServer

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")


@pytest.fixture
def tree(tmp_path):
    top = tmp_path / "tree"
    (top / "lib").mkdir(parents=True)
    (top / "lib" / "a.so").write_bytes(os.urandom(300_000))
    (top / "bin").mkdir()
    (top / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    return top


def layout_tags(path):
    if not os.path.exists(os.path.join(path, "index.json")):
        return []
    return open_store(f"oci:{path}")[0].tags()


def run_cli(*args, prefix=()):
    return subprocess.run([*prefix, OCIKIT, *args], capture_output=True, text=True, timeout=120)


def test_missing_directory_is_one_line_with_exit_code(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        push_view(str(tmp_path / "nope"), f"oci:{tmp_path / 'l'}:t", cache_dir="")
    result = run_cli("push-view", str(tmp_path / "nope"), f"oci:{tmp_path / 'l'}:t")
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0 and str(tmp_path / "nope") in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "socket", "character device"])
def test_special_files_are_refused(tree, tmp_path, kind):
    path = tree / "special"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD")
    with pytest.raises(UnsupportedError) as err:
        push_view(str(tree), f"oci:{tmp_path / 'l'}:t", cache_dir="")
    assert str(path) in str(err.value) and f"is a {kind}" in str(err.value)
    assert layout_tags(str(tmp_path / "l")) == []


def test_names_that_are_not_utf8_are_refused(tree, tmp_path):
    bad = os.path.join(os.fsencode(str(tree)), b"lib", b"caf\xe9")
    open(bad, "wb").close()
    with pytest.raises(InvalidContentError) as err:
        push_view(str(tree), f"oci:{tmp_path / 'l'}:t", cache_dir="")
    assert "caf\\xe9" in str(err.value) and "not valid UTF-8" in str(err.value)


def test_symlink_out_of_the_view_names_the_link(tree, tmp_path):
    os.symlink("/usr/lib/libc.so.6", tree / "lib" / "libc.so.6")
    with pytest.raises(UnsafeContentError) as err:
        push_view(str(tree), f"oci:{tmp_path / 'l'}:t", cache_dir="")
    assert str(tree / "lib" / "libc.so.6") in str(err.value)
    result = push_view(str(tree), f"oci:{tmp_path / 'l'}:t", cache_dir="", allow_external_symlinks=True)
    assert result.view["externalSymlinks"] == ["lib/libc.so.6"]
    assert "kept 1 symlink(s) pointing outside the view" in result.warnings[0]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop DAC capabilities")
def test_unreadable_file_fails_without_a_manifest(tree, tmp_path):
    secret = tree / "lib" / "secret"
    secret.write_bytes(b"x" * 10)
    secret.chmod(0)
    layout = tmp_path / "l"
    # root reads anything; drop the capabilities that let it, so the permission bits count
    drop = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search")
    result = run_cli("push-view", str(tree), f"oci:{layout}:t", "--no-cache", prefix=drop)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and str(secret) in result.stderr and "Permission denied" in result.stderr
    assert layout_tags(str(layout)) == []


class ChangeFileOnStart(Progress):
    """Appends to a file when its layer starts packing: a real concurrent modification."""

    def __init__(self, path):
        self.path = path

    def start(self, task, label, total=None, unit="B"):
        with open(self.path, "ab") as fh:
            fh.write(b"more")


def test_file_changing_while_being_read(tree, tmp_path):
    with pytest.raises(LocalIOError) as err:
        push_view(str(tree), f"oci:{tmp_path / 'l'}:t", cache_dir="", progress=ChangeFileOnStart(tree / "lib" / "a.so"))
    assert "changed while being read" in str(err.value) and str(tree / "lib" / "a.so") in str(err.value)
    assert layout_tags(str(tmp_path / "l")) == []


@pytest.mark.registry
def test_registry_rejecting_a_blob_leaves_no_manifest(registry_server, tree):
    proxy = FaultProxy(registry_server.host)
    try:
        proxy.add(Fault("PATCH", "/blobs/uploads/", "status", status=413, times=-1))
        with pytest.raises(RegistryError) as err:
            push_view(str(tree), f"{proxy.host}/errors/reject:t", cache_dir="")
        message = str(err.value)
        assert "\n" not in message and message.startswith("layer tree.tar.zst: ") and "413" in message
    finally:
        proxy.close()
    store, _ = open_store(f"{registry_server.host}/errors/reject")
    with pytest.raises(NotFoundError):
        store.resolve("t")


class ReadOnlyRegistry(RegistryServer):
    """docker-registry in maintenance read-only mode: it refuses every upload."""

    def _config(self, *args):
        readonly = "  maintenance:\n    readonly:\n      enabled: true\n"
        return super()._config(*args).replace("  maintenance:\n", readonly)


@pytest.mark.registry
def test_read_only_registry_gives_one_line(tree, tmp_path):
    require_binary("docker-registry")
    server = ReadOnlyRegistry(workdir=str(tmp_path / "ro"))
    try:
        result = run_cli("push-view", str(tree), f"{server.host}/errors/ro:t", "--no-cache")
    finally:
        server.close()
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "layer tree.tar.zst" in result.stderr
