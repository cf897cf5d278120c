"""push-view speed, side by side with its baselines, in one run.

On the standard corpus (a copy of this Python's prefix, benchmarks/corpus.py), measures:

* floor: ``tar -c | zstd -T0 -3 > /dev/null`` (pack and compress, no upload);
* registry floor: ``tar -c | zstd -T0 -3 | curl -T - <upload URL>?digest=…``, the same bytes
  in one monolithic ``PUT`` into the same docker-registry (the digest is computed once, before
  the rounds: GNU tar and zstd are deterministic), the fair floor for a push into a registry;
* layout floor: ``tar -c | zstd -T0 -3 > FILE`` on ``--dest-dir`` (tmpfs), against
  ``ocikit push-view CORPUS oci:DEST/layout:v1`` there;
* ocikit: ``ocikit push-view CORPUS REGISTRY/bench/ocikit:v1 --no-compat`` (the compatibility
  scan is its own feature) into a docker-registry 2.8
  started here (``ocikit.testing.registry.RegistryServer``), fresh digest cache and a fresh
  repository, interleaved with the floor for ``--rounds`` rounds (best kept: the machine may
  be shared); then the same push again (the re-push, which should upload nothing);
* oras-py: the ``oras`` Python client pushing the same directory to the same registry;
* tar writers: producing the uncompressed tar stream with ocikit's writer vs ``tarfile``.

Prints wall and CPU times (user + system of each command and its children; the registry,
a separate process, is not counted), peak RSS (GNU time: the largest process), and the
ratios the goals are stated in: ocikit within 1.25x of the registry floor and 1.2x of the
layout floor, at least 20x faster than oras-py. ``--skip-oras`` leaves out the slow
baseline; ``--small`` pushes the small corpus (the standard library, ~250 MB).

    python benchmarks/push.py [--corpus DIR | --small] [--rounds N] [--dest-dir /dev/shm] [--skip-oras] [--skip-tar-writers]
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
from corpus import corpus_path, scaled, small_corpus_path

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")

ORAS_PUSH = """
import sys, oras.client
client = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)
client.push(target=sys.argv[2], files=[sys.argv[3]], disable_path_validation=True)
"""

TARFILE_STREAM = """
import os, sys, tarfile
class Null:
    def write(self, data): return len(data)
def reset(info):
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
with tarfile.open(fileobj=Null(), mode="w|", format=tarfile.PAX_FORMAT) as archive:
    archive.add(sys.argv[1], arcname=".", filter=reset)
"""

OCIKIT_STREAM = """
import sys
from ocikit.spack.view import scan_view
from ocikit.spack.layering import plan_layers
from ocikit.push.stream import LayerReader, Relocation
view = scan_view(sys.argv[1])
for plan in plan_layers(view, "packages"):
    for frame in LayerReader(view.source, plan, Relocation(view.real_root, "")).frames():
        pass
"""


def timed(command: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system of the command and its children), the result.
    The peak RSS of the command's largest process goes to ``PEAK_RSS_MB[command[0]]``."""
    with tempfile.NamedTemporaryFile("r") as rss:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *command], capture_output=True, text=True, **kwargs)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak = rss.read().split()
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])}… failed: {result.stderr.strip()[-2000:]}")
    LAST_PEAK_RSS_MB[0] = int(peak[-1]) / 1024 if peak else 0.0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, result


LAST_PEAK_RSS_MB = [0.0]


