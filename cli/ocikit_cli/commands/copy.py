"""ocikit copy SRC DST"""

from __future__ import annotations

import click

import ocikit

from ..context import CliContext, pass_cli
from ..output import emit, human_bytes, json_option
from ..params import platform_option


@click.command("copy")
@click.argument("source")
@click.argument("destination")
@click.option("--referrers", is_flag=True, help="Also copy the referrer graph (signatures, zTOCs, metadata).")
@platform_option("Copy only this platform's manifest when SOURCE is an index", default="the whole index")
@json_option
@pass_cli
def copy_cmd(
    cli: CliContext, source: str, destination: str, referrers: bool, platform: str | None, json_output: bool
) -> None:
    """Copy an image, index or artifact between registries and OCI layouts.

    Blobs the destination has are skipped; on one registry they are mounted across
    repositories instead of transferred. With --platform the destination gets that
    platform's manifest (and with --referrers its referrers), not the index.
    """
    progress = cli.progress(json_output)
    result = ocikit.copy(source, destination, referrers=referrers, platform=platform, options=cli.options,
                         progress=progress)
    getattr(progress, "close", lambda: None)()
    emit(
        json_output,
        result.to_dict(),
        lambda r: (
            f"copied {r['digest']}: {r['blobsCopied']} blobs ({human_bytes(r['bytesCopied'])}), "
            f"{r['blobsSkipped']} skipped, {r['blobsMounted']} mounted, {len(r['referrers'])} referrers"
        ),
    )
