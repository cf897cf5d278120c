"""``ocikit label REF key=value…``: attach labels to an image as a referrer (or list them)."""

from __future__ import annotations

import click

from ocikit.errors import InvalidContentError

from ..context import CliContext, pass_cli
from ..output import emit, json_option
from ..params import platform_option


@click.command("label")
@click.argument("reference")
@click.argument("labels", nargs=-1)
@platform_option("Label this platform's manifest when REFERENCE is an index", default="the index itself")
@json_option
@pass_cli
def label(cli: CliContext, reference: str, labels: tuple[str, ...], platform: str | None, json_output: bool) -> None:
    """Attach LABELS (key=value) to REFERENCE; with no LABELS, show the labels it has."""
    from ocikit.compat.by_reference import label_reference, labels_of_reference
    from ocikit.compat.labels import parse_label_arguments

    if not labels:
        found = labels_of_reference(reference, cli.options, platform)
        emit(json_output, found, lambda d: "\n".join(f"{k}={v}" for k, v in sorted(d.items())), verbatim=True)
        return
    try:
        parsed = parse_label_arguments(labels)
    except InvalidContentError as exc:
        raise click.BadParameter(str(exc), param_hint="LABELS") from None
    descriptor = label_reference(reference, parsed, cli.options, platform)
    emit(
        json_output, descriptor.to_dict(), lambda d: f"labelled {reference} with {len(parsed)} label(s): {d['digest']}"
    )
