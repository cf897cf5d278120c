"""Benchmark: layer Jaccard over 10,000 generated images, and concurrent manifest fetching.

Run:  python benchmarks/similarity.py            (everything, ~2 minutes)
      python benchmarks/similarity.py --skip-registry --images 10000

1. Generates ``--images`` image manifests with realistic sharing in one OCI layout (a
   handful of base-OS layers shared widely, families of images sharing mid layers with a
   power-law family size, unique top layers; about 10 layers per image, configs with
   diff_ids). Layer blobs are not written: similarity reads only manifests and configs.
2. Runs ``ocikit.similarity`` over the whole layout (``--repository``-style expansion) in
   a fresh process, by digest and by diff-id weighted, and reports wall time per phase
   and the peak RSS (``resource.getrusage``) against the goals: < 10 s, < 2 GiB.
3. Baseline: naive pairwise Python-set Jaccard on the first ``--subset`` images, timed,
   and extrapolated quadratically to all images; ocikit's matrix step on the same subset
   and on all images is timed alongside, and the ratios printed.
4. With Debian's docker-registry: pushes ``--registry-images`` small image manifests to a
   local registry and fetches them (tag HEAD + manifest GET each, no cache) with
   concurrency 1 and with the default (16), directly on loopback and through a relay that
   adds ``--latency-ms`` to every request. On loopback the round trip is ~0, so both are
   bound by CPU (two cores shared by client and registry); with latency the sequential run
   pays every round trip one after another and the concurrent one ~1/16 of them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor
from ocikit.spec.manifest import build_index, build_manifest, canonical_json

GOAL_SECONDS = 10.0
GOAL_BYTES = 2 << 30
MIB = 1 << 20


# -- synthetic images --------------------------------------------------------------------


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def synthetic_images(n: int, seed: int = 7) -> list[list[tuple[str, str, int]]]:
    """``n`` layer lists of (layer id, diff id, size).

    4 base OSes (1–3 layers, 30–80 MB, chosen 50/25/15/10 %), ~n/30 families with 2–4
    mid layers (lognormal ~40 MB; family popularity follows a power law, some families
    share a first mid layer as a common toolchain), and 3–5 unique top layers per image
    (lognormal ~2 MB).
    """
    rng = random.Random(seed)
    bases = [[(f"base{b}-{i}", rng.randint(30, 80) * MIB) for i in range(rng.randint(1, 3))] for b in range(4)]
    toolchains = [(f"toolchain{t}", int(rng.lognormvariate(18, 0.8))) for t in range(12)]
    families = []
    for f in range(max(1, n // 30)):
        mids = [(f"family{f}-{i}", int(rng.lognormvariate(17.5, 1.0))) for i in range(rng.randint(2, 4))]
        if rng.random() < 0.6:
            mids[0] = rng.choice(toolchains)
        families.append((rng.choices(range(4), weights=[50, 25, 15, 10])[0], mids))
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(len(families))]
    images = []
    for i in range(n):
        base, mids = families[rng.choices(range(len(families)), weights=weights)[0]]
        tops = [(f"image{i}-{t}", int(rng.lognormvariate(14.5, 1.5))) for t in range(rng.randint(3, 5))]
        images.append([(name, f"diff:{name}", size) for name, size in bases[base] + mids + tops])
    return images


def write_layout(root: str, images: list[list[tuple[str, str, int]]]) -> None:
    """Configs, manifests and a tagged index.json, written directly (one index write, not n)."""
    blobs = os.path.join(root, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest[7:]), "wb") as fh:
            fh.write(data)
        return digest

    entries = []
    for i, layers in enumerate(images):
        config = canonical_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [_digest(diff) for _, diff, _ in layers]},
            }
        )
        config_desc = Descriptor(mt.OCI_CONFIG, put(config), len(config))
        layer_descs = [Descriptor(mt.OCI_LAYER_GZIP, _digest(name), size) for name, _, size in layers]
        manifest = build_manifest(layer_descs, config=config_desc)
        entries.append(
            Descriptor(mt.OCI_MANIFEST, put(manifest), len(manifest), {mt.ANNOTATION_REF_NAME: f"img{i:05d}"})
        )
    with open(os.path.join(root, "oci-layout"), "w") as fh:
        json.dump({"imageLayoutVersion": "1.0.0"}, fh)
    with open(os.path.join(root, "index.json"), "wb") as fh:
        fh.write(build_index(entries))


# -- the measured run (in a child process, so its peak RSS is its own) -------------------


def child_run(layout: str, by: str, weighted: bool) -> dict[str, Any]:
    import ocikit
    from ocikit.similarity.collect import collect_images

    t0 = time.perf_counter()
    images = collect_images(repositories=[f"oci:{layout}"], by=by)
    t1 = time.perf_counter()
    from ocikit.similarity.api import compare

    result = compare(images, by=by, weighted=weighted)
    t2 = time.perf_counter()
    order = result.order
    t3 = time.perf_counter()
    assert len(order) == len(images) and ocikit.similarity is not None
    return {
        "images": len(images),
        "collect_s": t1 - t0,
        "matrix_and_summary_s": t2 - t1,
        "cluster_order_s": t3 - t2,
        "total_s": t3 - t0,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "mean_jaccard": result.summary["mean_similarity"],
        "fraction_unique": result.summary["fraction_unique"],
    }


def run_child(layout: str, by: str, weighted: bool) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", layout, "--by", by] + (["--weighted"] if weighted else []),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


# -- baseline ------------------------------------------------------------------------------


def naive_jaccard(sets: list[set[str]]) -> list[list[float]]:
    """What the 2024 study's script does: a Python set intersection and union per pair."""
    out = []
    for a in sets:
        row = []
        for b in sets:
            union = len(a | b)
            row.append(len(a & b) / union if union else 1.0)
        out.append(row)
    return out


