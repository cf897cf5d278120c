"""Exact pairwise Jaccard over layer sets, through sparse counts instead of set operations.

Images × distinct layers form a 0/1 incidence matrix ``M`` (CSR: each row lists the
columns of the layers the image holds — this *is* the inverted index, read by rows or by
columns). Then, for every pair of images at once:

* ``|A ∩ B|`` = ``(M · Mᵀ)[a, b]`` — only pairs that share a layer produce work;
* ``|A ∪ B|`` = ``|A| + |B| − |A ∩ B|``;
* weighted by bytes: ``(W · Mᵀ)[a, b]`` where ``W`` carries each layer's size instead of 1,
  over ``bytes(A) + bytes(B) − bytes(A ∩ B)``.

For 10,000 images with 10 layers each that is a handful of sparse products, not 10^8
Python set intersections. The product is taken in row blocks of about four million cells
so that the only n × n array ever held is the float32 result (400 MB at n = 10,000).

Values are float32: the counts are exact integers, and float32 division is correctly
rounded, so unweighted values are the nearest float32 to the exact fraction. The
diagonal is 1. Two images whose union is empty (no layers; or, weighted, only zero-byte
layers) are identical in what is measured and score 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _deps

# Cells of the n × n result computed per block (bounds the temporaries to ~100 MB).
BLOCK_CELLS = 1 << 22
# A layer held by at least n / HEAVY_FRACTION images goes into the dense product.
HEAVY_FRACTION = 8


@dataclass(frozen=True)
class Incidence:
    """Images × distinct layers, plus what is known about each layer."""

    matrix: Any  # scipy.sparse.csr_matrix, int32 ones, shape (images, layers)
    keys: tuple[str, ...]  # column -> layer key (digest or diff_id)
    sizes: Any  # numpy int64 array, column -> bytes

    @property
    def n_images(self) -> int:
        return int(self.matrix.shape[0])

    def set_sizes(self) -> Any:
        """|A| for every image: distinct layers per row."""
        np = _deps.numpy()
        return np.diff(self.matrix.indptr).astype(np.int64)

    def holders(self) -> Any:
        """How many images hold each layer (column sums)."""
        np = _deps.numpy()
        return np.bincount(self.matrix.indices, minlength=len(self.keys)).astype(np.int64)

    def image_bytes(self, columns_mask: Any = None) -> Any:
        """Bytes of each image's distinct layers, optionally only over the masked columns."""
        np = _deps.numpy()
        weights = self.sizes.astype(np.float64)
        if columns_mask is not None:
            weights = np.where(columns_mask, weights, 0.0)
        return self.matrix.astype(np.float64) @ weights


