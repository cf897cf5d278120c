"""zTOC build speed against the decompression floor, and the cost of fetching one file.

    python benchmarks/ztoc.py [--repeat N] [--span-size BYTES]

1. The standard corpus (benchmarks/corpus.py) is archived with GNU tar and compressed with
   ``gzip -6`` once (cached beside the corpus copy).
2. Floor: ``gzip -dc LAYER > /dev/null``. Goal: building the zTOC (TOC + checkpoints +
   span digests, one pass, plus serialization) within 1.3x of it.
   For reference, CPython's own ``zlib`` inflating the same stream (it cannot make
   checkpoints) shows what the ctypes binding costs over the stdlib's C binding.
3. get-file of the regular file closest to 1 MiB from an OCI layout holding the layer:
   compressed bytes fetched against the layer size and against the spans covering it.

Wall-clock and CPU seconds are both printed: on a shared machine the wall clock moves
with other load, CPU time much less. Each measurement is the best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from corpus import corpus_path  # noqa: E402

from ocikit.content.base import fetch_manifest, push_bytes, push_manifest  # noqa: E402
from ocikit.content.layout import LayoutStore  # noqa: E402
from ocikit.digest import digest_file  # noqa: E402
from ocikit.spec import mediatypes as mt  # noqa: E402
from ocikit.spec.descriptor import Descriptor  # noqa: E402
from ocikit.spec.manifest import build_manifest  # noqa: E402
from ocikit.ztoc.build import build_ztoc  # noqa: E402
from ocikit.ztoc.extract import fetch_file  # noqa: E402
from ocikit.ztoc.soci import attach_index, push_ztoc  # noqa: E402


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def corpus_layer() -> str:
    corpus = corpus_path()
    layer = os.path.join(os.path.dirname(corpus.rstrip("/")), "ztoc-corpus.tar.gz")
    if not os.path.isfile(layer):
        print(f"archiving {corpus} with tar | gzip -6 (once)...", file=sys.stderr)
        partial = layer + ".partial"
        with open(partial, "wb") as out:
            tar = subprocess.Popen(["tar", "--sort=name", "-C", corpus, "-cf", "-", "."], stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-6", "-c"], stdin=tar.stdout, stdout=out, check=True)
            if tar.wait():
                raise SystemExit("tar failed")
        os.rename(partial, layer)
    return layer


def best(repeat: int, fn):  # type: ignore[no-untyped-def]
    results = [fn() for _ in range(repeat)]
    return min(results, key=lambda r: r[0])


def floor_gzip(layer: str) -> tuple[float, float]:
    before, start = cpu_children(), time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["gzip", "-dc", layer], stdout=null, check=True)
    return time.perf_counter() - start, cpu_children() - before


def stdlib_zlib(layer: str) -> tuple[float, float]:
    before, start = cpu_self(), time.perf_counter()
    inflater = zlib.decompressobj(47)
    with open(layer, "rb") as fh:
        while chunk := fh.read(1 << 20):
            while chunk:
                inflater.decompress(chunk, 1 << 20)
                chunk = inflater.unconsumed_tail
    return time.perf_counter() - start, cpu_self() - before


def ocikit_build(layer: str, span: int, keep: list) -> tuple[float, float]:  # type: ignore[type-arg]
    before, start = cpu_self(), time.perf_counter()
    with open(layer, "rb") as fh:
        ztoc = build_ztoc(fh, span)
    data = ztoc.to_bytes()
    elapsed, cpu = time.perf_counter() - start, cpu_self() - before
    keep[:] = [ztoc, data]
    return elapsed, cpu


class CountingLayout(LayoutStore):
    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.fetched = 0

    def fetch_range(self, desc: Descriptor, offset: int, length: int) -> bytes:
        data = super().fetch_range(desc, offset, length)
        self.fetched += len(data)
        return data


def get_file_cost(layer: str, ztoc) -> None:  # type: ignore[no-untyped-def]
    target = 1 << 20
    entry = min((e for e in ztoc.entries if e.type == "reg"), key=lambda e: abs(e.size - target))
    with tempfile.TemporaryDirectory(dir=os.path.dirname(layer)) as tmp:
        store = CountingLayout(os.path.join(tmp, "layout"))
        digest, size = digest_file(layer)
        desc = Descriptor(mt.OCI_LAYER_GZIP, digest, size)
        if _same_fs(layer, tmp):
            os.link(layer, store.blob_path(digest))  # no 250 MB copy
        else:
            with open(layer, "rb") as fh:
                store.push(desc, fh)
        config = push_bytes(store, mt.OCI_CONFIG, b'{"architecture":"amd64","os":"linux"}')
        manifest = push_manifest(store, build_manifest([desc], config=config))
        attach_index(store, manifest, [push_ztoc(store, desc, ztoc)], "benchmark")
        start = time.perf_counter()
        result = fetch_file(store, manifest, entry.name, os.path.join(tmp, "out"))
        elapsed = time.perf_counter() - start
        spans = ztoc.spans()
        covering = range(spans.span_of(entry.offset), spans.span_of(entry.end - 1) + 1)
        budget = sum(spans.compressed_range(i)[1] - spans.compressed_range(i)[0] for i in covering)
        print(f"get-file {entry.name} ({entry.size} bytes) in {elapsed:.2f}s")
        print(f"  fetched {store.fetched} of {size} layer bytes = {store.fetched / size:.4%} "
              f"in {len(result.spans)} spans (covering spans: {budget} bytes, "
              f"{'within' if store.fetched <= budget else 'OVER'} budget)")
        assert fetch_manifest(store, manifest).layers[0].digest == digest


def _same_fs(a: str, b: str) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--span-size", type=int, default=1 << 22)
    args = parser.parse_args()
    layer = corpus_layer()
    print(f"layer {layer}: {os.path.getsize(layer)} bytes (tar | gzip -6 of the standard corpus)")
    floor_wall, floor_cpu = best(args.repeat, lambda: floor_gzip(layer))
    zlib_wall, zlib_cpu = best(args.repeat, lambda: stdlib_zlib(layer))
    keep: list = []  # type: ignore[type-arg]
    ours_wall, ours_cpu = best(args.repeat, lambda: ocikit_build(layer, args.span_size, keep))
    ztoc, data = keep
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"gzip -dc > /dev/null (floor)      wall {floor_wall:6.2f}s  cpu {floor_cpu:6.2f}s")
    print(f"CPython zlib inflate (reference)  wall {zlib_wall:6.2f}s  cpu {zlib_cpu:6.2f}s")
    print(f"ocikit zTOC build + serialize     wall {ours_wall:6.2f}s  cpu {ours_cpu:6.2f}s")
    print(f"  {len(ztoc.entries)} entries, {len(ztoc.span_digests)} spans, zTOC {len(data)} bytes, "
          f"peak RSS {peak:.0f} MiB")
    print(f"ratio ocikit / floor: wall {ours_wall / floor_wall:.2f}x  cpu {ours_cpu / floor_cpu:.2f}x  (goal <= 1.3x)")
    get_file_cost(layer, ztoc)


if __name__ == "__main__":
    main()