def baseline(layout: str, subset: int) -> dict[str, Any]:
    from ocikit.similarity.api import compare
    from ocikit.similarity.collect import collect_images

    images = collect_images(repositories=[f"oci:{layout}"])
    part = images[:subset]
    compare(images[:3])  # import numpy/scipy outside the timed region
    sets = [set(image.layers) for image in part]
    t0 = time.perf_counter()
    naive = naive_jaccard(sets)
    naive_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = compare(part)
    ours_subset_s = time.perf_counter() - t0
    worst = max(abs(naive[i][j] - float(ours.matrix[i, j])) for i in range(len(part)) for j in range(len(part)))
    t0 = time.perf_counter()
    compare(images)
    ours_all_s = time.perf_counter() - t0
    extrapolated = naive_s * (len(images) / len(part)) ** 2
    return {
        "subset": len(part),
        "naive_subset_s": naive_s,
        "ocikit_subset_s": ours_subset_s,
        "naive_extrapolated_all_s": extrapolated,
        "ocikit_all_s": ours_all_s,
        "max_abs_difference": worst,
    }


# -- registry fetch concurrency ------------------------------------------------------------


class LatencyProxy:
    """A TCP relay that holds every client→registry chunk for ``delay`` seconds.

    Loopback has no round-trip time, so on it a sequential fetch is bound by CPU, not by
    waiting; this relay adds a fixed delay to each request (a request is one chunk) to
    show what concurrency buys against a registry that is 10 ms away. A benchmark device,
    not a test fake: no local tool adds latency to one port without root.
    """

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        import socket
        import threading

        self.upstream, self.delay = upstream, delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._threading.Thread(target=self._pump, args=(client, server, self.delay), daemon=True).start()
            self._threading.Thread(target=self._pump, args=(server, client, 0.0), daemon=True).start()

    @staticmethod
    def _pump(source: Any, target: Any, delay: float) -> None:
        try:
            while chunk := source.recv(1 << 16):
                if delay:
                    time.sleep(delay)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


