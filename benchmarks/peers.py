"""Pull speed against real peers and the floor, on the same one-layer image, in one run.

The corpus (``--corpus``; default the small corpus of ``corpus.py``: the Python standard
library, about 250 MB) is packed once with GNU tar, compressed with zstd and gzip, and
published as two *container images* (a real image config with ``rootfs.diff_ids``, so every
peer accepts them; the layer also carries the ORAS title/unpack annotations so the oras
Python client unpacks it) into a docker-registry this script starts. Then, alternating,
each into a fresh directory on ``--dest-dir`` (default ``/dev/shm``):

* ``floor``               ``tar -xf corpus.tar`` of the already-decompressed tar
* ``ocikit``              ``ocikit pull REG/bench/peers:{zstd,gzip} DEST`` (verified, safe, atomic)
* ``ocikit stdlib zlib`` the same gzip pull inflated by the standard library (``OCIKIT_INFLATE=zlib``)
* ``ctr``                 containerd 1.6 ``ctr images pull`` (fetch + unpack, native snapshotter),
                          against a containerd started here (``ocikit.testing.containerd``) on a
                          private socket, its root on the destination's filesystem, a fresh one
                          per run (started and stopped outside the timing; its CPU is counted)
* ``skopeo+umoci``        ``skopeo copy docker://… oci:DEST/layout`` then ``umoci unpack`` (gzip
                          only: umoci 0.4 cannot unpack zstd)
* ``oras-py``             ``oras.client.OrasClient().pull`` (gzip only; ``--skip-oras`` leaves it out)

Each case is a separate process tree; wall time, CPU seconds (user + system of the tree,
plus containerd's for ``ctr``) and peak RSS (the largest process of the tree) are printed
per run, then the best run of each, and the ratios the goals are stated in: ocikit ≤ 1.25x
the floor on zstd, ≤ 1.4x on gzip, and at least 2x faster than the best peer on both. The
registry serves every case alike and is not counted. Usage::

    python benchmarks/peers.py [--repeat 3] [--dest-dir /dev/shm] [--corpus DIR] [--skip-oras]
    python benchmarks/peers.py --scale 4 --only ocikit --repeat 1   # peak RSS must not grow
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bytecode import compile_ocikit  # noqa: E402
from corpus import scaled, small_corpus_path  # noqa: E402
from pull import prepare  # noqa: E402

import ocikit  # noqa: E402
from ocikit.content.base import push_bytes, push_manifest  # noqa: E402
from ocikit.content.layout import LayoutStore  # noqa: E402
from ocikit.digest import digest_file  # noqa: E402
from ocikit.spec import mediatypes as mt  # noqa: E402
from ocikit.spec.descriptor import Descriptor  # noqa: E402
from ocikit.spec.manifest import build_manifest, canonical_json  # noqa: E402
from ocikit.testing.containerd import ContainerdServer  # noqa: E402

OCIKIT_PULL = [sys.executable, "-m", "ocikit_cli.main", "-q", "pull"]
ORAS_PULL = (
    "import sys, oras.client; "
    "oras.client.OrasClient(hostname=sys.argv[1], insecure=True).pull(target=sys.argv[2], outdir=sys.argv[3])"
)
FLOOR = "floor (tar -x of the tar)"


@dataclass
class Run:
    wall: float
    cpu: float
    peak_rss_mb: float


def publish_images(work: str, paths: dict[str, str], registry: str) -> None:
    """``REG/bench/peers:zstd`` and ``:gzip``: one-layer images of the corpus tar."""
    layout = LayoutStore(os.path.join(work, "peers-layout"))
    tar_digest, _ = digest_file(paths["tar"])
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [tar_digest]},
    }
    config_desc = push_bytes(layout, mt.OCI_CONFIG, canonical_json(config))
    for kind, media_type in (("zstd", mt.OCI_LAYER_ZSTD), ("gzip", mt.OCI_LAYER_GZIP)):
        digest, size = digest_file(paths[kind])
        notes = {mt.ANNOTATION_TITLE: paths["title"], mt.ORAS_ANNOTATION_DIGEST: tar_digest, mt.ORAS_ANNOTATION_UNPACK: "true"}
        desc = Descriptor(media_type, digest, size, notes)
        with open(paths[kind], "rb") as fh:
            layout.push(desc, fh)
        push_manifest(layout, build_manifest([desc], config=config_desc), tag=kind)
        ocikit.copy(f"oci:{layout.root}:{kind}", f"{registry}/bench/peers:{kind}")


def _cpu_of(pid: int) -> float:
    """User + system seconds of a running process (from /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_tree(command: list[str] | str) -> Run:
    """Run one command (a shell line for pipelines); its tree's wall, CPU and peak RSS.

    GNU time reports the peak RSS: measured from here, a forked child would count this
    Python process's own memory."""
    with tempfile.NamedTemporaryFile("r") as rss:
        argv = command if isinstance(command, list) else ["sh", "-c", command]
        started = time.perf_counter()
        process = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv], stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), command)
        peak_kb = int(rss.read().split()[-1])
    return Run(wall, usage.ru_utime + usage.ru_stime, peak_kb / 1024)


