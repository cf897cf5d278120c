"""Optional dependencies, imported only by the functions that need them.

``import ocikit`` must stay light, so numpy/scipy (the ``similarity`` extra) and matplotlib
(the ``plot`` extra) are imported here on first use; a missing one becomes a one-line
error that names the pip command which installs it.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import UnsupportedError

# Until a release is on PyPI, the extras install from a checkout: say both ways.
SIMILARITY_EXTRA = "pip install 'ocikit[similarity]' (from a checkout: pip install -e '.[similarity]')"
PLOT_EXTRA = "pip install 'ocikit[plot]' (from a checkout: pip install -e '.[plot]')"


def numpy() -> ModuleType:
    try:
        import numpy as np
    except ImportError:
        raise UnsupportedError(
            f"similarity needs numpy and scipy, which are not installed: {SIMILARITY_EXTRA}"
        ) from None
    return np


def scipy_sparse() -> ModuleType:
    try:
        from scipy import sparse
    except ImportError:
        raise UnsupportedError(
            f"similarity needs numpy and scipy, which are not installed: {SIMILARITY_EXTRA}"
        ) from None
    return sparse


def scipy_hierarchy() -> ModuleType:
    try:
        from scipy.cluster import hierarchy
    except ImportError:
        raise UnsupportedError(
            f"similarity needs numpy and scipy, which are not installed: {SIMILARITY_EXTRA}"
        ) from None
    return hierarchy


def matplotlib_agg() -> tuple[ModuleType, type]:
    """``matplotlib.figure`` and the Agg canvas class (no pyplot: no global state, no display)."""
    try:
        from matplotlib import figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise UnsupportedError(f"the heatmap needs matplotlib, which is not installed: {PLOT_EXTRA}") from None
    return figure, FigureCanvasAgg
