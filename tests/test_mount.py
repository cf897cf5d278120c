"""``ocikit mount``: a real FUSE mount (Debian's fuse3, /dev/fuse) of images in a real docker-registry.

Layer requests are counted at a loopback proxy (``FaultProxy``) between the mount and the
registry, which also corrupts spans on cue. Every test unmounts what it mounted.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

import pytest
from compat_support import VIEW_HASH, spack_view_fixture  # noqa: F401
from ztoc_helpers import SPAN, gnu_tar, gzip_file, make_tree, push_image, tar_with, write, zstd_frames

import ocikit
from ocikit.content.base import fetch_manifest
from ocikit.content.open import open_store
from ocikit.errors import UnsafeContentError, exit_code_for
from ocikit.mount.fs import is_mounted, is_stale_mount
from ocikit.options import Options
from ocikit.pull.policy import PullPolicy
from ocikit.spec import mediatypes as mt
from ocikit.testing.fault_proxy import Fault, FaultProxy
from ocikit.testing.registry import RegistryServer, TokenAuthConfig
from ocikit.testing.token_service import ISSUER, SERVICE, TokenService
from ocikit.ztoc.api import build_ztocs

pytestmark = [pytest.mark.registry]

NO_COMPAT = PullPolicy(check_compat=False)


def _require_fuse() -> None:
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        if os.environ.get("CI"):
            pytest.fail("FUSE is not available (/dev/fuse, fusermount3)")
        pytest.skip("FUSE is not available (/dev/fuse, fusermount3)")


@pytest.fixture(scope="module")
def image(tmp_path_factory, registry_server):
    """A two-layer image with zTOCs: a software tree (gzip) and a zstd layer on top that hides
    ``etc/secret.conf``, replaces ``share/doc/README`` and adds ``bin/new``; seen through a proxy."""
    _require_fuse()
    work = tmp_path_factory.mktemp("mount-image")
    tree = str(work / "tree")
    os.mkdir(tree)
    make_tree(tree)
    lower = gzip_file(gnu_tar(tree, str(work / "lower.tar")), str(work / "lower.gz"))
    upper_tar = tar_with([
        ("etc/", None, {"type": tarfile.DIRTYPE, "mode": 0o755}),
        ("etc/.wh.secret.conf", b"", {"mode": 0o644}),
        ("bin/new", b"#!/bin/sh\necho new\n", {"mode": 0o755}),
    ])
    upper, _ = zstd_frames(write(str(work / "upper.tar"), upper_tar), str(work / "upper.zst"))
    ref = f"{registry_server.host}/mount/app:v1"
    store, _ = open_store(ref)
    manifest = push_image(store, [(lower, mt.OCI_LAYER_GZIP), (upper, mt.OCI_LAYER_ZSTD)])
    build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    proxy = FaultProxy(registry_server.host)
    layers = fetch_manifest(store, manifest).layers
    yield {
        "tree": tree, "ref": f"{proxy.host}/mount/app:v1", "direct": ref, "proxy": proxy,
        "layers": [d.digest for d in layers], "layer_bytes": sum(d.size for d in layers),
    }
    proxy.close()


def layer_requests(image) -> list[tuple[str, str]]:
    """The requests for layer blobs the proxy saw: (path, Range header) of each range read of spans."""
    return [(r.path, r.headers.get("range", "")) for r in image["proxy"].requests
            if any(d in r.path for d in image["layers"])]


def mount(ref: str, mountpoint, cache, **keywords):
    try:
        os.makedirs(mountpoint)
    except FileExistsError:
        pass  # also a stale mount point (ENOTCONN), which the mount clears
    return ocikit.mount(ref, str(mountpoint), keywords.pop("policy", NO_COMPAT), cache=str(cache), **keywords)


def read(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def test_a_read_fetches_only_its_spans_and_returns_the_right_bytes(image, tmp_path):
    image["proxy"].clear()
    with mount(image["ref"], tmp_path / "mnt", tmp_path / "cache") as handle:
        mnt = tmp_path / "mnt"
        assert read(mnt / "bin" / "tool") == read(os.path.join(image["tree"], "bin", "tool"))
        stats = handle.stats()
        assert 0 < stats.bytes_fetched < image["layer_bytes"] // 4  # ~1 MiB of text out of ~4 MiB of layers
        assert stats.spans_fetched == len(layer_requests(image)) > 0
        # the merged tree: whiteout applied, upper layer's file added, links as archived
        assert not (mnt / "etc" / "secret.conf").exists() and (mnt / "etc").is_dir()
        assert read(mnt / "bin" / "new") == b"#!/bin/sh\necho new\n"
        assert os.readlink(mnt / "lib" / "libbig.so") == "libbig.so.1"
        assert os.stat(mnt / "share" / "doc" / "README").st_nlink == 2
        assert read(mnt / "share" / "doc" / "README.hard") == read(mnt / "share" / "doc" / "README")
        with pytest.raises(OSError) as written:
            open(mnt / "bin" / "tool", "ab")
        assert written.value.errno in (errno.EROFS, errno.EACCES)
    assert not is_mounted(str(mnt))


def test_every_file_equals_the_pulled_tree(image, tmp_path):
    pulled = tmp_path / "pulled"
    ocikit.pull(image["direct"], str(pulled), NO_COMPAT)
    with mount(image["ref"], tmp_path / "mnt", tmp_path / "cache"):
        assert _tree(tmp_path / "mnt") == _tree(pulled)


def _tree(root) -> dict[str, tuple]:
    """Every path under ``root`` with its type, permission bits and content (or link target)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel.startswith(".ocikit"):
                continue  # the pull's ready marker
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), read(path))
    return out


