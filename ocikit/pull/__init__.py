"""Pulling artifacts into directories: one package for everything a pull decides.

* :mod:`.policy` — :class:`PullPolicy`, the frozen set of choices a pull is made with.
* :mod:`.api` — :func:`pull`, the verb.
* :mod:`.destination` — DEST, its ownership record, its lock, staging beside it, the atomic switch.
* :mod:`.merge` — ``--merge``: the artifact's paths added beside files ocikit did not write.
* :mod:`.ready` — the ready marker and :func:`wait_ready`.
* :mod:`.nodecache` — the node cache for CSI drivers; :mod:`.materialize` publishes its trees.

Names are loaded on first use (PEP 562) so that ``import ocikit`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "pull": ".api",
    "PullResult": ".api",
    "PullPolicy": ".policy",
    "wait_ready": ".ready",
    "NodeCache": ".nodecache",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocikit.pull' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
