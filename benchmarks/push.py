"""push-view speed, side by side with its baselines, in one run.

On the standard corpus (a copy of this Python's prefix, benchmarks/corpus.py), measures:

* floor: ``tar -c | zstd -T0 -3 > /dev/null`` (pack and compress, no upload);
* ocikit: ``ocikit push-view CORPUS REGISTRY/bench/ocikit:v1`` into a docker-registry 2.8
  started here (``ocikit.testing.registry.RegistryServer``), fresh digest cache; then the
  same push again (the re-push, which should upload nothing);
* oras-py: the ``oras`` Python client pushing the same directory to the same registry;
* tar writers: producing the uncompressed tar stream with ocikit's writer vs ``tarfile``.

Prints wall times and the ratios the goals are stated in: ocikit within 1.5x of the floor,
at least 20x faster than oras-py. ``--skip-oras`` leaves out the slow baseline.

    python benchmarks/push.py [--corpus DIR] [--skip-oras] [--skip-tar-writers]
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from corpus import corpus_path  # noqa: E402

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
from ocikit.pack.stream import LayerReader, Relocation
view = scan_view(sys.argv[1])
for plan in plan_layers(view, "packages"):
    for frame in LayerReader(view.source, plan, Relocation(view.real_root, "")).frames():
        pass
"""


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])}… failed: {result.stderr.strip()[-2000:]}")
    return elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None, help="directory to push (default: the standard corpus)")
    parser.add_argument("--skip-oras", action="store_true", help="do not run the (slow) oras-py baseline")
    parser.add_argument("--skip-tar-writers", action="store_true", help="do not compare tar writers")
    args = parser.parse_args()
    corpus = args.corpus or corpus_path()

    from ocikit.testing.registry import RegistryServer

    size = int(subprocess.run(["du", "-sb", corpus], capture_output=True, text=True).stdout.split()[0])
    files = sum(len(f) + len(d) for _, d, f in os.walk(corpus))
    print(f"corpus: {corpus} ({size / 1e6:.0f} MB, {files} entries), {os.cpu_count()} cores")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")

    work = tempfile.mkdtemp(prefix="ocikit-bench-")
    server = RegistryServer(workdir=os.path.join(work, "registry"))
    results: dict[str, float] = {}
    try:
        results["floor"], _ = timed(["sh", "-c", f"tar -C '{corpus}' -c . | zstd -T0 -3 -q > /dev/null"])
        print(f"floor   tar | zstd -T0 -3 > /dev/null : {results['floor']:7.2f} s")

        cache = os.path.join(work, "cache")
        push = [OCIKIT, "-q", "push-view", corpus, f"{server.host}/bench/ocikit:v1", "--json", "--no-compat",
                "--cache-dir", cache]
        results["ocikit"], first = timed(push)
        first_doc = json.loads(first.stdout)
        print(f"ocikit  push-view (registry)          : {results['ocikit']:7.2f} s  "
              f"({first_doc['uploadedBytes'] / 1e6:.0f} MB uploaded, {len(first_doc['layers'])} layer(s))")
        time.sleep(2.5)  # past the digest cache's racy window for files written just now
        results["repush"], again = timed(push)
        print(f"ocikit  re-push (unchanged)           : {results['repush']:7.2f} s  "
              f"({json.loads(again.stdout)['uploadedBytes']} bytes uploaded)")

        if not args.skip_oras:
            results["oras"], _ = timed([sys.executable, "-c", ORAS_PUSH, server.host,
                                        f"{server.host}/bench/oras:v1", corpus])
            print(f"oras-py push (registry)               : {results['oras']:7.2f} s")

        if not args.skip_tar_writers:
            results["tar_ocikit"], _ = timed([sys.executable, "-c", OCIKIT_STREAM, corpus])
            results["tar_tarfile"], _ = timed([sys.executable, "-c", TARFILE_STREAM, corpus])
            print(f"tar stream, ocikit writer             : {results['tar_ocikit']:7.2f} s")
            print(f"tar stream, tarfile                   : {results['tar_tarfile']:7.2f} s")
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"ocikit / floor       = {results['ocikit'] / results['floor']:.2f}x   (goal <= 1.5x)")
    if "oras" in results:
        print(f"oras-py / ocikit     = {results['oras'] / results['ocikit']:.1f}x   (goal >= 20x)")
    if "tar_tarfile" in results:
        print(f"tarfile / ocikit tar = {results['tar_tarfile'] / results['tar_ocikit']:.2f}x")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
