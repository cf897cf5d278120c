"""The summary of a similarity run: what is shared, what is not, and what it costs.

* mean similarity, with the diagonal (the convention of the 2024 pulling study, which
  reported 0.20 for one-layer spack images and 0.63 for images built to share layers)
  and without it (only distinct pairs — the number to compare designs by);
* the layer counts of the study's table: layer references (Σ|A|), distinct layers, and
  their ratio (``fraction_unique``); plus layers held by a single image;
* the most shared layers with their sizes and the images holding them;
* per image, the bytes no other image in the set holds: what a node that already has
  all the others pulls extra for this one.

In ``diff-id`` mode a layer's size is the smallest compressed size it was seen with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _deps
from .collect import ImageLayers
from .jaccard import Incidence


def mean_similarity(matrix: Any) -> dict[str, float]:
    """Mean over all n² cells (diagonal included) and over the n(n−1) off-diagonal cells."""
    np = _deps.numpy()
    n = int(matrix.shape[0])
    total = float(matrix.sum(dtype=np.float64))
    diagonal = float(np.trace(matrix, dtype=np.float64))
    # Rounded to 6 decimals: the cells are float32, more digits would only show their rounding.
    return {
        "with_diagonal": round(total / (n * n), 6) if n else 0.0,
        "without_diagonal": round((total - diagonal) / (n * (n - 1)), 6) if n > 1 else 0.0,
    }


def summarize(
    images: Sequence[ImageLayers],
    incidence: Incidence,
    matrix: Any,
    *,
    by: str,
    weighted: bool,
    top: int = 10,
    max_names: int = 20,
) -> dict[str, Any]:
    """The summary document (plain JSON types); see the module docstring for the fields."""
    holders = incidence.holders()
    references = int(holders.sum())
    distinct = len(incidence.keys)
    single = holders == 1
    distinct_bytes = int(incidence.sizes.sum())
    unshared_bytes = round(float(incidence.image_bytes().sum()))
    return {
        "images": len(images),
        "by": by,
        "weighted": weighted,
        "mean_similarity": mean_similarity(matrix),
        "layer_references": references,
        "unique_layers": distinct,
        "fraction_unique": distinct / references if references else 0.0,
        "single_image_layers": int(single.sum()),
        "fraction_single_image": float(single.sum()) / distinct if distinct else 0.0,
        "bytes": {
            "distinct": distinct_bytes,
            "if_unshared": unshared_bytes,
            "saved_by_sharing": unshared_bytes - distinct_bytes,
        },
        "most_shared": most_shared_layers(images, incidence, holders, top, max_names),
        "per_image": per_image(images, incidence, single),
    }


def most_shared_layers(
    images: Sequence[ImageLayers], incidence: Incidence, holders: Any, top: int, max_names: int
) -> list[dict[str, Any]]:
    """Layers held by at least two images, most holders first, then largest first."""
    np = _deps.numpy()
    shared = np.flatnonzero(holders >= 2)
    ranked = shared[np.lexsort((-incidence.sizes[shared], -holders[shared]))][:top]
    by_column = incidence.matrix.tocsc()
    out = []
    for column in ranked:
        rows = by_column.indices[by_column.indptr[column] : by_column.indptr[column + 1]]
        names = [images[int(r)].name for r in sorted(rows)]
        out.append(
            {
                "layer": incidence.keys[column],
                "size": int(incidence.sizes[column]),
                "image_count": int(holders[column]),
                "images": names[:max_names],
                "more_images": max(0, len(names) - max_names),
            }
        )
    return out


def per_image(images: Sequence[ImageLayers], incidence: Incidence, single: Any) -> list[dict[str, Any]]:
    """Per image: distinct layers and bytes, and the layers and bytes no other image holds.

    ``index_digest`` and ``platform`` say which index entry was chosen ("" for a plain manifest).
    """
    np = _deps.numpy()
    total_bytes = incidence.image_bytes()
    unique_bytes = incidence.image_bytes(single)
    unique_layers = incidence.matrix @ single.astype(np.int64)
    set_sizes = incidence.set_sizes()
    return [
        {
            "name": image.name,
            "digest": image.digest,
            "index_digest": image.index_digest,
            "platform": image.platform,
            "layers": int(set_sizes[i]),
            "bytes": round(float(total_bytes[i])),
            "unique_layers": int(unique_layers[i]),
            "unique_bytes": round(float(unique_bytes[i])),
        }
        for i, image in enumerate(images)
    ]
