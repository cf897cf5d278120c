"""The standard benchmark corpus: a copy of the running Python installation's prefix.

About 50k files and ~1 GB of real software (shared libraries, byte code, headers, text):
the shape of an HPC software stack. The copy is made once with ``cp -a`` into a cache
directory and reused; set ``OCIKIT_BENCH_CORPUS`` to use another directory instead.
"""

from __future__ import annotations

import os
import subprocess
import sys

DEFAULT_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ocikit-bench")


def corpus_path() -> str:
    """Return the corpus directory, creating the copy on first use."""
    explicit = os.environ.get("OCIKIT_BENCH_CORPUS")
    if explicit:
        if not os.path.isdir(explicit):
            raise SystemExit(f"OCIKIT_BENCH_CORPUS={explicit} is not a directory")
        return explicit
    target = os.path.join(DEFAULT_CACHE, "corpus")
    if os.path.isfile(os.path.join(DEFAULT_CACHE, "corpus.done")):
        return target
    os.makedirs(DEFAULT_CACHE, exist_ok=True)
    partial = target + ".partial"
    subprocess.run(["rm", "-rf", partial], check=True)
    print(f"copying {sys.base_prefix} to {target} (once)...", file=sys.stderr)
    subprocess.run(["cp", "-a", sys.base_prefix, partial], check=True)
    subprocess.run(["rm", "-rf", target], check=True)
    os.rename(partial, target)
    open(os.path.join(DEFAULT_CACHE, "corpus.done"), "w").close()
    return target


if __name__ == "__main__":
    print(corpus_path())
