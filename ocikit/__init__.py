"""ocikit: move large HPC software stacks (spack views) through OCI registries.

The library never prints and never imports click. Long operations report progress
through :class:`ocikit.progress.Progress` callbacks and raise the typed errors of
:mod:`ocikit.errors`. Public names are imported lazily (``_LAZY``) so that
``import ocikit`` stays cheap: ELF, zTOC and plotting code load only when used.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from .errors import OcikitError
from .options import Options, RetryPolicy
from .reference import LayoutReference, RegistryReference, parse_reference
from .spec import Descriptor, Platform

__version__ = "0.2.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# ``ocikit.pull`` is a function and ``ocikit/pull/`` a package. Importing a submodule binds it as
# an attribute of its parent, but only the first time: importing the (light) package here and
# dropping that binding lets ``__getattr__`` give the function, whatever is imported later.
importlib.import_module(".pull", __name__)
del globals()["pull"]
importlib.import_module(".mount", __name__)  # the same for ``ocikit.mount`` and ``ocikit/mount/``
del globals()["mount"]

# public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "open_store": "ocikit.content.open",
    "LayoutStore": "ocikit.content.layout",
    "MemoryStore": "ocikit.content.memory",
    "Progress": "ocikit.progress",
    "attach": "ocikit.api",
    "copy": "ocikit.api",
    "discover": "ocikit.api",
    "get_manifest": "ocikit.api",
    "list_tags": "ocikit.api",
    "resolve": "ocikit.api",
    "pull": "ocikit.pull.api",
    "PullPolicy": "ocikit.pull.policy",
    "PullResult": "ocikit.pull.api",
    "wait_ready": "ocikit.pull.ready",
    "NodeCache": "ocikit.pull.nodecache",
    "mount": "ocikit.mount.api",
    "MountHandle": "ocikit.mount.api",
    "relocate_tree": "ocikit.relocate.tree",
    "RelocationReport": "ocikit.relocate.tree",
    "build_ztoc_file": "ocikit.ztoc.api",
    "build_ztocs": "ocikit.ztoc.api",
    "convert_ztocs": "ocikit.ztoc.api",
    "index_image": "ocikit.ztoc.api",
    "list_ztocs": "ocikit.ztoc.api",
    "ztoc_info": "ocikit.ztoc.api",
    "get_file": "ocikit.ztoc.api",
    "extract_matching": "ocikit.ztoc.extract",
    "similarity": "ocikit.similarity.api",
    "SimilarityResult": "ocikit.similarity.api",
    "plot_heatmap": "ocikit.similarity.plot",
    "scan": "ocikit.compat.scan",
    "ScanReport": "ocikit.compat.report",
    "attach_compat": "ocikit.compat.artifact",
    "read_compat_document": "ocikit.compat.artifact",
    "check_host": "ocikit.compat.check",
    "check_reference": "ocikit.compat.check",
    "CheckReport": "ocikit.compat.check",
    "HostInfo": "ocikit.compat.host",
    "add_labels": "ocikit.compat.labels",
    "read_labels": "ocikit.compat.labels",
    "push_view": "ocikit.push.api",
    "PushResult": "ocikit.push.api",
    "placeholder_for": "ocikit.spack.artifact",
}

__all__ = sorted(
    [
        "Descriptor",
        "LayoutReference",
        "OcikitError",
        "Options",
        "Platform",
        "RegistryReference",
        "RetryPolicy",
        "__version__",
        "parse_reference",
        *_LAZY,
    ]
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocikit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
