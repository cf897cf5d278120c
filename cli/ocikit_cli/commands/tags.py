"""ocikit tags REPO"""

from __future__ import annotations

import click

import ocikit

from ..context import CliContext, pass_cli
from ..output import emit, json_option


@click.command("tags")
@click.argument("repository")
@click.option("--all", "show_all", is_flag=True, help="Include referrers fallback tags (sha256-…).")
@json_option
@pass_cli
def tags_cmd(cli: CliContext, repository: str, show_all: bool, json_output: bool) -> None:
    """List the tags of a repository (HOST/REPO) or an OCI layout (oci:PATH)."""
    tags = ocikit.list_tags(repository, options=cli.options)
    if not show_all:
        tags = [t for t in tags if not _is_fallback_tag(t)]
    emit(json_output, {"repository": repository, "tags": tags}, lambda d: "\n".join(d["tags"]))


def _is_fallback_tag(tag: str) -> bool:
    algorithm, _, encoded = tag.partition("-")
    return algorithm in ("sha256", "sha512") and len(encoded) in (64, 128)