def build_incidence(
    key_lists: Sequence[Sequence[str]], size_lists: Sequence[Sequence[int]], size_rule: str = "first"
) -> Incidence:
    """The incidence matrix of ``key_lists`` (one list of layer keys per image).

    A key listed twice in one image counts once (Jaccard is over sets). ``size_rule``
    picks a key's size when images disagree: ``"first"`` (a digest has one size) or
    ``"min"`` (a diff_id can arrive compressed in several ways; its smallest form is what
    pulling it costs at best), so the result does not depend on the input order.
    """
    np = _deps.numpy()
    sparse = _deps.scipy_sparse()
    columns: dict[str, int] = {}
    # Column numbers in order of first appearance (setdefault: one dict probe per layer).
    codes = np.fromiter((columns.setdefault(key, len(columns)) for keys in key_lists for key in keys), dtype=np.int64)
    all_sizes = np.fromiter((size for sizes in size_lists for size in sizes), dtype=np.int64, count=len(codes))
    indptr = np.zeros(len(key_lists) + 1, dtype=np.int64)
    np.cumsum([len(keys) for keys in key_lists], out=indptr[1:])
    if size_rule == "min":
        sizes = np.full(len(columns), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(sizes, codes, all_sizes)
    else:
        sizes = all_sizes[np.unique(codes, return_index=True)[1]]
    data = np.ones(len(codes), dtype=np.int32)
    matrix = sparse.csr_matrix((data, codes.astype(np.int32), indptr), shape=(len(key_lists), len(columns)))
    matrix.sum_duplicates()  # a layer listed twice in one manifest
    matrix.data[:] = 1
    return Incidence(matrix, tuple(columns), sizes)


def jaccard(incidence: Incidence, weighted: bool = False) -> Any:
    """The n × n float32 Jaccard matrix (weighted: intersection bytes over union bytes).

    Layers held by many images (at least ``n / HEAVY_FRACTION``) make most of the work of a
    sparse product — a layer in k images adds k² terms — so their share of the
    intersections is taken as a dense matrix product (BLAS), and the sparse product covers
    only the rest. Both parts are exact: they are sums of integers (counts, or byte sizes
    below 2**53 in float64).
    """
    np = _deps.numpy()
    n = incidence.n_images
    out = np.empty((n, n), dtype=np.float32)
    heavy_columns = np.flatnonzero(incidence.holders() >= max(2, n // HEAVY_FRACTION))
    heavy, light = _split_columns(incidence.matrix, heavy_columns)
    dtype = np.float64 if weighted else np.float32
    weights = incidence.sizes.astype(np.float64) if weighted else None
    heavy_left = heavy.toarray().astype(dtype)
    if weights is not None:
        heavy_left *= weights[heavy_columns][np.newaxis, :]
    heavy_right_t = heavy.toarray().astype(dtype).T.copy()
    light_left = light.multiply(weights[np.newaxis, :]).tocsr() if weights is not None else light
    light_right_t = light.T.tocsr()
    totals = incidence.image_bytes() if weighted else incidence.set_sizes().astype(np.float32)
    blocks = _row_blocks(n)
    rows = blocks[0][1] if blocks else 0
    # Buffers reused by every block: fresh pages are expensive to fault in, reused ones are not.
    inter_buffer = np.empty((rows, n), dtype=dtype)
    union_buffer = np.empty((rows, n), dtype=dtype)
    for start, stop in blocks:
        inter, union = inter_buffer[: stop - start], union_buffer[: stop - start]
        np.matmul(heavy_left[start:stop], heavy_right_t, out=inter)  # dense part
        extra = (light_left[start:stop] @ light_right_t).tocoo()
        inter[extra.row, extra.col] += extra.data  # a sparse product has no duplicate cells
        np.add(totals[start:stop, np.newaxis], totals[np.newaxis, :], out=union)
        union -= inter
        empty = union == 0
        if empty.any():
            union[empty] = 1
            inter[empty] = 1  # nothing on either side: identical in what is measured
        np.divide(inter, union, out=out[start:stop], casting="same_kind")
    np.fill_diagonal(out, 1.0)
    return out


def _split_columns(matrix: Any, heavy_columns: Any) -> tuple[Any, Any]:
    """The incidence restricted to the heavy columns, and the incidence with them zeroed."""
    np = _deps.numpy()
    heavy = matrix[:, heavy_columns]
    keep = np.ones(matrix.shape[1], dtype=matrix.dtype)
    keep[heavy_columns] = 0
    light = matrix.multiply(keep[np.newaxis, :]).tocsr()
    light.eliminate_zeros()
    return heavy, light


def _row_blocks(n: int) -> list[tuple[int, int]]:
    rows = max(1, BLOCK_CELLS // max(n, 1))
    return [(start, min(n, start + rows)) for start in range(0, n, rows)]


def cluster_linkage(matrix: Any) -> Any:
    """Average-linkage (UPGMA) clustering on distance 1 − J; None for fewer than two images.

    The condensed distance vector is filled row by row from the matrix, so no second
    n × n array is made (the vector itself holds n(n−1)/2 float64: 400 MB at n = 10,000).
    """
    np = _deps.numpy()
    hierarchy = _deps.scipy_hierarchy()
    n = int(matrix.shape[0])
    if n < 2:
        return None
    condensed = np.empty(n * (n - 1) // 2, dtype=np.float64)
    position = 0
    for i in range(n - 1):
        row = matrix[i, i + 1 :]
        np.subtract(1.0, row, out=condensed[position : position + len(row)])
        position += len(row)
    np.clip(condensed, 0.0, 1.0, out=condensed)
    return hierarchy.linkage(condensed, method="average")


def leaf_order(linkage: Any, n: int) -> list[int]:
    """Row order that puts clustered images next to each other (dendrogram leaf order)."""
    if linkage is None:
        return list(range(n))
    hierarchy = _deps.scipy_hierarchy()
    return [int(i) for i in hierarchy.leaves_list(linkage)]
