"""Where ocikit keeps caches on this machine: one home, one environment variable.

``$OCIKIT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/ocikit``, i.e. ``~/.cache/ocikit``) holds the
push digest cache itself, the node cache in ``node/``, the similarity manifest cache in
``manifests/`` and the app-image facts of ``--against`` in ``image-facts/``. Every command's ``--cache-dir`` overrides its own directory.
``$OCIKIT_CACHE`` (the node cache's old variable) is still honoured for the node cache.
"""

from __future__ import annotations

import os


def cache_home() -> str:
    explicit = os.environ.get("OCIKIT_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ocikit")


def node_cache_dir() -> str:
    return os.environ.get("OCIKIT_CACHE") or os.path.join(cache_home(), "node")


def user_cache_dir(name: str) -> str:
    """``<cache home>/<name>``: ``manifests`` (similarity), ``image-facts`` (compat --against), …"""
    return os.path.join(cache_home(), name)