def measure(name: str, command: list[str] | str, dest: str, host: str) -> Run:
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    subprocess.run(["sync"], check=False)
    if not name.startswith("ctr"):
        try:
            return run_tree(command)
        finally:
            shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(os.path.join(dest, "containerd"))
    daemon = ContainerdServer(os.path.join(dest, "containerd"))  # the unpacked tree lands under its root
    try:
        daemon_cpu = _cpu_of(daemon.pid)
        pull = ["ctr", "-a", daemon.socket, "-n", "bench", "images", "pull", "--plain-http", "--snapshotter", "native"]
        run = run_tree([*pull, f"{host}/bench/peers:{command}"])
        run.cpu += _cpu_of(daemon.pid) - daemon_cpu
        run.peak_rss_mb = max(run.peak_rss_mb, _peak_rss_mb(daemon.pid))
        return run
    finally:
        daemon.close()
        shutil.rmtree(dest, ignore_errors=True)


def cases(paths: dict[str, str], host: str, dest: str, skip_oras: bool) -> dict[str, list[str] | str]:
    skopeo_umoci = (
        f"skopeo copy -q --src-tls-verify=false docker://{host}/bench/peers:gzip oci:{dest}/layout:img"
        f" && umoci unpack --image {dest}/layout:img {dest}/bundle"
    )
    found: dict[str, list[str] | str] = {
        FLOOR: ["tar", "-C", dest, "-xf", paths["tar"]],
        "ocikit (zstd)": OCIKIT_PULL + [f"{host}/bench/peers:zstd", dest],
        "ocikit (gzip)": OCIKIT_PULL + [f"{host}/bench/peers:gzip", dest],
        # the standard library's inflate (the fallback), to show what zlib-ng buys
        "ocikit stdlib zlib (gzip)": ["env", "OCIKIT_INFLATE=zlib", *OCIKIT_PULL, f"{host}/bench/peers:gzip", dest],
        "ctr (zstd)": "zstd",  # the tag; the command is made per run for a fresh containerd
        "ctr (gzip)": "gzip",
        "skopeo+umoci (gzip)": skopeo_umoci,
    }
    if not skip_oras:
        found["oras-py (gzip)"] = [sys.executable, "-c", ORAS_PULL, host, f"{host}/bench/peers:gzip", dest]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest-dir", default="/dev/shm", help="where trees are unpacked (tmpfs)")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "ocikit-bench-peers"))
    parser.add_argument("--corpus", default="", help="directory to pack (default: the small corpus)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-oras", action="store_true", help="skip the (slow) oras Python client")
    parser.add_argument("--scale", type=int, default=1, help="pack this many copies of the corpus (memory check)")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this (e.g. ocikit)")
    args = parser.parse_args()
    compile_ocikit()  # time ocikit as installed, not recompiled per run

    from ocikit.testing.registry import RegistryServer

    work_dir = args.work_dir + (f"-x{args.scale}" if args.scale > 1 else "")
    os.makedirs(work_dir, exist_ok=True)
    paths = prepare(work_dir, scaled(args.corpus or small_corpus_path(), args.scale))
    registry_dir = tempfile.mkdtemp(prefix="ocikit-bench-registry-")
    server = RegistryServer(workdir=registry_dir)
    best: dict[str, Run] = {}
    try:
        publish_images(work_dir, paths, server.host)
        dest = os.path.join(args.dest_dir, f"ocikit-bench-peers-{os.getpid()}")
        todo = {name: command for name, command in cases(paths, server.host, dest, args.skip_oras).items()
                if name == FLOOR or args.only in name}
        for _ in range(max(1, args.repeat)):
            for name, command in todo.items():
                run = measure(name, command, dest, server.host)
                if run.wall < best.get(name, Run(float("inf"), 0, 0)).wall:
                    best[name] = run
                print(f"  {name:26s} {run.wall:7.2f} s  cpu {run.cpu:6.2f} s  rss {run.peak_rss_mb:6.0f} MB", file=sys.stderr)
    finally:
        server.close()
        shutil.rmtree(registry_dir, ignore_errors=True)
    report(best, paths, args.dest_dir)


def report(best: dict[str, Run], paths: dict[str, str], dest_dir: str) -> None:
    floor = best[FLOOR].wall
    print(f"\npeers benchmark: {os.path.getsize(paths['tar']) / 1e6:.0f} MB tar, zstd {os.path.getsize(paths['zstd']) / 1e6:.0f} MB, "
          f"gzip {os.path.getsize(paths['gzip']) / 1e6:.0f} MB, unpacked on {dest_dir}; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end")
    for name, run in best.items():
        print(f"{name:26s} {run.wall:7.2f} s  {run.wall / floor:5.2f}x floor  cpu {run.cpu:6.2f} s  peak rss {run.peak_rss_mb:5.0f} MB")
    ratios = {
        f"ocikit {kind} / floor (goal <= {goal})": best[f"ocikit ({kind})"].wall / floor
        for kind, goal in (("zstd", 1.25), ("gzip", 1.4)) if f"ocikit ({kind})" in best
    }
    for kind in ("zstd", "gzip"):
        peers = {name: run for name, run in best.items() if name.endswith(f"({kind})") and not name.startswith("ocikit")}
        if not peers or f"ocikit ({kind})" not in best:
            continue
        fastest = min(peers, key=lambda name: peers[name].wall)
        ratios[f"best peer {kind} ({fastest}) / ocikit (goal >= 2)"] = peers[fastest].wall / best[f"ocikit ({kind})"].wall
        # CPU seconds do not depend on what else runs on the machine as much as wall time does
        leanest = min(peers, key=lambda name: peers[name].cpu)
        ratios[f"cpu: leanest peer {kind} ({leanest}) / ocikit"] = peers[leanest].cpu / best[f"ocikit ({kind})"].cpu
    for name, value in ratios.items():
        print(f"{name:58s} {value:5.2f}")
    print(json.dumps({"runs": {n: vars(r) for n, r in best.items()}, "ratios": ratios}, sort_keys=True))


if __name__ == "__main__":
    main()
