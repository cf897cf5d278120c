"""The standard benchmark corpus: a copy of the running Python installation's prefix.

``corpus_path()`` copies ``sys.base_prefix`` (about 50k files) into a cache directory once with
``cp -a`` and returns the copy's path. Set ``OCIKIT_BENCH_CORPUS`` to use another directory.
``small_corpus_path()`` is the standard library alone (site-packages left out, about 250 MB,
8k files): big enough for stable ratios, small enough for minutes on a shared machine.
``scaled(path, copies)`` is a directory holding ``copies`` full copies of ``path`` (real
copies, not hardlinks): the check that memory does not grow with the size of what is moved.
The copy keeps every file's bytes, so files still embed the original prefix: ``baked_prefix()``.
"""

from __future__ import annotations

import os
import subprocess
import sys


def baked_prefix() -> str:
    """The prefix the corpus's scripts, ``.pc`` files and bytecode caches were built for."""
    return os.path.realpath(sys.base_prefix)


def corpus_path() -> str:
    override = os.environ.get("OCIKIT_BENCH_CORPUS")
    if override:
        return override
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ocikit-bench")
    target = os.path.join(cache, "python-prefix")
    if not os.path.isdir(target):
        os.makedirs(cache, exist_ok=True)
        partial = target + ".partial"
        subprocess.run(["rm", "-rf", partial], check=True)
        subprocess.run(["cp", "-a", baked_prefix(), partial], check=True)
        os.rename(partial, target)
    return target


def small_corpus_path() -> str:
    """A copy of this Python's standard library without site-packages (made once, cached)."""
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ocikit-bench")
    target = os.path.join(cache, "python-stdlib")
    if not os.path.isdir(target):
        os.makedirs(cache, exist_ok=True)
        partial = target + ".partial"
        stdlib = os.path.dirname(os.__file__)
        subprocess.run(["rm", "-rf", partial], check=True)
        subprocess.run(["cp", "-a", stdlib, partial], check=True)
        subprocess.run(["rm", "-rf", os.path.join(partial, "site-packages")], check=True)
        os.rename(partial, target)
    return target


def scaled(path: str, copies: int) -> str:
    """A directory with ``copies`` copies of ``path`` side by side (``path`` itself when 1)."""
    if copies <= 1:
        return path
    target = f"{path.rstrip('/')}-x{copies}"
    if not os.path.isdir(target):
        partial = target + ".partial"
        subprocess.run(["rm", "-rf", partial], check=True)
        os.makedirs(partial)
        for i in range(copies):
            subprocess.run(["cp", "-a", path, os.path.join(partial, f"copy{i}")], check=True)
        os.rename(partial, target)
    return target
