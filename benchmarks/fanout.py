"""A cluster pulling one image at once: N pullers through a pull-through cache, in one run.

The small corpus (``corpus.py``) is published as a one-layer zstd image into an upstream
docker-registry U. A docker-registry in ``proxy:`` mode (the mirror M, fresh and cold for
every case) fetches from U2, a second registry process on U's storage, so the access logs
tell who asked whom: U's what went straight to the upstream, U2's what the mirror fetched.
Cases, alternating for ``--rounds``:

* ``ocikit via mirror``  N ``ocikit pull`` processes at once, each with its own node cache and
                         destination on ``--dest-dir``, the mirror given by containerd's
                         ``hosts.toml`` (``--hosts-dir``), as with Spegel or Dragonfly
* ``curl via mirror``    the control: N plain HTTP clients (``curl``) fetching the same blob
                         through a cold mirror at once: what the mirror itself costs U
* ``ocikit direct``      N ``ocikit pull`` processes straight from U (no mirror)
* ``ocikit, one``        one pull straight from U (the unit)

Printed per case: wall time until the last puller finished, CPU seconds of the pullers (not
the registries'), blob GETs the upstream served (U + U2) and how many of the pullers' blob
GETs went straight to U. docker-registry 2.8's proxy fetches a cold blob twice, and once
more for every request that misses while that fetch is in flight, so the control is the
bound to compare with, not 1. Usage::

    python benchmarks/fanout.py [--pullers 8] [--rounds 2] [--dest-dir /dev/shm] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bytecode import compile_ocikit  # noqa: E402
from corpus import small_corpus_path  # noqa: E402
from peers import publish_images  # noqa: E402
from pull import prepare  # noqa: E402

from ocikit.digest import digest_file  # noqa: E402
from ocikit.testing.registry import RegistryServer  # noqa: E402

OCIKIT_PULL = [sys.executable, "-m", "ocikit_cli.main", "-q", "pull"]


def write_hosts(base: str, upstream: RegistryServer, mirror: RegistryServer) -> str:
    """containerd's certs.d directory: the mirror first (pull, resolve), the upstream as server."""
    hosts = os.path.join(base, "certs.d", upstream.host)
    shutil.rmtree(os.path.join(base, "certs.d"), ignore_errors=True)
    os.makedirs(hosts)
    with open(os.path.join(hosts, "hosts.toml"), "w") as fh:
        fh.write(f'server = "{upstream.url}"\n\n[host."{mirror.url}"]\n  capabilities = ["pull", "resolve"]\n')
    return os.path.join(base, "certs.d")


