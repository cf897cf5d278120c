"""``similarity()``: how much do these images share, and which of them cluster together?

One call collects the images' layer lists (:mod:`.collect`), computes the exact pairwise
Jaccard matrix (:mod:`.jaccard`) and the summary (:mod:`.report`). The result keeps
names, the matrix and — computed on first use, since average linkage is the most
expensive step at 10,000 images — the cluster order, so a notebook can do its own
plotting; :func:`ocikit.similarity.plot.plot_heatmap` draws the standard one.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..errors import LocalIOError, NotFoundError, UnsupportedError
from ..options import DEFAULT_OPTIONS, Options
from ..progress import NULL_PROGRESS, Progress
from ..spec.descriptor import Platform
from . import _deps
from .collect import BY_DIFF_ID, BY_DIGEST, MODES, ImageLayers, collect_images
from .jaccard import build_incidence, cluster_linkage, jaccard, leaf_order
from .report import summarize


@dataclass
class SimilarityResult:
    """Names, the n × n float32 Jaccard matrix (input order), the summary, and the cluster order."""

    names: list[str]
    matrix: Any  # numpy.ndarray, float32, symmetric, diagonal 1
    images: list[ImageLayers]
    by: str
    weighted: bool
    summary: dict[str, Any]
    _linkage: Any = field(default=None, repr=False)
    _clustered: bool = field(default=False, repr=False)

    @property
    def linkage(self) -> Any:
        """The scipy linkage matrix (average linkage on 1 − J), or None for a single image."""
        if not self._clustered:
            self._linkage = cluster_linkage(self.matrix)
            self._clustered = True
        return self._linkage

    @property
    def order(self) -> list[int]:
        """Indices into ``names`` in dendrogram leaf order (similar images adjacent)."""
        return leaf_order(self.linkage, len(self.names))

    def ordered(self) -> tuple[list[str], Any]:
        """Names and matrix permuted into cluster order."""
        np = _deps.numpy()
        order = self.order
        return [self.names[i] for i in order], self.matrix[np.ix_(order, order)]

    def to_dict(self, include_matrix: bool = True) -> dict[str, Any]:
        """A JSON-ready document: names, matrix (6 decimals), order and summary."""
        document: dict[str, Any] = {
            "by": self.by,
            "weighted": self.weighted,
            "names": list(self.names),
            "order": self.order,
            "summary": self.summary,
        }
        if include_matrix:
            document["matrix"] = self.matrix.astype("float64").round(6).tolist()
        return document

    def to_csv(self, path: str | None = None, *, ordered: bool = False) -> str:
        """The matrix as CSV (header row and first column are the names).

        With ``path`` the CSV is streamed to a temporary file renamed into place (so a
        failure never leaves a half-written file under the final name) and the path is
        returned; without, the CSV text is returned.
        """
        if path is None:
            buffer = io.StringIO()
            self._write_csv(buffer, ordered)
            return buffer.getvalue()
        tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                self._write_csv(fh, ordered)
            os.replace(tmp, path)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise LocalIOError(f"cannot write {path}: {exc.strerror}") from None
        return path

    def _write_csv(self, stream: TextIO, ordered: bool) -> None:
        writer = csv.writer(stream, lineterminator="\n")
        for row in _csv_rows(self.names, self.matrix, self.order if ordered else None):
            writer.writerow(row)


def _csv_rows(names: Sequence[str], matrix: Any, order: Sequence[int] | None) -> Iterator[list[str]]:
    indices = list(order) if order is not None else list(range(len(names)))
    yield ["image", *(names[i] for i in indices)]
    for i in indices:
        row = matrix[i, indices]
        yield [names[i], *(f"{value:.6g}" for value in row.tolist())]


def similarity(
    references: Iterable[str] | str = (),
    *,
    repositories: Iterable[str] | str = (),
    by: str = BY_DIGEST,
    weighted: bool = False,
    platform: Platform | str | None = None,
    options: Options = DEFAULT_OPTIONS,
    concurrency: int | None = None,
    cache_dir: str | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
    top: int = 10,
) -> SimilarityResult:
    """Pairwise layer Jaccard of the images named by ``references`` and every tag of ``repositories``.

    ``by="digest"`` compares compressed layer digests (what registries and nodes store);
    ``by="diff-id"`` compares the uncompressed ``rootfs.diff_ids`` of the configs, so the
    same content compressed differently still matches. ``weighted`` scores intersection
    bytes over union bytes. ``platform`` (``"linux/arm64"``) picks from indexes, the
    host's by default. Manifests are fetched by ``concurrency`` workers (default 16:
    small, latency-bound requests) and cached in ``cache_dir`` (default
    ``$OCIKIT_CACHE_DIR/manifests``, default ``~/.cache/ocikit/manifests``; ``use_cache=False`` bypasses it). ``top`` is the
    number of most shared layers listed in the summary.
    """
    _deps.numpy(), _deps.scipy_sparse()  # fail before any network work if the extra is missing
    progress = progress or NULL_PROGRESS
    images = collect_images(
        [references] if isinstance(references, str) else references,
        [repositories] if isinstance(repositories, str) else repositories,
        by=by,
        platform=platform,
        options=options,
        concurrency=concurrency,
        cache_dir=cache_dir,
        use_cache=use_cache,
        progress=progress,
    )
    progress.message(f"comparing {len(images)} images")
    return compare(images, by=by, weighted=weighted, top=top)


def compare(
    images: Sequence[ImageLayers], *, by: str = BY_DIGEST, weighted: bool = False, top: int = 10
) -> SimilarityResult:
    """The similarity of already collected images (no I/O): matrix and summary."""
    if by not in MODES:
        raise UnsupportedError(f"unknown similarity mode {by!r} (choose {' or '.join(MODES)})")
    if not images:
        raise NotFoundError("no images to compare")
    size_rule = "min" if by == BY_DIFF_ID else "first"
    incidence = build_incidence([image.keys(by) for image in images], [image.sizes for image in images], size_rule)
    matrix = jaccard(incidence, weighted=weighted)
    summary = summarize(images, incidence, matrix, by=by, weighted=weighted, top=top)
    return SimilarityResult([image.name for image in images], matrix, list(images), by, weighted, summary)
