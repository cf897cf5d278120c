"""ocikit attach REF --artifact-type T [FILE...] / ocikit discover REF"""

from __future__ import annotations

import click

import ocikit

from ..context import CliContext, pass_cli
from ..output import emit, json_option
from ..params import annotation_option, parse_pairs, platform_option


@click.command("attach")
@click.argument("reference")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--artifact-type", required=True, help="The referrer's artifactType (type/subtype).")
@annotation_option()
@platform_option("Attach to this platform's manifest when REFERENCE is an index", default="the index itself")
@json_option
@pass_cli
def attach_cmd(
    cli: CliContext, reference: str, files: tuple[str, ...], artifact_type: str, annotations: tuple[str, ...],
    platform: str | None, json_output: bool,
) -> None:
    """Attach FILES to REF as a referrer (its subject is REF)."""
    desc = ocikit.attach(reference, artifact_type, files, parse_pairs(annotations, "--annotation"), platform=platform,
                         options=cli.options)
    emit(json_output, desc.to_dict(), lambda d: d["digest"])


@click.command("discover")
@click.argument("reference")
@click.option("--artifact-type", default="", help="Only referrers of this artifactType (top level).")
@platform_option("Show the referrers of this platform's manifest when REFERENCE is an index",
                 default="the index's")
@json_option
@pass_cli
def discover_cmd(cli: CliContext, reference: str, artifact_type: str, platform: str | None, json_output: bool) -> None:
    """Show the referrers of REF as a tree."""
    subject, tree = ocikit.discover(reference, artifact_type, platform=platform, options=cli.options)
    document = {"subject": subject.to_dict(), "referrers": [node.to_dict() for node in tree]}
    emit(json_output, document, lambda d: _render_tree(subject.digest, tree))


def _render_tree(subject: str, nodes: list, prefix: str = "") -> str:  # type: ignore[type-arg]
    lines = [subject] if not prefix else []
    for i, node in enumerate(nodes):
        last = i == len(nodes) - 1
        desc = node.descriptor
        label = f"{desc.artifact_type or desc.media_type}  {desc.digest}"
        extras = [f"{k}={v}" for k, v in sorted(desc.annotations.items()) if k != "org.opencontainers.image.created"]
        lines.append(f"{prefix}{'└── ' if last else '├── '}{label}" + (f"  [{', '.join(extras)}]" if extras else ""))
        child = _render_tree(subject, node.children, prefix + ("    " if last else "│   "))
        if child:
            lines.append(child)
    return "\n".join(lines)
