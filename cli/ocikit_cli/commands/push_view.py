"""``ocikit push-view VIEW_DIR REF``: push a spack copy view (or any directory) as a view artifact."""

from __future__ import annotations

from typing import Any

import click

from ..context import CliContext, pass_cli
from ..output import emit, human_bytes, json_option, table
from ..params import annotation_option, cache_dir_option, parse_pairs, parse_size


@click.command("push-view")
@click.argument("view_dir", type=click.Path(file_okay=True, dir_okay=True))
@click.argument("reference")
@click.option("--layers", type=click.Choice(["packages", "single"]), default="packages", show_default=True,
              help="One layer per package (shared between views), or one ORAS directory layer.")
@click.option("--compression", type=click.Choice(["zstd", "gzip"]), default=None,
              help="Layer compression [default: zstd; gzip with --layers single, so oras pull unpacks it].")
@click.option("--level", type=int, default=None, help="Compression level [default: 3 for zstd, 6 for gzip].")
@click.option("--max-layer-size", default="2GiB", show_default=True,
              help="Split a package's layer above this many tar bytes, at file boundaries.")
@annotation_option(old=("--label",))
@click.option("--allow-external-symlinks", is_flag=True, help="Keep symlinks that point outside the view.")
@click.option("--root", default=None, metavar="PATH",
              help="The view's original real root, for a view copied elsewhere (default: realpath of VIEW_DIR).")
@click.option("--view-path", default=None, metavar="PATH",
              help="The path users know the view by, e.g. /opt/view (default: VIEW_DIR, or --root).")
@click.option("--mount-path", default=None, metavar="PATH",
              help="Store the tree relocated to PATH, so a runtime mounting the image there (a Kubernetes "
              "image volume) runs it as is; ocikit pull relocates it anywhere [default: --view-path; "
              "files as they are with --layers single].")
@click.option("--name", default=None, help="View name (default: basename of the view path).")
@click.option(
    "--relative-rpaths/--absolute-rpaths",
    default=None,
    help="Rewrite ELF RPATH/RUNPATH entries inside the view relative to $ORIGIN before packing, so the "
    "pulled view's loader paths work at any destination [default: relative with --layers packages; "
    "as built with --layers single, which stores files exactly as they are].",
)
@click.option("--no-compat", is_flag=True, help="Do not attach compatibility metadata.")
@cache_dir_option(None, "$OCIKIT_CACHE_DIR, else ~/.cache/ocikit", "Digest cache directory.")
@click.option("--no-cache", is_flag=True, help="Do not use the local digest cache.")
@json_option
@pass_cli
def push_view_command(cli: CliContext, view_dir: str, reference: str, json_output: bool, **flags: Any) -> None:
    """Push VIEW_DIR (a spack copy view or any directory) to REF as a reproducible artifact.

    REF is HOST/REPO:TAG or oci:PATH:TAG. Pushing an unchanged view again uploads nothing.
    """
    from ocikit.push.api import push_view

    progress = cli.progress(json_output)
    try:
        result = push_view(
            view_dir,
            reference,
            options=cli.options,
            layers=flags["layers"],
            compression=flags["compression"],
            level=flags["level"],
            max_layer_size=parse_size(flags["max_layer_size"]),
            labels=parse_pairs(flags["annotations"], "--annotation"),
            allow_external_symlinks=flags["allow_external_symlinks"],
            root=flags["root"],
            view_path=flags["view_path"],
            mount_path=flags["mount_path"],
            name=flags["name"],
            relative_rpaths=flags["relative_rpaths"],
            compat=not flags["no_compat"],
            cache_dir="" if flags["no_cache"] else flags["cache_dir"],
            progress=progress,
        )
    finally:
        close = getattr(progress, "close", None)
        if close:
            close()
    emit(json_output, result.to_dict(), _render)


def _render(document: dict[str, Any]) -> str:
    rows = [
        [layer["title"], layer["status"], human_bytes(layer["size"]), human_bytes(layer["tarSize"])]
        for layer in document["layers"]
    ]
    uploaded = sum(1 for layer in document["layers"] if layer["status"] == "uploaded")
    lines = [
        f"pushed {document['reference']}@{document['digest']}",
        f"{len(rows)} layers, {uploaded} uploaded, {human_bytes(document['uploadedBytes'])} sent",
        table(rows, ["LAYER", "STATUS", "SIZE", "TAR"]),
    ]
    if document["compat"]:
        lines.append(f"compatibility metadata: {document['compat']}")
    lines += [f"warning: {w}" for w in document["warnings"]]
    return "\n".join(lines)
