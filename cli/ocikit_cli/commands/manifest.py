"""ocikit manifest REF / ocikit resolve REF"""

from __future__ import annotations

import json

import click

import ocikit

from ..context import CliContext, pass_cli
from ..output import emit, json_option
from ..params import platform_option


@click.command("manifest")
@click.argument("reference")
@platform_option()
@click.option("--descriptor", is_flag=True, help="Print the manifest's descriptor instead of its content.")
@json_option
@pass_cli
def manifest_cmd(cli: CliContext, reference: str, platform: str | None, descriptor: bool, json_output: bool) -> None:
    """Print a manifest or index exactly as stored (its bytes, pretty-printed for people)."""
    parsed = ocikit.get_manifest(reference, platform=platform, options=cli.options)
    if descriptor:
        emit(json_output, parsed.descriptor().to_dict())
        return
    if json_output:
        click.echo(parsed.raw.decode())  # the exact bytes: their digest is the manifest digest
        return
    click.echo(json.dumps(json.loads(parsed.raw), indent=2))


@click.command("resolve")
@click.argument("reference")
@json_option
@pass_cli
def resolve_cmd(cli: CliContext, reference: str, json_output: bool) -> None:
    """Print the digest a tag points at."""
    desc = ocikit.resolve(reference, options=cli.options)
    emit(json_output, desc.to_dict(), lambda d: d["digest"])
