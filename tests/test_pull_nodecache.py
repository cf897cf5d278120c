"""The node cache: download once (threads and processes), publish modes, ls, gc."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time

import pytest
from pull_support import TarBuilder, ThrottledProxy, push_tar, tree_snapshot

import ocikit
from ocikit.content.layout import LayoutStore
from ocikit.errors import UnsupportedError
from ocikit.pull.nodecache import NodeCache
from ocikit.pull.policy import PullPolicy
from ocikit.pull.ready import read_marker


class _SlowCountingStore:
    """A fake network: a real layout store whose layer reads are slow and counted."""

    def __init__(self, layout: str, delay: float = 0.4) -> None:
        self.store = LayoutStore(layout)
        self.delay = delay
        self.layer_fetches: list[str] = []
        self._lock = threading.Lock()

    def fetch(self, desc):
        if not (desc.is_manifest or desc.media_type.endswith("json")):
            with self._lock:
                self.layer_fetches.append(desc.digest)
            time.sleep(self.delay)
        return self.store.fetch(desc)

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.fixture
def artifact(tmp_path):
    layout = str(tmp_path / "layout")
    tar = TarBuilder().dir("bin").file("bin/tool", b"#!/bin/sh\n", 0o755).file("lib/data", os.urandom(5000)).bytes()
    desc = push_tar(layout, tar)
    return layout, desc


def test_concurrent_ensures_download_once(tmp_path, artifact):
    layout, desc = artifact
    source = _SlowCountingStore(layout)
    cache_dir = str(tmp_path / "cache")
    entries, errors = [], []

    def work() -> None:
        try:  # a NodeCache per thread: separate lock descriptors, as separate processes have
            entries.append(NodeCache(cache_dir).ensure(f"oci:{layout}:v1", store=source))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(source.layer_fetches) == 1
    assert {e.digest for e in entries} == {desc.digest}
    assert sorted(e.downloaded > 0 for e in entries) == [False, False, False, True]


def test_pinned_digest_in_cache_needs_no_source(tmp_path, artifact):
    layout, desc = artifact
    cache = NodeCache(str(tmp_path / "cache"))
    cache.ensure(f"oci:{layout}:v1")
    os.rename(layout, layout + ".gone")  # the source disappears
    entry = cache.ensure(f"oci:{layout}@{desc.digest}")
    assert entry.digest == desc.digest and entry.downloaded == 0


def test_cached_blobs_rebuild_a_removed_tree_without_network(tmp_path, artifact):
    layout, desc = artifact
    cache = NodeCache(str(tmp_path / "cache"))
    entry = cache.ensure(f"oci:{layout}:v1")
    ocikit.extract.whiteout.remove_tree(entry.path)
    source = _SlowCountingStore(layout, delay=0)
    again = cache.ensure(f"oci:{layout}:v1", store=source)
    assert os.path.isdir(again.path) and source.layer_fetches == []


def test_concurrent_pulls_in_processes_download_once(tmp_path, artifact, registry):
    layout, desc = artifact
    ocikit.copy(f"oci:{layout}:v1", f"{registry}/pull/cached:v1")
    proxy = ThrottledProxy(registry, bytes_per_second=50_000)
    cache_dir = str(tmp_path / "cache")
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "ocikit_cli.main", "pull", f"{proxy.host}/pull/cached:v1",
                 str(tmp_path / f"dest{i}"), "--cache", cache_dir, "--json"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(3)
        ]
        results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    finally:
        proxy.close()
    assert all(p.returncode == 0 for p in procs)
    (layer,) = ocikit.get_manifest(f"oci:{layout}:v1").layers
    assert proxy.blob_gets.count(layer.digest) == 1, proxy.blob_gets
    assert {r["digest"] for r in results} == {desc.digest}
    assert sorted(r["downloaded"] > 0 for r in results) == [False, False, True]
    for i in range(3):
        assert read_marker(str(tmp_path / f"dest{i}"))["digest"] == desc.digest


def test_publish_modes(tmp_path, artifact):
    layout, desc = artifact
    cache = NodeCache(str(tmp_path / "cache"))
    entry = cache.ensure(f"oci:{layout}:v1")
    linked = cache.publish(entry, str(tmp_path / "linked"), mode="hardlink", read_only=True)
    copied = cache.publish(entry, str(tmp_path / "copied"), mode="copy", read_only=True)
    auto = cache.publish(entry, str(tmp_path / "auto"), mode="auto")
    src = os.path.join(entry.path, "lib/data")
    assert os.stat(os.path.join(tmp_path, "linked/lib/data")).st_ino == os.stat(src).st_ino
    assert os.stat(os.path.join(tmp_path, "copied/lib/data")).st_ino != os.stat(src).st_ino
    for published in ("linked", "copied", "auto"):
        tree = tree_snapshot(str(tmp_path / published))
        assert tree.pop(".ocikit/ready.json") and tree.pop(".ocikit/owned.json")
        assert {k: v for k, v in tree.items() if k != ".ocikit"}.keys() == {"bin", "bin/tool", "lib", "lib/data"}
        assert read_marker(str(tmp_path / published))["digest"] == desc.digest
    assert stat.S_IMODE(os.stat(tmp_path / "copied/lib").st_mode) & 0o222 == 0
    assert stat.S_IMODE(os.stat(tmp_path / "copied/lib/data").st_mode) & 0o222 == 0
    assert stat.S_IMODE(os.stat(src).st_mode) & 0o200  # the cache's own copy is untouched
    assert (linked.mode, copied.mode) == ("hardlink", "copy") and auto.mode in ("reflink", "copy")
    os.chmod(tmp_path / "copied/lib", 0o755)
    os.chmod(tmp_path / "copied/bin", 0o755)


def test_a_writable_target_never_shares_inodes_with_the_cache(tmp_path, artifact):
    """Issue 11: a hardlink publish into a writable volume let one pod append to a file of the
    cached tree, changing it for every other pod. Hardlinks now need a read-only target, and the
    default gives each target its own files."""
    layout, _ = artifact
    cache = NodeCache(str(tmp_path / "cache"))
    entry = cache.ensure(f"oci:{layout}:v1")
    cached = os.path.join(entry.path, "lib/data")
    before = open(cached, "rb").read()
    with pytest.raises(UnsupportedError, match="read-only target"):
        cache.publish(entry, str(tmp_path / "pod-a"), mode="hardlink")
    assert not os.path.lexists(tmp_path / "pod-a")
    result = cache.publish(entry, str(tmp_path / "pod-b"))  # the default: auto
    assert result.mode in ("reflink", "copy")
    with open(tmp_path / "pod-b/lib/data", "ab") as pod_file:  # the pod writes into its volume
        pod_file.write(b"changed by one pod")
    assert open(cached, "rb").read() == before
    cache.publish(entry, str(tmp_path / "pod-c"))
    assert open(tmp_path / "pod-c/lib/data", "rb").read() == before


def test_the_cli_refuses_hardlinks_into_a_writable_dest(tmp_path, artifact):
    layout, _ = artifact
    process = subprocess.run(
        [sys.executable, "-m", "ocikit_cli.main", "pull", f"oci:{layout}:v1", str(tmp_path / "dest"),
         "--cache", str(tmp_path / "cache"), "--link-mode", "hardlink"],
        capture_output=True, text=True,
    )
    assert process.returncode != 0 and process.returncode != 70
    assert "read-only target" in process.stderr and "Traceback" not in process.stderr
    assert not os.path.lexists(tmp_path / "dest")


def test_reflink_is_refused_where_the_filesystem_cannot_clone(tmp_path, artifact):
    layout, _ = artifact
    cache = NodeCache(str(tmp_path / "cache"))
    entry = cache.ensure(f"oci:{layout}:v1")
    try:
        result = cache.publish(entry, str(tmp_path / "ref"), mode="reflink")
    except UnsupportedError as exc:
        assert "copy-on-write" in str(exc)
        assert not os.path.exists(tmp_path / "ref")
    else:  # btrfs/XFS: real clones
        assert result.mode == "reflink"


def test_pull_with_cache_publishes_and_repull_is_a_noop(tmp_path, artifact):
    layout, desc = artifact
    cache_dir = str(tmp_path / "cache")
    first = ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "dest"), PullPolicy(link_mode="auto"), cache=cache_dir)
    assert first.cache == cache_dir and first.downloaded > 0
    second = ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "dest"), cache=cache_dir)
    assert second.unchanged
    other = ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "other"), PullPolicy(link_mode="copy"), cache=cache_dir)
    assert other.downloaded == 0 and not other.unchanged


def test_ls_and_gc(tmp_path):
    layout = str(tmp_path / "layout")
    cache = NodeCache(str(tmp_path / "cache"))
    digests = []
    for i in range(3):
        desc = push_tar(layout, TarBuilder().file("payload", os.urandom(20000 + i)).bytes(), tag=f"v{i}")
        cache.ensure(f"oci:{layout}:v{i}")
        digests.append(desc.digest)
        time.sleep(0.05)
    listed = cache.ls()
    assert [e.digest for e in listed] == digests[::-1]  # most recently used first
    assert listed[0].references == [f"oci:{layout}:v2"] and listed[0].size == 20002
    cache.ensure(f"oci:{layout}:v0")  # a use refreshes the oldest
    total = cache.gc().total_bytes  # no limits: nothing removed, just the total
    assert total > 3 * 2 * 20000  # three trees and their blobs
    result = cache.gc(max_bytes=total - 1)  # one eviction is enough: the least recently used
    assert result.removed == [digests[1]] and result.freed_bytes > 40000
    assert [e.digest for e in cache.ls()] == [digests[0], digests[2]]
    result = cache.gc(max_age=0)
    assert sorted(result.removed) == sorted([digests[0], digests[2]]) and cache.ls() == []
    blob_files = [f for _, _, fs in os.walk(os.path.join(cache.root, "blobs", "blobs")) for f in fs]
    assert blob_files == []
    assert os.listdir(os.path.join(cache.root, "trees")) == []


def test_cache_cli(tmp_path, artifact):
    layout, desc = artifact
    cache_dir = str(tmp_path / "cache")
    NodeCache(cache_dir).ensure(f"oci:{layout}:v1")
    cli = [sys.executable, "-m", "ocikit_cli.main", "cache"]
    listed = json.loads(subprocess.run([*cli, "ls", "--cache", cache_dir, "--json"], capture_output=True, check=True).stdout)
    assert [e["digest"] for e in listed["entries"]] == [desc.digest]
    text = subprocess.run([*cli, "ls", "--cache", cache_dir], capture_output=True, text=True, check=True).stdout
    assert desc.digest[:19] in text and "image" in text
    gc = json.loads(subprocess.run([*cli, "gc", "--cache", cache_dir, "--max-age", "0s", "--json"], capture_output=True, check=True).stdout)
    assert gc["removed"] == [desc.digest]
    bad = subprocess.run([*cli, "gc", "--cache", cache_dir, "--max-size", "lots"], capture_output=True, text=True)
    assert bad.returncode == 2 and "is not a size" in bad.stderr
