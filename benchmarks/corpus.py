"""The standard benchmark corpus: a copy of the running Python installation's prefix.

A real software tree (~1 GB, ~60k entries: shared libraries, .py/.pyc, headers, symlinks),
the same on every machine that runs the same Python. Copied once with ``cp -a`` into a
cache directory so benchmarks never read the live installation. ``OCIKIT_BENCH_CORPUS``
names a directory to use instead (nothing is copied then).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ocikit", "bench-corpus")


def corpus_path() -> str:
    """The corpus directory, creating the copy on first use."""
    override = os.environ.get("OCIKIT_BENCH_CORPUS")
    if override:
        if not os.path.isdir(override):
            raise SystemExit(f"OCIKIT_BENCH_CORPUS={override} is not a directory")
        return override
    source = sys.base_prefix
    target = os.path.join(cache_root(), os.path.basename(source.rstrip("/")) or "prefix")
    if os.path.isdir(target):
        return target
    os.makedirs(cache_root(), exist_ok=True)
    partial = target + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    # cp -a keeps symlinks, modes and times; a partial copy never becomes the corpus.
    subprocess.run(["cp", "-a", source, partial], check=True)
    os.rename(partial, target)
    return target


if __name__ == "__main__":
    print(corpus_path())