def test_a_remount_reads_spans_from_the_cache_not_the_registry(image, tmp_path):
    cache = tmp_path / "cache"
    with mount(image["ref"], tmp_path / "a", cache):
        first = read(tmp_path / "a" / "lib" / "libbig.so.1")
    image["proxy"].clear()
    with mount(image["ref"], tmp_path / "b", cache) as handle:
        assert read(tmp_path / "b" / "lib" / "libbig.so.1") == first
        stats = handle.stats()
    assert layer_requests(image) == []
    assert stats.bytes_fetched == 0 and stats.cache_hits > 0
    # nor the zTOCs, config or manifests: only what names things (the tag, the referrers) is asked
    assert [r.path for r in image["proxy"].requests if "/blobs/" in r.path] == []


def _kept_trees(cache) -> list[str]:
    top = os.path.join(cache, "mount", "trees")
    return [os.path.join(top, name) for name in os.listdir(top) if not name.startswith(".")]


def test_a_remount_uses_the_kept_tree_and_finds_no_ztocs_again(image, tmp_path):
    cache = tmp_path / "cache"
    with mount(image["ref"], tmp_path / "a", cache):
        first = _tree(tmp_path / "a")
    assert len(_kept_trees(cache)) == 1
    image["proxy"].clear()
    with mount(image["ref"], tmp_path / "b", cache):
        assert _tree(tmp_path / "b") == first
    assert [r.path for r in image["proxy"].requests if "/referrers/" in r.path] == []  # no zTOC discovery
    with mount(image["ref"], tmp_path / "c", cache, policy=PullPolicy(check_compat=False, max_size=1 << 30)):
        pass
    assert len(_kept_trees(cache)) == 2  # another policy shapes another tree: kept apart


def test_a_kept_tree_others_could_write_is_not_trusted(image, tmp_path):
    """The attack: a kept tree forged by someone else (here: ``bin/new`` pointed at other bytes
    with a made-up span digest) in a cache they can write. It must be ignored and rebuilt."""
    from ocikit.mount.treecache import load_tree, save_tree

    cache = tmp_path / "cache"
    with mount(image["ref"], tmp_path / "a", cache):
        pass
    [kept] = _kept_trees(cache)
    tree, ztocs = load_tree(kept)
    tree.entries["bin/new"].offset = 0
    ztocs[tree.entries["bin/new"].layer].span_digests[0] = "sha256:" + "0" * 64
    save_tree(kept, tree, ztocs)
    for forged in (lambda: os.chmod(kept, 0o664), lambda: os.chmod(os.path.dirname(kept), 0o777)):
        forged()
        assert load_tree(kept) is None
        image["proxy"].clear()
        with mount(image["ref"], tmp_path / "b", cache):
            assert read(tmp_path / "b" / "bin" / "new") == b"#!/bin/sh\necho new\n"
        assert [r.path for r in image["proxy"].requests if "/referrers/" in r.path] != []
    with open(kept, "r+b") as fh:  # damaged on disk: ignored, not read as garbage
        fh.seek(-1, os.SEEK_END)
        fh.write(b"\xff")
    os.chmod(kept, 0o600)
    os.chmod(os.path.dirname(kept), 0o700)
    assert load_tree(kept) is None