def run_all(commands: list[list[str]]) -> tuple[float, float]:
    """Start every command at once; wall seconds until the last ends, CPU seconds of all."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for command in commands]
    codes = [process.wait() for process in processes]
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if any(codes):
        raise SystemExit(f"a puller failed: exit codes {codes}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def count(server: RegistryServer, digest: str) -> int:
    time.sleep(0.3)  # the access log line is written as the response ends
    return server.blob_gets().count(digest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pullers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dest-dir", default="/dev/shm")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "ocikit-bench-peers"))
    parser.add_argument("--corpus", default="")
    args = parser.parse_args()
    compile_ocikit()  # time ocikit as installed, not recompiled per run

    os.makedirs(args.work_dir, exist_ok=True)
    paths = prepare(args.work_dir, args.corpus or small_corpus_path())
    layer, _ = digest_file(paths["zstd"])
    base = tempfile.mkdtemp(prefix="ocikit-bench-fanout-")
    dest = os.path.join(args.dest_dir, f"ocikit-bench-fanout-{os.getpid()}")
    upstream = RegistryServer(workdir=os.path.join(base, "u"), access_log=True)
    behind = RegistryServer(workdir=os.path.join(base, "u2"), access_log=True, storage=upstream.storage)
    results: dict[str, list[dict[str, float]]] = {}
    try:
        publish_images(args.work_dir, paths, upstream.host)
        reference = f"{upstream.host}/bench/peers:zstd"

        def pullers(n: int, hosts_dir: str = "") -> list[list[str]]:
            mirror_flags = ["--hosts-dir", hosts_dir] if hosts_dir else []
            return [OCIKIT_PULL + mirror_flags + ["--cache-dir", f"{dest}/cache{i}", reference, f"{dest}/tree{i}"]
                    for i in range(n)]

        def case(name: str, commands_for, with_mirror: bool) -> None:
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest)
            mirror = RegistryServer(workdir=os.path.join(base, f"m-{time.monotonic_ns()}"), access_log=True,
                                    proxy_remote=behind.url) if with_mirror else None
            direct_before, behind_before = count(upstream, layer), count(behind, layer)
            try:
                hosts_dir = write_hosts(base, upstream, mirror) if mirror else ""
                wall, cpu = run_all(commands_for(hosts_dir))
                direct, fetched = count(upstream, layer) - direct_before, count(behind, layer) - behind_before
            finally:
                if mirror:
                    mirror.close()
                shutil.rmtree(dest, ignore_errors=True)
            row = {"wall": wall, "cpu": cpu, "upstream_gets": direct + fetched, "direct_gets": direct}
            results.setdefault(name, []).append(row)
            print(f"  {name:22s} {wall:7.2f} s  cpu {cpu:6.2f} s  upstream served the layer {direct + fetched:2d}x "
                  f"({direct} straight from pullers)", file=sys.stderr)

        n = args.pullers
        blob_url = f"/v2/bench/peers/blobs/{layer}"
        for _ in range(max(1, args.rounds)):
            case("ocikit via mirror", lambda hosts: pullers(n, hosts), True)
            case("curl via mirror", lambda hosts: [["curl", "-sf", "-o", "/dev/null", _mirror_url(hosts) + blob_url] for _ in range(n)], True)
            case("ocikit direct", lambda hosts: pullers(n), False)
            case("ocikit, one", lambda hosts: pullers(1), False)
    finally:
        upstream.close()
        behind.close()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
    report(results, n, os.path.getsize(paths["zstd"]))


def _mirror_url(hosts_dir: str) -> str:
    """The mirror URL written into the one hosts.toml under ``hosts_dir``."""
    (registry,) = os.listdir(hosts_dir)
    with open(os.path.join(hosts_dir, registry, "hosts.toml")) as fh:
        return fh.read().split('[host."', 1)[1].split('"', 1)[0]


def report(results: dict[str, list[dict[str, float]]], n: int, layer_size: int) -> None:
    print(f"\nfan-out: {n} pullers, one {layer_size / 1e6:.0f} MB zstd layer, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f} at the end")
    best = {name: min(rows, key=lambda row: row["wall"]) for name, rows in results.items()}
    for name, rows in results.items():
        served = [int(row["upstream_gets"]) for row in rows]
        straight = [int(row["direct_gets"]) for row in rows]
        print(f"{name:22s} {best[name]['wall']:7.2f} s  cpu {best[name]['cpu']:6.2f} s  "
              f"upstream served the layer {served} times per round, straight from pullers {straight}")
    ratios = {
        "N via mirror / one pull (wall)": best["ocikit via mirror"]["wall"] / best["ocikit, one"]["wall"],
        "N direct / one pull (wall)": best["ocikit direct"]["wall"] / best["ocikit, one"]["wall"],
        "upstream GETs: ocikit via mirror (max) / curl control (max)":
            max(r["upstream_gets"] for r in results["ocikit via mirror"]) / max(r["upstream_gets"] for r in results["curl via mirror"]),
    }
    for name, value in ratios.items():
        print(f"{name:60s} {value:5.2f}")
    print(json.dumps({"runs": results, "ratios": ratios}, sort_keys=True))


if __name__ == "__main__":
    main()
