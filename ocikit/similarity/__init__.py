"""Layer similarity across many images: exact Jaccard, summary, clustered heatmap.

Modules: :mod:`.collect` (resolve, fetch concurrently, cache), :mod:`.jaccard` (sparse
exact Jaccard and clustering), :mod:`.report` (summary), :mod:`.plot` (heatmap), and
:mod:`.api` (``similarity()`` and :class:`SimilarityResult`). numpy and scipy (the
``similarity`` extra) and matplotlib (the ``plot`` extra) load only when used.

``ocikit.similarity`` is both this package and the public function
:func:`ocikit.similarity.api.similarity`: ``import ocikit.similarity.plot`` binds the
package to that name, so the package is made callable and forwards to the function —
``ocikit.similarity([...])`` then works whichever import happened first.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .api import similarity

        return similarity(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