def test_concurrent_readers_fetch_each_span_once(image, tmp_path):
    image["proxy"].clear()
    with mount(image["ref"], tmp_path / "mnt", tmp_path / "cache") as handle:
        path = tmp_path / "mnt" / "lib" / "libbig.so.1"
        results: list[bytes] = []
        threads = [threading.Thread(target=lambda: results.append(read(path))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected = read(os.path.join(image["tree"], "lib", "libbig.so.1"))
        assert results == [expected] * 6
        requests = layer_requests(image)
        stats = handle.stats()
    assert len(requests) == len(set(requests)) == stats.spans_fetched  # no span twice
    assert stats.spans_fetched >= len(expected) // SPAN  # ~3 MiB of 64 KiB spans


def test_a_corrupted_span_is_eio_and_no_wrong_byte(image, tmp_path):
    proxy = image["proxy"]
    proxy.clear()
    lower = image["layers"][0]
    proxy.add(Fault("GET", lower, "corrupt", after_bytes=100, times=-1))
    try:
        with mount(image["ref"], tmp_path / "mnt", tmp_path / "cache") as handle:
            with pytest.raises(OSError) as failed:
                read(tmp_path / "mnt" / "bin" / "tool")
            assert failed.value.errno == errno.EIO
            assert handle.stats().errors > 0 and "digest mismatch" in handle.stats().last_error
    finally:
        proxy.clear()
    assert all(not files for _, _, files in os.walk(tmp_path / "cache" / "mount" / "spans"))  # nothing unverified kept


@pytest.mark.parametrize("failure", ["stopped", "hung"])
def test_a_registry_that_goes_away_mid_run_gives_eio_not_a_hang(tmp_path, failure):
    _require_fuse()
    tree = tmp_path / "tree"
    tree.mkdir()
    make_tree(str(tree))
    layer = gzip_file(gnu_tar(str(tree), str(tmp_path / "l.tar")), str(tmp_path / "l.gz"))
    server = RegistryServer(workdir=str(tmp_path / "registry"))
    try:
        ref = f"{server.host}/mount/gone:v1"
        push_image(open_store(ref)[0], [(layer, mt.OCI_LAYER_GZIP)])
        build_ztocs(ref, span_size=SPAN, min_layer_size=0)
        with mount(ref, tmp_path / "mnt", tmp_path / "cache", timeout=2) as handle:
            assert read(tmp_path / "mnt" / "share" / "doc" / "README") == read(str(tree / "share" / "doc" / "README"))
            if failure == "stopped":
                server.close()  # connections refused
            else:
                server.pause()  # connections accepted, never answered: only the timeout ends the read
            with pytest.raises(OSError) as failed:
                read(tmp_path / "mnt" / "bin" / "tool")
            assert failed.value.errno == errno.EIO
            assert handle.stats().errors > 0
            assert (tmp_path / "mnt" / "many").is_dir()  # metadata still answers
            assert read(tmp_path / "mnt" / "share" / "doc" / "README")  # and what is cached
    finally:
        server.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_cli_unmounts_cleanly_on_a_signal(image, tmp_path, sig):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "ocikit_cli.main", "mount", image["ref"], str(mnt), "--cache", str(tmp_path / "c"),
         "--skip-compat-check", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(lambda: is_mounted(str(mnt)) or process.poll() is not None)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert read(mnt / "bin" / "new") == b"#!/bin/sh\necho new\n"
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    assert process.returncode == 0, err
    assert not is_mounted(str(mnt))
    assert '"spansFetched": 1' in out


def _wait_for(condition, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def test_a_killed_daemon_does_not_block_the_next_mount(image, tmp_path):
    mnt = tmp_path / "mnt"
    handle = mount(image["ref"], mnt, tmp_path / "cache")
    os.kill(handle.pid, signal.SIGKILL)
    handle.process.wait()
    assert is_stale_mount(str(mnt))  # ENOTCONN: what a crashed FUSE daemon leaves
    with mount(image["ref"], mnt, tmp_path / "cache"):
        assert read(mnt / "bin" / "new") == b"#!/bin/sh\necho new\n"
    assert not is_mounted(str(mnt))


_CALLER = """
import sys, time, ocikit
from ocikit.pull.policy import PullPolicy
handle = ocikit.mount(sys.argv[1], sys.argv[2], PullPolicy(check_compat=False), cache=sys.argv[3],
                      detach=sys.argv[4] == "detach")
print(handle.pid, flush=True)
time.sleep(600)
"""


def _killed_caller(image, tmp_path, mode: str) -> tuple[str, int]:
    """A process mounts with ``ocikit.mount()`` and is SIGKILLed; returns (mount point, daemon pid)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    caller = subprocess.Popen([sys.executable, "-c", _CALLER, image["ref"], str(mnt), str(tmp_path / "c"), mode],
                              stdout=subprocess.PIPE, text=True)
    assert caller.stdout is not None
    daemon = int(caller.stdout.readline())
    assert read(mnt / "bin" / "new") == b"#!/bin/sh\necho new\n"
    caller.kill()
    caller.wait()
    return str(mnt), daemon


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1][0] != "Z"


def test_a_caller_killed_without_unmount_takes_its_mount_with_it(image, tmp_path):
    mnt, daemon = _killed_caller(image, tmp_path, "attached")
    _wait_for(lambda: not is_mounted(mnt) and not _alive(daemon), limit=30)
    assert not is_stale_mount(mnt)  # unmounted cleanly, not left ENOTCONN


def test_a_detached_mount_outlives_its_caller_until_unmounted(image, tmp_path):
    mnt, daemon = _killed_caller(image, tmp_path, "detach")
    try:
        time.sleep(1.0)
        assert is_mounted(mnt) and _alive(daemon)
        assert read(os.path.join(mnt, "share", "doc", "README"))  # still serving, fetching on demand
    finally:
        subprocess.run(["fusermount3", "-u", mnt], check=False)
    _wait_for(lambda: not _alive(daemon), limit=30)
    assert not is_mounted(mnt)


def test_prefetch_all_fills_the_cache_so_reads_cost_no_network(image, tmp_path):
    with mount(image["ref"], tmp_path / "mnt", tmp_path / "cache", prefetch="all", prefetch_rate=0) as handle:
        _wait_for(lambda: handle.stats().prefetch_done)
        image["proxy"].clear()
        assert _tree(tmp_path / "mnt")  # every file read
        assert layer_requests(image) == []


def test_a_recorded_run_is_the_prefetch_list_of_the_next_mount(image, tmp_path):
    record = tmp_path / "touched.txt"
    with mount(image["ref"], tmp_path / "a", tmp_path / "cache-a", record=str(record)):
        read(tmp_path / "a" / "bin" / "new")
        read(tmp_path / "a" / "bin" / "tool")
        read(tmp_path / "a" / "bin" / "new")
    assert record.read_text() == "bin/new\nbin/tool\n"  # first reads, in order
    with mount(image["ref"], tmp_path / "b", tmp_path / "cache-b", prefetch=str(record)) as handle:
        _wait_for(lambda: handle.stats().prefetch_done)
        image["proxy"].clear()
        assert read(tmp_path / "b" / "bin" / "tool") == read(os.path.join(image["tree"], "bin", "tool"))
        assert layer_requests(image) == []


def test_cache_gc_reclaims_the_spans(image, tmp_path):
    cache = tmp_path / "cache"
    with mount(image["ref"], tmp_path / "mnt", cache):
        read(tmp_path / "mnt" / "lib" / "libbig.so.1")
    result = ocikit.NodeCache(str(cache)).gc(max_bytes=0)
    assert result.spans_removed > 0 and result.freed_bytes > 0
    assert all(not files for _, _, files in os.walk(cache / "mount" / "spans"))
    assert _kept_trees(cache) == []  # the prepared tree goes with them


def test_nodecache_mount_shares_the_cache_spans(image, tmp_path):
    cache = ocikit.NodeCache(str(tmp_path / "cache"))
    (tmp_path / "mnt").mkdir()
    with cache.mount(image["ref"], str(tmp_path / "mnt"), NO_COMPAT):
        read(tmp_path / "mnt" / "bin" / "tool")
    assert any(files for _, _, files in os.walk(tmp_path / "cache" / "mount" / "spans"))


# -- the pull's rules decide what is shown ---------------------------------------------------


def _rules_image(registry: str, tmp_path, name: str, entries) -> str:
    ref = f"{registry}/mount/{name}:v1"
    layer = gzip_file(write(str(tmp_path / f"{name}.tar"), tar_with(entries)), str(tmp_path / f"{name}.gz"))
    push_image(open_store(ref)[0], [(layer, mt.OCI_LAYER_GZIP)])
    build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    return ref


def test_setid_bits_are_dropped_and_devices_skipped_in_a_rootfs(registry, tmp_path):
    _require_fuse()
    ref = _rules_image(registry, tmp_path, "modes", [
        ("bin/su", b"\x7fELF", {"mode": 0o4755}),
        ("tmp/", None, {"type": tarfile.DIRTYPE, "mode": 0o1777}),
        ("dev/null", None, {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3, "mode": 0o666}),
    ])
    with mount(ref, tmp_path / "mnt", tmp_path / "cache", policy=PullPolicy(check_compat=False, rootfs=True)):
        assert stat.S_IMODE(os.stat(tmp_path / "mnt" / "bin" / "su").st_mode) == 0o755
        assert stat.S_IMODE(os.stat(tmp_path / "mnt" / "tmp").st_mode) == 0o1777  # sticky kept
        assert not os.path.lexists(tmp_path / "mnt" / "dev" / "null")  # an image's /dev: the runtime's


def test_what_a_pull_refuses_is_not_mounted(registry, tmp_path):
    _require_fuse()
    ref = _rules_image(registry, tmp_path, "reserved", [(".ocikit/ready.json", b"{}", {"mode": 0o644})])
    with pytest.raises(UnsafeContentError, match="reserved name") as refused:
        mount(ref, tmp_path / "mnt", tmp_path / "cache")
    assert exit_code_for(refused.value) == exit_code_for(UnsafeContentError("x", "y"))
    assert not is_mounted(str(tmp_path / "mnt"))
    big = _rules_image(registry, tmp_path, "big", [("f", b"x" * 5000, {"mode": 0o644})])
    with pytest.raises(UnsafeContentError, match="size limit exceeded"):
        mount(big, tmp_path / "mnt", tmp_path / "cache", policy=PullPolicy(check_compat=False, max_size=1000))
    escape = _rules_image(registry, tmp_path, "escape", [("a/link", None, {"type": tarfile.SYMTYPE, "linkname": "../../etc/passwd"})])
    with pytest.raises(UnsafeContentError, match="symlink target outside destination"):
        mount(escape, tmp_path / "mnt", tmp_path / "cache")


def test_a_hard_link_to_a_lower_layer_file_is_served_as_a_pull_merges_it(registry, tmp_path):
    _require_fuse()
    ref = f"{registry}/mount/links:v1"
    layers = []
    for i, entries in enumerate([
        [("usr/lib/libz.so.1", b"zlib 1.2", {"mode": 0o755})],
        [("usr/lib/libz-copy", None, {"type": tarfile.LNKTYPE, "linkname": "usr/lib/libz.so.1"})],
        [("usr/lib/libz.so.1", b"zlib 1.3", {"mode": 0o755})],
    ]):
        tar = write(str(tmp_path / f"layer{i}.tar"), tar_with(entries))
        layers.append((gzip_file(tar, str(tmp_path / f"layer{i}.gz")), mt.OCI_LAYER_GZIP))
    push_image(open_store(ref)[0], layers)
    build_ztocs(ref, span_size=SPAN, min_layer_size=0)
    pulled = tmp_path / "pulled"
    ocikit.pull(ref, str(pulled), NO_COMPAT)
    with mount(ref, tmp_path / "mnt", tmp_path / "cache"):
        for name in ("usr/lib/libz-copy", "usr/lib/libz.so.1"):
            assert read(tmp_path / "mnt" / name) == read(pulled / name)
        assert read(tmp_path / "mnt" / "usr/lib/libz-copy") == b"zlib 1.2"


# -- a real spack view, mounted away from its recorded root -------------------------------------


def test_a_spack_view_mounted_elsewhere_runs_and_equals_the_pull(registry, spack_view_fixture, request):  # noqa: F811
    _require_fuse()
    root = f"/opt/._view/{VIEW_HASH}"
    ref = f"{registry}/mount/view:v1"
    ocikit.push_view(spack_view_fixture["view"], ref, root=root, view_path="/opt/view", compat=False, cache_dir="")
    build_ztocs(ref, min_layer_size=0)
    short = tempfile.mkdtemp(prefix="oci", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(short, ignore_errors=True))
    pulled, mnt, seen = (os.path.join(short, name) for name in ("p", "m", "s"))
    ocikit.pull(ref, pulled, NO_COMPAT)
    cache = os.path.join(short, "cache")
    with mount(ref, mnt, cache) as handle:
        run = subprocess.run([os.path.join(mnt, "bin", "xz"), "--version"], capture_output=True, text=True, env={})
        assert run.returncode == 0 and "5.4.1" in run.stdout
        with open(os.path.join(mnt, "lib", "pkgconfig", "liblzma.pc")) as fh:
            assert f"prefix={mnt}\n" in fh.readlines()
        stats = handle.stats()
        assert stats.errors == 0 and 0 < stats.bytes_fetched < _layer_bytes(ref) // 2  # lazy, relocation included
    # seen at the pull's path (a container's mount path), the mount holds the pull's very bytes
    with mount(ref, seen, cache, relocate_to=pulled):
        assert _tree(seen) == _tree(pulled)


def _layer_bytes(ref: str) -> int:
    store, parsed = open_store(ref)
    return sum(d.size for d in fetch_manifest(store, store.resolve(parsed.reference)).layers)


def test_a_rejected_token_is_renewed_and_the_read_succeeds(tmp_path, registry_server, monkeypatch):
    """The SOCI complaint: lazy layers break when credentials expire. A registry answering 401
    to the mount's token (an expired one) makes the mount run the challenge again."""
    _require_fuse()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    (tmp_path / "token").mkdir()
    service = TokenService(str(tmp_path / "token"), "alice", "s3cret")
    server = RegistryServer(workdir=str(tmp_path / "registry"), token=TokenAuthConfig(
        realm=service.realm, service=SERVICE, issuer=ISSUER, root_cert_bundle=service.cert_path))
    proxy = FaultProxy(server.host)
    try:
        options = Options(username="alice", password="s3cret")
        tree = tmp_path / "tree"
        tree.mkdir()
        make_tree(str(tree))
        layer = gzip_file(gnu_tar(str(tree), str(tmp_path / "l.tar")), str(tmp_path / "l.gz"))
        ref = f"{server.host}/mount/auth:v1"
        store, _ = open_store(ref, options)
        layer_digest = fetch_manifest(store, push_image(store, [(layer, mt.OCI_LAYER_GZIP)])).layers[0].digest
        build_ztocs(ref, span_size=SPAN, min_layer_size=0, options=options)
        challenge = f'Bearer realm="{service.realm}",service="{SERVICE}",scope="repository:mount/auth:pull"'
        with mount(f"{proxy.host}/mount/auth:v1", tmp_path / "mnt", tmp_path / "cache", options=options) as handle:
            tokens = len(service.requests)
            proxy.add(Fault("GET", layer_digest, "status", status=401, headers={"WWW-Authenticate": challenge}))
            assert read(tmp_path / "mnt" / "bin" / "tool") == read(str(tree / "bin" / "tool"))
            assert handle.stats().errors == 0
        assert proxy.faults[0].hits == 1 and len(service.requests) > tokens  # a new token was fetched
    finally:
        proxy.close()
        server.close()
        service.close()


def test_a_prefetch_referrer_is_used_by_later_mounts(image, tmp_path):
    record = tmp_path / "touched.txt"
    record.write_text("bin/tool\n")
    ocikit.attach(image["direct"], mt.OCIKIT_PREFETCH_ARTIFACT, [str(record)])
    with mount(image["ref"], tmp_path / "mnt", tmp_path / "cache", prefetch="referrer") as handle:
        _wait_for(lambda: handle.stats().prefetch_done)
        assert handle.stats().prefetched == 1 and handle.stats().spans_fetched > 0
        image["proxy"].clear()
        read(tmp_path / "mnt" / "bin" / "tool")
        assert layer_requests(image) == []