def upload_url(registry: str, repository: str) -> str:
    """Open an upload session (``POST``) and return its absolute ``Location``."""
    import urllib.request

    request = urllib.request.Request(f"http://{registry}/v2/{repository}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(request) as response:
        location = response.headers["Location"]
    return location if "://" in location else f"http://{registry}{location}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None, help="directory to push (default: the standard corpus)")
    parser.add_argument("--small", action="store_true", help="push the small corpus (the standard library)")
    parser.add_argument("--scale", type=int, default=1, help="push this many copies of the corpus (memory check)")
    parser.add_argument("--dest-dir", default="/dev/shm", help="where the layout floor and layout push write (tmpfs)")
    parser.add_argument("--skip-oras", action="store_true", help="do not run the (slow) oras-py baseline")
    parser.add_argument("--skip-tar-writers", action="store_true", help="do not compare tar writers")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved floor/ocikit rounds (best is kept)")
    args = parser.parse_args()
    compile_ocikit()  # time ocikit as installed, not recompiled per run
    corpus = scaled(args.corpus or (small_corpus_path() if args.small else corpus_path()), args.scale)

    from ocikit.testing.registry import RegistryServer

    size = int(subprocess.run(["du", "-sb", corpus], capture_output=True, text=True).stdout.split()[0])
    files = sum(len(f) + len(d) for _, d, f in os.walk(corpus))
    print(f"corpus: {corpus} ({size / 1e6:.0f} MB, {files} entries), {os.cpu_count()} cores")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")

    work = tempfile.mkdtemp(prefix="ocikit-bench-")
    server = RegistryServer(workdir=os.path.join(work, "registry"))
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}

    def record(name: str, elapsed: float, seconds: float) -> None:
        # best of the rounds: the machine is shared, the minimum is the least disturbed run
        rss[name] = max(rss.get(name, 0.0), LAST_PEAK_RSS_MB[0])
        if name not in wall or elapsed < wall[name]:
            wall[name], cpu[name] = elapsed, seconds

    dest = os.path.join(args.dest_dir, f"ocikit-bench-push-{os.getpid()}")
    try:
        pack = f"tar -C '{corpus}' -c . | zstd -T0 -3 -q"
        floor = ["sh", "-c", f"{pack} > /dev/null"]
        floor_digest = "sha256:" + subprocess.run(["sh", "-c", f"{pack} | sha256sum"], capture_output=True, text=True,
                                                  check=True).stdout.split()[0]
        for round_ in range(args.rounds):  # interleaved, so all see the same machine load
            elapsed, seconds, _ = timed(floor)
            record("floor", elapsed, seconds)
            put = upload_url(server.host, f"bench/floor{round_}") + f"&digest={floor_digest}"
            record("floor_registry", *timed(["sh", "-c", f"{pack} | curl -sf -T - -X PUT '{put}'"])[:2])
            push = [OCIKIT, "-q", "push-view", corpus, f"{server.host}/bench/ocikit{round_}:v1", "--json",
                    "--no-compat", "--cache-dir", os.path.join(work, f"cache{round_}")]
            elapsed, seconds, first = timed(push)
            record("ocikit", elapsed, seconds)
            document = json.loads(first.stdout)
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest)
            record("floor_file", *timed(["sh", "-c", f"{pack} > '{dest}/layer.tar.zst'"])[:2])
            record("ocikit_layout", *timed([OCIKIT, "-q", "push-view", corpus, f"oci:{dest}/layout:v1", "--no-compat",
                                            "--cache-dir", os.path.join(work, f"layout-cache{round_}")])[:2])
            shutil.rmtree(dest, ignore_errors=True)
            print(f"round {round_ + 1}: floor {wall['floor']:.2f} s best, registry floor {wall['floor_registry']:.2f} s best, "
                  f"ocikit {elapsed:.2f} s ({document['uploadedBytes'] / 1e6:.0f} MB uploaded, {len(document['layers'])} layer(s))")
        time.sleep(2.5)  # past the digest cache's racy window for files written just now
        elapsed, seconds, again = timed(push)
        record("repush", elapsed, seconds)
        repushed = json.loads(again.stdout)["uploadedBytes"]

        if not args.skip_oras:
            elapsed, seconds, _ = timed([sys.executable, "-c", ORAS_PUSH, server.host,
                                         f"{server.host}/bench/oras:v1", corpus])
            record("oras", elapsed, seconds)
        if not args.skip_tar_writers:
            record("tar_ocikit", *timed([sys.executable, "-c", OCIKIT_STREAM, corpus])[:2])
            record("tar_tarfile", *timed([sys.executable, "-c", TARFILE_STREAM, corpus])[:2])
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)

    labels = {
        "floor": "floor: tar | zstd -T0 -3 > /dev/null",
        "floor_registry": "floor: tar | zstd | curl -T (one PUT)",
        "ocikit": "ocikit push-view -> docker-registry",
        "floor_file": "floor: tar | zstd -T0 -3 > file (tmpfs)",
        "ocikit_layout": "ocikit push-view -> oci: layout (tmpfs)",
        "repush": f"ocikit re-push, unchanged ({repushed} B uploaded)",
        "oras": "oras-py push -> docker-registry",
        "tar_ocikit": "tar stream: ocikit writer",
        "tar_tarfile": "tar stream: tarfile",
    }
    print()
    print(f"{'':46} {'wall s':>8} {'cpu s':>8} {'peak rss MB':>12}")
    for name, label in labels.items():
        if name in wall:
            print(f"{label:46} {wall[name]:8.2f} {cpu[name]:8.2f} {rss[name]:12.0f}")
    print()
    print(f"ocikit / floor       = {wall['ocikit'] / wall['floor']:.2f}x wall, "
          f"{cpu['ocikit'] / cpu['floor']:.2f}x cpu   (no upload in the floor)")
    print(f"ocikit / curl floor  = {wall['ocikit'] / wall['floor_registry']:.2f}x wall, "
          f"{cpu['ocikit'] / cpu['floor_registry']:.2f}x cpu   (goal <= 1.25x)")
    print(f"layout / file floor  = {wall['ocikit_layout'] / wall['floor_file']:.2f}x wall, "
          f"{cpu['ocikit_layout'] / cpu['floor_file']:.2f}x cpu   (goal <= 1.2x)")
    if "oras" in wall:
        print(f"oras-py / ocikit     = {wall['oras'] / wall['ocikit']:.1f}x wall, "
              f"{cpu['oras'] / cpu['ocikit']:.1f}x cpu   (goal >= 20x)")
    if "tar_tarfile" in wall:
        print(f"tarfile / ocikit tar = {wall['tar_tarfile'] / wall['tar_ocikit']:.2f}x wall")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
