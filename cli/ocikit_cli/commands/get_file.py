"""``ocikit get-file``: fetch one file of an image with range reads of only its spans."""

from __future__ import annotations

import sys

import click

from ..context import CliContext, pass_cli
from ..output import emit, human_bytes, json_option
from ..params import parse_size, platform_option


@click.command("get-file")
@click.argument("reference")
@click.argument("path")
@click.option("-o", "--output", default=None, help="Output file (default: PATH's basename here; '-' for stdout).")
@click.option("--max-size", help="Refuse a file larger than this (e.g. 2G): the bomb guard.")
@click.option("--preserve-special-modes", is_flag=True, help="Keep setuid and setgid bits.")
@platform_option()
@json_option
@pass_cli
def get_file(
    cli: CliContext, reference: str, path: str, output: str | None, max_size: str | None,
    preserve_special_modes: bool, platform: str | None, json_output: bool,
) -> None:
    """Fetch PATH from the image REFERENCE using its zTOCs (verified span by span)."""
    from ocikit.extract.safe_tar import ExtractPolicy
    from ocikit.ztoc.api import get_file as fetch
    from ocikit.ztoc.api import get_file_stream

    limit = parse_size(max_size) if max_size else None
    rules = ExtractPolicy(max_size=limit, preserve_special_modes=preserve_special_modes)
    progress = cli.progress(json_output)
    try:
        if output == "-":
            get_file_stream(reference, path, _to_stdout, max_size=limit, platform=platform,
                            options=cli.options, progress=progress)
            return
        result = fetch(reference, path, output, rules=rules, platform=platform, options=cli.options, progress=progress)
    finally:
        getattr(progress, "close", lambda: None)()
    emit(json_output, result.to_dict(), lambda d: (
        f"wrote {d['output']} ({human_bytes(d['size'])}, mode {d['mode']:04o}) from layer {d['layer'][:19]}: "
        f"fetched {human_bytes(d['bytes_fetched'])}: {len(d['spans'])} spans of a {human_bytes(d['layer_size'])} layer"
        + (f", {human_bytes(d['index_bytes'])} of zTOCs" if not d["built_ztocs"] else
           f", {human_bytes(d['index_bytes'])} of zTOCs and layers read whole to index "
           f"{len(d['built_ztocs'])} layer(s) without one")
        + (f"; its paths name {d['paths_root']} (pull the view to use it elsewhere)" if d["paths_root"] else "")))


def _to_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
