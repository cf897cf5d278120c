"""The clustered heatmap: rows and columns in average-linkage order, optional dendrogram.

Drawn with matplotlib's object API on the Agg canvas (never pyplot: no global state, no
display needed), which is the ``plot`` extra. The figure grows with the number of images
and the font shrinks with the cell, so 200 labels stay legible (about 6.5 pt on a 24-inch
heatmap); above ``max_labels`` the labels would overlap and are left out (the CSV with
``ordered=True`` lists the names in the plotted order). Labels drop the prefix all names
share (``host/repo:``) and long ones are shortened in the middle.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LocalIOError
from . import _deps

# Heatmap side in inches per image, and its bounds.
INCHES_PER_IMAGE = 0.12
MIN_SIDE, MAX_SIDE = 6.0, 30.0
MAX_FONT, MIN_FONT = 10.0, 4.0
MAX_LABEL_CHARS = 40
DENDROGRAM_WIDTH = 1.6
ANNOTATE_UP_TO = 20  # write the value into each cell for small sets


@dataclass(frozen=True)
class HeatmapLayout:
    """Sizes in inches and points, derived from the number of images and the labels."""

    side: float  # heatmap edge
    font: float  # tick-label size in points
    label_space: float  # room for the longest label
    show_labels: bool


def heatmap_layout(labels: Sequence[str], max_labels: int = 300) -> HeatmapLayout:
    n = max(len(labels), 1)
    side = min(max(n * INCHES_PER_IMAGE, MIN_SIDE), MAX_SIDE)
    cell_points = side * 72 / n
    font = min(MAX_FONT, cell_points * 0.75)
    show = len(labels) <= max_labels and font >= MIN_FONT
    longest = max((len(label) for label in labels), default=0)
    label_space = (longest * font * 0.62 / 72 + 0.2) if show else 0.3
    return HeatmapLayout(side, font, label_space, show)


def short_labels(names: Sequence[str]) -> list[str]:
    """Names without their shared prefix (cut at a ``/`` or ``:``), long ones shortened in the middle."""
    labels = list(names)
    if len(labels) > 1:
        prefix = os.path.commonprefix(labels)
        cut = max(prefix.rfind("/"), prefix.rfind(":")) + 1
        if cut and all(len(label) > cut for label in labels):
            labels = [label[cut:] for label in labels]
    return [_middle_ellipsis(label) for label in labels]


def _middle_ellipsis(label: str, limit: int = MAX_LABEL_CHARS) -> str:
    if len(label) <= limit:
        return label
    keep = (limit - 1) // 2
    return f"{label[:keep]}…{label[-(limit - 1 - keep) :]}"


def require_plotting() -> None:
    """Raise the one-line "install the plot extra" error now, before any work, if matplotlib is missing."""
    _deps.matplotlib_agg()


def plot_heatmap(
    result: Any,
    path: str,
    dendrogram: bool = False,
    *,
    title: str | None = None,
    max_labels: int = 300,
    dpi: int = 100,
) -> str:
    """Write a PNG heatmap of ``result`` (a :class:`~ocikit.similarity.api.SimilarityResult`) to ``path``.

    The file is written under a temporary name and renamed, so ``path`` is either the
    complete image or untouched. Returns ``path``.
    """
    figure_mod, canvas_cls = _deps.matplotlib_agg()
    np = _deps.numpy()
    order = result.order
    matrix = result.matrix[np.ix_(order, order)]  # one copy, not two
    names = short_labels(result.names)
    labels = [names[i] for i in order]
    layout = heatmap_layout(labels, max_labels)
    fig = _draw(figure_mod, matrix, labels, layout, result.linkage if dendrogram else None, title or _title(result))
    canvas_cls(fig)
    _save_atomically(fig, path, dpi)
    return path


def _title(result: Any) -> str:
    mode = f"by {result.by}" + (", weighted by bytes" if result.weighted else "")
    mean = result.summary["mean_similarity"]["without_diagonal"]
    return f"Layer Jaccard {mode}: {len(result.names)} images, mean {mean:.3f} (off-diagonal)"


def _draw(figure_mod: Any, matrix: Any, labels: list[str], layout: HeatmapLayout, linkage: Any, title: str) -> Any:
    pad, title_h, bar_w, bar_gap = 0.3, 0.7, 0.25, 0.3
    dendro_w = DENDROGRAM_WIDTH if linkage is not None else 0.0
    width = pad + dendro_w + layout.side + layout.label_space + bar_gap + bar_w + 0.6 + pad
    height = pad + layout.label_space + layout.side + title_h
    fig = figure_mod.Figure(figsize=(width, height))

    def box(left: float, bottom: float, w: float, h: float) -> list[float]:
        return [left / width, bottom / height, w / width, h / height]

    heat_left, heat_bottom = pad + dendro_w, pad + layout.label_space
    ax = fig.add_axes(box(heat_left, heat_bottom, layout.side, layout.side))
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest", aspect="auto")
    _label_axes(ax, labels, layout)
    if len(labels) <= ANNOTATE_UP_TO:
        _annotate_cells(ax, matrix)
    ax.set_title(title, fontsize=11, loc="left", pad=8)
    bar_left = heat_left + layout.side + layout.label_space + bar_gap
    cax = fig.add_axes(box(bar_left, heat_bottom, bar_w, layout.side))
    fig.colorbar(image, cax=cax).set_label("Jaccard similarity")
    if linkage is not None:
        _draw_dendrogram(fig.add_axes(box(pad, heat_bottom, dendro_w, layout.side)), linkage, len(labels))
    return fig


def _label_axes(ax: Any, labels: list[str], layout: HeatmapLayout) -> None:
    """Row labels on the right, column labels below; plain text artists, not ticks.

    A tick is several artists (marks, grid line, two texts); for 400 labels plain text
    artists do the same with less drawing work.
    """
    n = len(labels)
    ax.set_xticks([])
    ax.set_yticks([])
    if not layout.show_labels:
        ax.set_xlabel(f"{n} images in cluster order (labels omitted: too many to read)", fontsize=9)
        return
    from matplotlib.transforms import offset_copy

    right = offset_copy(ax.get_yaxis_transform(), fig=ax.figure, x=3, units="points")
    below = offset_copy(ax.get_xaxis_transform(), fig=ax.figure, y=-3, units="points")
    for i, label in enumerate(labels):
        ax.text(1.0, i, label, transform=right, fontsize=layout.font, ha="left", va="center")
        ax.text(i, 0.0, label, transform=below, fontsize=layout.font, ha="center", va="top", rotation=90)


def _annotate_cells(ax: Any, matrix: Any) -> None:
    n = len(matrix)
    font = min(9.0, 120.0 / max(n, 1))
    for i in range(n):
        for j in range(n):
            value = float(matrix[i, j])
            color = "black" if value > 0.6 else "white"  # viridis is light at the top end
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=font, color=color)


def _draw_dendrogram(ax: Any, linkage: Any, n: int) -> None:
    """The dendrogram's lines, leaves aligned with the heatmap rows (leaf i at row i)."""
    from matplotlib.collections import LineCollection

    hierarchy = _deps.scipy_hierarchy()
    tree = hierarchy.dendrogram(linkage, no_plot=True, orientation="left")
    # Leaves sit at 5, 15, 25 … in dendrogram coordinates: row i is at 10·i + 5.
    segments = [list(zip(heights, positions)) for positions, heights in zip(tree["icoord"], tree["dcoord"])]
    ax.add_collection(LineCollection(segments, colors="0.25", linewidths=0.6))
    top = max((max(d) for d in tree["dcoord"]), default=1.0) or 1.0
    ax.set_xlim(top * 1.05, 0.0)  # root on the left, leaves touching the heatmap
    ax.set_ylim(10 * n, 0)  # row 0 at the top, as in the heatmap
    ax.set_axis_off()


def _save_atomically(fig: Any, path: str, dpi: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise LocalIOError(f"cannot write {path}: {exc.strerror}") from None