def push_fetch_images(host: str, count: int) -> list[str]:
    """``count`` distinct small image manifests (they differ by an annotation), tagged."""
    from concurrent.futures import ThreadPoolExecutor

    from ocikit.content.base import push_bytes, push_manifest
    from ocikit.content.open import open_store

    repo = f"{host}/bench/similarity"
    store, _ = open_store(repo)
    layers = [push_bytes(store, mt.OCI_LAYER_GZIP, f"layer {i}".encode()) for i in range(10)]
    config = push_bytes(store, mt.OCI_CONFIG, canonical_json({"rootfs": {"diff_ids": [], "type": "layers"}}))

    def push_one(i: int) -> None:
        raw = build_manifest(layers, config=config, annotations={"n": str(i)})
        push_manifest(store, raw, tag=f"img{i:05d}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(push_one, range(count)))
    return [f"{repo}:img{i:05d}" for i in range(count)]


def registry_fetch(count: int, latency: float) -> dict[str, Any] | None:
    from ocikit.testing.registry import RegistryServer, registry_available

    if not registry_available():
        print("registry: skipped (docker-registry is not installed)")
        return None
    from ocikit.similarity.collect import DEFAULT_CONCURRENCY, collect_images

    default = DEFAULT_CONCURRENCY
    timings: dict[str, float] = {}
    with RegistryServer() as server:
        refs = push_fetch_images(server.host, count)
        proxy = LatencyProxy(("127.0.0.1", server.port), latency)
        try:
            for label, host in (("loopback", server.host), ("latency", proxy.host)):
                for workers in (1, default):
                    names = [ref.replace(server.host, host, 1) for ref in refs]
                    t0 = time.perf_counter()
                    got = collect_images(names, concurrency=workers, use_cache=False)
                    timings[f"{label}_{workers}"] = time.perf_counter() - t0
                    assert len(got) == count
        finally:
            proxy.close()
    return {"count": count, "default": default, "latency": latency, **timings}


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--subset", type=int, default=1_000)
    parser.add_argument("--registry-images", type=int, default=1_000)
    parser.add_argument("--skip-registry", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="round trip added by the relay")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--by", default="digest", help=argparse.SUPPRESS)
    parser.add_argument("--weighted", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_run(args.child, args.by, args.weighted)))
        return

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings scale with it)")
    workdir = tempfile.mkdtemp(prefix="ocikit-bench-similarity-")
    try:
        layout = os.path.join(workdir, "layout")
        t0 = time.perf_counter()
        images = synthetic_images(args.images)
        write_layout(layout, images)
        print(f"generated {args.images} images in an OCI layout in {time.perf_counter() - t0:.1f} s")
        for by, weighted in (("digest", False), ("diff-id", True)):
            run = run_child(layout, by, weighted)
            report_run(by, weighted, run)
        base = baseline(layout, args.subset)
        report_baseline(base)
        if not args.skip_registry:
            fetch = registry_fetch(args.registry_images, args.latency_ms / 1000)
            if fetch:
                report_fetch(fetch)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def report_run(by: str, weighted: bool, run: dict[str, Any]) -> None:
    label = f"by {by}" + (" weighted" if weighted else "")
    ok_time = "OK" if run["total_s"] < GOAL_SECONDS else "MISSED"
    ok_mem = "OK" if run["peak_rss_bytes"] < GOAL_BYTES else "MISSED"
    print(
        f"similarity {label}, {run['images']} images: collect {run['collect_s']:.2f} s, "
        f"matrix+summary {run['matrix_and_summary_s']:.2f} s, cluster order {run['cluster_order_s']:.2f} s; "
        f"total {run['total_s']:.2f} s = {run['total_s'] / GOAL_SECONDS:.2f} of the 10 s goal [{ok_time}]; "
        f"peak RSS {run['peak_rss_bytes'] / MIB:.0f} MiB = {run['peak_rss_bytes'] / GOAL_BYTES:.2f} "
        f"of the 2 GiB goal [{ok_mem}]; mean Jaccard {run['mean_jaccard']['without_diagonal']:.3f} "
        f"(off-diagonal), fraction unique {run['fraction_unique']:.3f}"
    )


def report_baseline(base: dict[str, Any]) -> None:
    print(
        f"baseline: naive pairwise sets on {base['subset']} images {base['naive_subset_s']:.2f} s vs "
        f"ocikit {base['ocikit_subset_s']:.3f} s (ratio {base['naive_subset_s'] / base['ocikit_subset_s']:.0f}x); "
        f"extrapolated to all: naive {base['naive_extrapolated_all_s']:.0f} s vs ocikit matrix+summary "
        f"{base['ocikit_all_s']:.2f} s measured (ratio {base['naive_extrapolated_all_s'] / base['ocikit_all_s']:.0f}x); "
        f"max |difference| {base['max_abs_difference']:.1e}"
    )


def report_fetch(fetch: dict[str, Any]) -> None:
    default, count = fetch["default"], fetch["count"]
    for label, what in (("loopback", "loopback"), ("latency", f"+{fetch['latency'] * 1000:.0f} ms per request")):
        one, many = fetch[f"{label}_1"], fetch[f"{label}_{default}"]
        print(
            f"registry fetch of {count} manifests ({what}, no cache): concurrency 1 {one:.2f} s, "
            f"concurrency {default} (default) {many:.2f} s: ratio {one / many:.1f}x"
        )
    if "latency_1" in fetch:
        floor = 2 * count * fetch["latency"]  # HEAD + GET per image, one after another
        print(
            f"  sequential round-trip floor {floor:.1f} s; with {default} workers it is "
            f"{floor / default:.1f} s, measured {fetch[f'latency_{default}']:.2f} s"
        )


if __name__ == "__main__":
    main()
