"""Pull benchmark: ocikit pull vs oras-py vs curl | tar vs the tar -x floor, on the standard corpus.

The corpus (a copy of the Python prefix, ~50k files, ~0.9 GB; ``benchmarks/corpus.py``) is
packed once with GNU tar, compressed with zstd and gzip, and pushed as two ORAS-style
artifacts into a docker-registry this script starts. Then, into a fresh directory each
time (on ``--dest-dir``, default the system temp dir; try ``/dev/shm`` for a memory-backed
emptyDir):

* ``floor``           ``tar -xf corpus.tar`` of the already-decompressed tar (file creation only)
* ``curl|zstd|tar``   the zstd blob straight from the registry through zstd -d into tar -x
* ``curl|tar -xz``    the same for the gzip blob
* ``ocikit zstd``     ``ocikit pull REG/bench/corpus:zstd DEST`` (verified, safe, atomic, marker)
* ``ocikit gzip``     ``ocikit pull REG/bench/corpus:gzip DEST``
* ``oras-py gzip``    ``oras.client.OrasClient().pull(target, outdir=DEST)``

Each is a separate process; the best of ``--repeat`` runs is reported (wall time, and the CPU
time of all its processes) with the ratios the project's goals are stated in (ocikit within
1.25x of the floor, at least 5x faster than oras-py). On a shared machine the wall times
depend on what else runs: the floor is one single-threaded process, ocikit needs two cores. Usage::

    python benchmarks/pull.py [--dest-dir /dev/shm] [--repeat 1] [--skip-oras]
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
from corpus import corpus_path  # noqa: E402

from ocikit.content.base import push_bytes, push_manifest  # noqa: E402
from ocikit.content.layout import LayoutStore  # noqa: E402
from ocikit.digest import digest_file  # noqa: E402
from ocikit.spec import mediatypes as mt  # noqa: E402
from ocikit.spec.descriptor import EMPTY_DESCRIPTOR, Descriptor  # noqa: E402
from ocikit.spec.manifest import build_manifest  # noqa: E402


def prepare(work: str, corpus: str) -> dict[str, str]:
    """corpus.tar (entries under <title>/), corpus.tar.zst, corpus.tar.gz — made once per work dir."""
    parent, title = os.path.split(corpus.rstrip("/"))
    paths = {"tar": os.path.join(work, "corpus.tar"), "zstd": os.path.join(work, "corpus.tar.zst"),
             "gzip": os.path.join(work, "corpus.tar.gz"), "title": title}
    if not os.path.exists(paths["tar"]):
        print(f"packing {corpus} ...", file=sys.stderr)
        subprocess.run(["tar", "-C", parent, "--sort=name", "-cf", paths["tar"] + ".tmp", title], check=True)
        os.rename(paths["tar"] + ".tmp", paths["tar"])
    if not os.path.exists(paths["zstd"]):
        subprocess.run(["zstd", "-q", "-3", "-T0", paths["tar"], "-o", paths["zstd"]], check=True)
    if not os.path.exists(paths["gzip"]):
        with open(paths["gzip"] + ".tmp", "wb") as out:
            subprocess.run(["gzip", "-6", "-n", "-c", paths["tar"]], stdout=out, check=True)
        os.rename(paths["gzip"] + ".tmp", paths["gzip"])
    return paths


def publish(work: str, paths: dict[str, str], registry: str) -> dict[str, str]:
    """Store both artifacts in an OCI layout and copy them to the registry; return blob digests."""
    import ocikit

    layout = LayoutStore(os.path.join(work, "layout"))
    tar_digest, _ = digest_file(paths["tar"])
    digests = {}
    for kind, media_type in (("zstd", mt.OCI_LAYER_ZSTD), ("gzip", mt.OCI_LAYER_GZIP)):
        digest, size = digest_file(paths[kind])
        # oras-py unpacks tar+gzip layers with a title; Go oras and ocikit follow the unpack annotation
        notes = {mt.ANNOTATION_TITLE: paths["title"], mt.ORAS_ANNOTATION_DIGEST: tar_digest, mt.ORAS_ANNOTATION_UNPACK: "true"}
        desc = Descriptor(media_type, digest, size, notes)
        with open(paths[kind], "rb") as fh:
            layout.push(desc, fh)
        push_bytes(layout, mt.OCI_EMPTY, mt.EMPTY_JSON)
        push_manifest(layout, build_manifest([desc], config=EMPTY_DESCRIPTOR, artifact_type="application/vnd.ocikit.bench.v1"), tag=kind)
        ocikit.copy(f"oci:{layout.root}:{kind}", f"{registry}/bench/corpus:{kind}")
        digests[kind] = digest
    return digests


def timed(command: list[str] | str, dest: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of all processes of the command)."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    subprocess.run(["sync"], check=False)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, shell=isinstance(command, str), stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest-dir", default=tempfile.gettempdir(), help="where the trees are extracted")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "ocikit-bench-pull"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-oras", action="store_true", help="skip the (slow) oras-py baseline")
    args = parser.parse_args()
    compile_ocikit()  # time ocikit as installed, not recompiled per run

    from ocikit.testing.registry import RegistryServer

    os.makedirs(args.work_dir, exist_ok=True)
    paths = prepare(args.work_dir, corpus_path())
    registry_dir = tempfile.mkdtemp(prefix="ocikit-bench-registry-")
    server = RegistryServer(workdir=registry_dir)
    try:
        digests = publish(args.work_dir, paths, server.host)
        dest = os.path.join(args.dest_dir, f"ocikit-bench-dest-{os.getpid()}")
        blob_url = f"{server.url}/v2/bench/corpus/blobs"
        ocikit_cli = [sys.executable, "-m", "ocikit_cli.main", "-q", "pull"]
        oras_py = (
            "import sys, oras.client; "
            "oras.client.OrasClient(hostname=sys.argv[1], insecure=True).pull(target=sys.argv[2], outdir=sys.argv[3])"
        )
        cases = {
            "floor (tar -x of the tar)": ["tar", "-C", dest, "-xf", paths["tar"]],
            "curl|zstd -d|tar -x": f"curl -sf {blob_url}/{digests['zstd']} | zstd -dc | tar -C {dest} -x",
            "curl|tar -xz": f"curl -sf {blob_url}/{digests['gzip']} | tar -C {dest} -xz",
            "ocikit pull (zstd)": ocikit_cli + [f"{server.host}/bench/corpus:zstd", dest],
            "ocikit pull (gzip)": ocikit_cli + [f"{server.host}/bench/corpus:gzip", dest],
            # the writer-thread pool (off by default on two cores) for comparison
            "ocikit zstd, 2 writers": ["env", "OCIKIT_WRITER_THREADS=2", *ocikit_cli, f"{server.host}/bench/corpus:zstd", dest],
        }
        if not args.skip_oras:
            cases["oras-py pull (gzip)"] = [sys.executable, "-c", oras_py, server.host, f"{server.host}/bench/corpus:gzip", dest]
        results: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for _ in range(max(1, args.repeat)):
            for name, command in cases.items():
                seconds, cpu_seconds = timed(command, dest)
                if seconds < results.get(name, float("inf")):
                    results[name], cpu[name] = seconds, cpu_seconds
                print(f"  {name:28s} {seconds:7.2f} s  (cpu {cpu_seconds:6.2f} s)", file=sys.stderr)
    finally:
        server.close()
        shutil.rmtree(registry_dir, ignore_errors=True)
    report(results, cpu, paths, args.dest_dir)


def report(results: dict[str, float], cpu: dict[str, float], paths: dict[str, str], dest_dir: str) -> None:
    floor = results["floor (tar -x of the tar)"]
    print(f"\npull benchmark: {os.path.getsize(paths['tar']) / 1e6:.0f} MB tar, "
          f"zstd {os.path.getsize(paths['zstd']) / 1e6:.0f} MB, gzip {os.path.getsize(paths['gzip']) / 1e6:.0f} MB, "
          f"extracted on {dest_dir}")
    print(f"on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (other work competes for the cores)")
    for name, seconds in results.items():
        print(f"{name:28s} {seconds:7.2f} s   {seconds / floor:5.2f}x floor   cpu {cpu[name]:6.2f} s")
    ratios = {
        "ocikit zstd / floor (goal <= 1.25)": results["ocikit pull (zstd)"] / floor,
        "ocikit zstd / curl|zstd|tar": results["ocikit pull (zstd)"] / results["curl|zstd -d|tar -x"],
        "ocikit gzip / curl|tar -xz": results["ocikit pull (gzip)"] / results["curl|tar -xz"],
    }
    if "oras-py pull (gzip)" in results:
        ratios["oras-py gzip / ocikit gzip (goal >= 5)"] = results["oras-py pull (gzip)"] / results["ocikit pull (gzip)"]
        ratios["oras-py gzip / ocikit zstd"] = results["oras-py pull (gzip)"] / results["ocikit pull (zstd)"]
    for name, value in ratios.items():
        print(f"{name:40s} {value:5.2f}")
    print(json.dumps({"seconds": results, "cpu_seconds": cpu, "ratios": ratios}, sort_keys=True))


if __name__ == "__main__":
    main()
