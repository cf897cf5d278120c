"""``ocikit similarity``: pairwise layer Jaccard of images, with summary, CSV, JSON and heatmap."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..context import CliContext, pass_cli
from ..output import emit, human_bytes, json_option, table
from ..params import cache_dir_option, platform_option

# Up to this many images the matrix itself is printed on the terminal.
TABLE_LIMIT = 12


@click.command("similarity")
@click.argument("references", nargs=-1)
@click.option("--repository", "repositories", multiple=True, metavar="REPO", help="Compare every tag of REPO.")
@click.option("--from-file", "from_file", type=click.Path(dir_okay=False), help="References, one per line.")
@click.option(
    "--by",
    type=click.Choice(["digest", "diff-id"]),
    default="digest",
    show_default=True,
    help="Compare compressed layer digests, or uncompressed diff_ids from the configs.",
)
@click.option("--weighted", is_flag=True, help="Weight by bytes: intersection bytes over union bytes.")
@platform_option("Platform to pick from indexes")
@click.option("--csv", "csv_path", metavar="FILE|-", help="Write the matrix as CSV (cluster order); '-' for stdout.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), help="Write a clustered heatmap PNG.")
@click.option("--dendrogram", is_flag=True, help="Draw the dendrogram next to the heatmap.")
@click.option("--top", type=click.IntRange(0, 1000), default=10, show_default=True, help="Most shared layers to list.")
@cache_dir_option(None, "$OCIKIT_CACHE_DIR/manifests", "Manifest cache directory.")
@click.option("--no-cache", is_flag=True, help="Fetch every manifest, ignoring and not filling the cache.")
@json_option
@pass_cli
def similarity_cmd(cli: CliContext, references: tuple[str, ...], **opts: Any) -> None:
    """How much do images share? Exact pairwise Jaccard over their layers.

    REFERENCES are images (HOST/REPO:TAG, HOST/REPO@DIGEST, oci:PATH:TAG); indexes are
    resolved to the --platform manifest. Prints the matrix for small sets and a summary:
    mean similarity, unique layers, the most shared layers and per-image unique bytes.
    """
    from ocikit.similarity.api import similarity as run_similarity
    from ocikit.similarity.collect import read_reference_file

    json_output = opts["json_output"]
    if opts["csv_path"] == "-" and json_output:
        raise click.UsageError("--csv - and --json both write to stdout; choose one")
    if opts["dendrogram"] and not opts["png_path"]:
        raise click.UsageError("--dendrogram needs --png FILE")
    if opts["png_path"]:  # a missing plot extra fails now, not after every manifest was fetched
        from ocikit.similarity.plot import require_plotting

        require_plotting()
    refs = list(references) + (read_reference_file(opts["from_file"]) if opts["from_file"] else [])
    if not refs and not opts["repositories"]:
        raise click.UsageError("give image references, --repository REPO or --from-file FILE")
    progress = cli.progress(json_output or opts["csv_path"] == "-")
    try:
        result = run_similarity(
            refs,
            repositories=opts["repositories"],
            by=opts["by"],
            weighted=opts["weighted"],
            platform=opts["platform"],
            options=cli.options,
            concurrency=_explicit_concurrency(cli),
            cache_dir=opts["cache_dir"],
            use_cache=not opts["no_cache"],
            progress=progress,
            top=opts["top"],
        )
    finally:
        close = getattr(progress, "close", None)
        if close:
            close()
    _write_files(result, opts)
    if opts["csv_path"] == "-":
        sys.stdout.write(result.to_csv(ordered=True))
        return
    emit(json_output, result.to_dict() if json_output else result, _render)


def _explicit_concurrency(cli: CliContext) -> int | None:
    """The global --concurrency if the user gave it; else None (the library's manifest default)."""
    return cli.options.concurrency if "concurrency" in cli.explicit else None


def _write_files(result: Any, opts: dict[str, Any]) -> None:
    if opts["png_path"]:
        from ocikit.similarity.plot import plot_heatmap

        plot_heatmap(result, opts["png_path"], dendrogram=opts["dendrogram"])
    if opts["csv_path"] and opts["csv_path"] != "-":
        result.to_csv(opts["csv_path"], ordered=True)


def _render(result: Any) -> str:
    from ocikit.similarity.plot import short_labels

    labels = short_labels(result.names)
    parts = []
    if len(result.names) <= TABLE_LIMIT:
        parts.append(_matrix_table(result, labels))
    parts.append(_summary_text(result.summary, dict(zip(result.names, labels))))
    return "\n\n".join(parts)


def _matrix_table(result: Any, labels: list[str]) -> str:
    order = result.order
    headers = ["#", "image"] + [str(k + 1) for k in range(len(order))]
    rows = [[str(k + 1), labels[i]] + [f"{result.matrix[i, j]:.3f}" for j in order] for k, i in enumerate(order)]
    return table(rows, headers)


def _summary_text(summary: dict[str, Any], label: dict[str, str]) -> str:
    mean = summary["mean_similarity"]
    mode = f"by {summary['by']}" + (", weighted by bytes" if summary["weighted"] else "")
    lines = [
        f"{summary['images']} images, Jaccard {mode}",
        (
            f"mean similarity: {mean['without_diagonal']:.3f} over distinct pairs, "
            f"{mean['with_diagonal']:.3f} with the diagonal"
        ),
        (
            f"layers: {summary['layer_references']} references, {summary['unique_layers']} distinct "
            f"(fraction unique {summary['fraction_unique']:.3f}), {summary['single_image_layers']} in one image only"
        ),
        (
            f"bytes: {human_bytes(summary['bytes']['distinct'])} distinct, "
            f"{human_bytes(summary['bytes']['if_unshared'])} if nothing were shared"
        ),
    ]
    if summary["most_shared"]:
        lines += ["", "most shared layers:"]
        rows = [
            [entry["layer"][:19], human_bytes(entry["size"]), str(entry["image_count"]), _names(entry, label)]
            for entry in summary["most_shared"]
        ]
        lines.append(table(rows, ["layer", "size", "images", "held by"]))
    per_image = sorted(summary["per_image"], key=lambda e: -e["unique_bytes"])[:TABLE_LIMIT]
    lines += ["", "unique bytes per image (what a node pulls for it beyond the others):"]
    rows = [[label[e["name"]], human_bytes(e["unique_bytes"]), human_bytes(e["bytes"])] for e in per_image]
    lines.append(table(rows, ["image", "unique", "total"]))
    if len(summary["per_image"]) > len(per_image):
        lines.append(f"… {len(summary['per_image']) - len(per_image)} more (use --json)")
    return "\n".join(lines)


def _names(entry: dict[str, Any], label: dict[str, str], limit: int = 3) -> str:
    names = [label[name] for name in entry["images"][:limit]]
    more = entry["image_count"] - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")
