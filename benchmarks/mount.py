"""Mount benchmark: time to a working Python from ``ocikit mount`` vs ``ocikit pull``, on the standard corpus.

The corpus (a copy of the Python prefix, ~50k files; ``benchmarks/corpus.py``) is packed with
GNU tar and gzip (``benchmarks/pull.py``'s ``prepare``), pushed as an ORAS-style artifact to a
docker-registry this script starts, and given a SOCI zTOC (``ocikit ztoc build``). Then, for
the registry directly and behind a proxy that adds ``--latency`` seconds to every request:

* ``pull``   ``ocikit pull REF DEST`` then ``env -i DEST/<title>/bin/python3 -c 'import json, email, http.client'``
* ``mount``  ``ocikit.mount(REF, MNT)`` (a fresh span cache) then the same command from the mount

reporting wall time, the layer bytes each fetched (the mount's spans and requests) and the
ratios the goals are stated in (mount ≤ 20 % of the pull's time, ≤ 10 % of its bytes). Then
``--prefetch all`` fills the cache and every file is read through the mount, against reading
the pulled tree (both after one warm-up read, which for the mount decodes the cached spans into
the kernel's page cache; the first read is reported too; goal ≤ 1.5x). A second mount of the
same artifact (the prepared tree and spans kept in the cache) is timed as ``remount``. Usage::

    python benchmarks/mount.py [--dest-dir /dev/shm] [--latency 0.02] [--span-size 1048576] [--skip-read-all]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from corpus import corpus_path  # noqa: E402
from pull import prepare  # noqa: E402

import ocikit  # noqa: E402
from ocikit.content.base import push_bytes, push_manifest  # noqa: E402
from ocikit.content.layout import LayoutStore  # noqa: E402
from ocikit.digest import digest_file  # noqa: E402
from ocikit.spec import mediatypes as mt  # noqa: E402
from ocikit.spec.descriptor import EMPTY_DESCRIPTOR, Descriptor  # noqa: E402
from ocikit.spec.manifest import build_manifest  # noqa: E402
from ocikit.testing.fault_proxy import FaultProxy  # noqa: E402

PROGRAM = "import json, email, http.client"
POLICY = ocikit.PullPolicy(check_compat=False)


def publish(work: str, paths: dict[str, str], registry: str, span_size: int) -> tuple[str, int]:
    """The gzip artifact in the registry with its zTOC; returns (reference, layer bytes)."""
    layout = LayoutStore(os.path.join(work, "layout-mount"))
    digest, size = digest_file(paths["gzip"])
    notes = {mt.ANNOTATION_TITLE: paths["title"], mt.ORAS_ANNOTATION_UNPACK: "true"}
    with open(paths["gzip"], "rb") as fh:
        layout.push(Descriptor(mt.OCI_LAYER_GZIP, digest, size, notes), fh)
    push_bytes(layout, mt.OCI_EMPTY, mt.EMPTY_JSON)
    manifest = build_manifest([Descriptor(mt.OCI_LAYER_GZIP, digest, size, notes)], config=EMPTY_DESCRIPTOR,
                              artifact_type="application/vnd.ocikit.bench.v1")
    push_manifest(layout, manifest, tag="gzip")
    ref = f"{registry}/bench/mount:gzip"
    ocikit.copy(f"oci:{layout.root}:gzip", ref)
    ocikit.build_ztocs(ref, min_layer_size=0, span_size=span_size)
    return ref, size


def run_python(root: str, title: str) -> None:
    python = os.path.join(root, title, "bin", "python3")
    subprocess.run([python, "-c", PROGRAM], check=True, env={})


def with_latency(upstream: str, latency: float) -> FaultProxy:
    """A loopback proxy that holds every request ``latency`` seconds (a registry further away)."""
    proxy = FaultProxy(upstream)
    take = proxy._take

    def slow(method: str, path: str):  # type: ignore[no-untyped-def]
        time.sleep(latency)
        return take(method, path)

    proxy._take = slow  # type: ignore[method-assign]
    return proxy


def time_pull(ref: str, dest: str, title: str) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    started = time.perf_counter()
    ocikit.pull(ref, dest, POLICY)
    run_python(dest, title)
    return time.perf_counter() - started


def time_mount(ref: str, mnt: str, cache: str, title: str, fresh: bool = True) -> tuple[float, ocikit.MountHandle]:
    if fresh:
        shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(mnt, exist_ok=True)
    started = time.perf_counter()
    handle = ocikit.mount(ref, mnt, POLICY, cache=cache)
    run_python(mnt, title)
    return time.perf_counter() - started, handle


def read_all(root: str) -> tuple[float, int]:
    started, total = time.perf_counter(), 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    total += len(chunk)
    return time.perf_counter() - started, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest-dir", default=tempfile.gettempdir(), help="where pulled trees and the span cache go")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "ocikit-bench-pull"))
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added per request in the second round")
    parser.add_argument("--span-size", type=int, default=4 << 20, help="zTOC span size (SOCI's default: 4 MiB)")
    parser.add_argument("--skip-read-all", action="store_true")
    args = parser.parse_args()

    from ocikit.testing.registry import RegistryServer

    os.makedirs(args.work_dir, exist_ok=True)
    paths = prepare(args.work_dir, corpus_path())
    registry_dir = tempfile.mkdtemp(prefix="ocikit-bench-registry-")
    server = RegistryServer(workdir=registry_dir)
    base = tempfile.mkdtemp(prefix="ocikit-bench-mount-", dir=args.dest_dir)
    dest, mnt, cache = (os.path.join(base, name) for name in ("pulled", "mnt", "cache"))
    try:
        ref, layer_bytes = publish(args.work_dir, paths, server.host, args.span_size)
        rounds = [("loopback", server.host, None), (f"+{args.latency * 1000:.0f} ms", None, args.latency)]
        for label, host, latency in rounds:
            proxy = with_latency(server.host, latency) if latency else None
            source = ref.replace(server.host, proxy.host if proxy else host or server.host)
            pulled = time_pull(source, dest, paths["title"])
            mounted, handle = time_mount(source, mnt, cache, paths["title"])
            stats = handle.unmount()
            print(f"[{label}] pull + python: {pulled:6.2f} s, {layer_bytes / 1e6:7.1f} MB | "
                  f"mount + python: {mounted:6.2f} s, {stats.bytes_fetched / 1e6:6.1f} MB in {stats.spans_fetched} "
                  f"spans ({stats.requests} requests, {stats.cache_hits} cache hits) | "
                  f"time {mounted / pulled:.1%} of the pull, bytes {stats.bytes_fetched / layer_bytes:.1%}")
            remounted, handle = time_mount(source, mnt, cache, paths["title"], fresh=False)
            stats = handle.unmount()
            print(f"[{label}] remount + python (tree and spans kept in the cache): {remounted:6.2f} s, "
                  f"{stats.bytes_fetched / 1e6:.1f} MB fetched = {remounted / pulled:.1%} of the pull")
            if proxy:
                proxy.close()
        if not args.skip_read_all:
            handle = ocikit.mount(ref, mnt, POLICY, cache=cache, prefetch="all", prefetch_rate=0)
            while not handle.stats().prefetch_done:
                time.sleep(0.5)
            read_all(dest)  # warm the page cache for the pulled tree
            first_read, _ = read_all(mnt)  # spans decoded from the disk cache, file data into the page cache
            pulled_read, size = read_all(dest)
            mount_read, mounted_size = read_all(mnt)
            stats = handle.unmount()
            print(f"read every file after prefetch: pulled tree {pulled_read:.2f} s ({size / 1e6:.0f} MB), "
                  f"mount {mount_read:.2f} s ({mounted_size / 1e6:.0f} MB) = {mount_read / pulled_read:.2f}x "
                  f"(first read through the mount {first_read:.2f} s = {first_read / pulled_read:.1f}x); "
                  f"{stats.cache_hits} spans from the cache, {stats.bytes_fetched / 1e6:.1f} MB fetched by prefetch")
    finally:
        server.close()
        shutil.rmtree(registry_dir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
