"""``ocikit relocate DIR --from OLD [--to NEW]``: make a tree on disk work at a new prefix."""

from __future__ import annotations

import os

import click

from ..context import CliContext, pass_cli
from ..output import emit, json_option
from ..params import parse_pairs


def _read_list(path: str | None) -> list[str] | None:
    if path is None:
        return None
    with click.open_file(path, "r") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


@click.command("relocate")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--from", "old", required=True, help="The prefix baked into the files (the view's real root).")
@click.option("--to", "new", default=None, help="Where the tree will run from [default: DIRECTORY's absolute path].")
@click.option("--map", "maps", multiple=True, metavar="OLD=NEW", help="Another prefix to rewrite (repeatable).")
@click.option(
    "--files-from",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Only these paths (relative to DIRECTORY, one per line; - for stdin) instead of scanning the tree.",
)
@click.option("--absolute-rpaths", is_flag=True, help="Write new absolute RPATH entries instead of $ORIGIN ones.")
@click.option("--dry-run", is_flag=True, help="Plan and report; change nothing.")
@json_option
@pass_cli
def command(
    cli: CliContext,
    directory: str,
    old: str,
    new: str | None,
    maps: tuple[str, ...],
    files_from: str | None,
    absolute_rpaths: bool,
    dry_run: bool,
    json_output: bool,
) -> None:
    """Rewrite DIRECTORY so that references to --from point to --to.

    Text files at any length, ELF RPATH/RUNPATH entries (as $ORIGIN-relative paths when they
    point inside the tree), other binary strings at the same length, absolute symlinks. If a
    binary string cannot take the new path, nothing is changed and the error says how long a
    path would fit.
    """
    from ocikit.relocate import relocate_tree

    progress = cli.progress(json_output)
    try:
        report = relocate_tree(
            directory,
            old,
            new or os.path.abspath(directory),
            _read_list(files_from),
            extra_prefixes=parse_pairs(maps, "--map", require_value=True),
            relative_rpaths=not absolute_rpaths,
            dry_run=dry_run,
            progress=progress,
        )
    finally:
        getattr(progress, "close", lambda: None)()
    emit(json_output, report.to_dict(), _render)


def _render(doc: dict) -> str:
    verb = "would change" if doc["dryRun"] else "changed"
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(doc["kinds"].items())) or "none"
    lines = [
        f"relocated {doc['old']} -> {doc['new']}" if not doc["dryRun"] else f"plan {doc['old']} -> {doc['new']}",
        f"  examined {doc['filesExamined']} entries; files mentioning the old prefix: {kinds}",
        (
            f"  {verb} {len(doc['filesChanged'])} files ({doc['replacements']} edits), "
            f"{len(doc['symlinksChanged'])} symlinks"
        ),
    ]
    if doc["maxNewLength"] is not None:
        lines.append(f"  binary strings allow destinations of up to {doc['maxNewLength']} characters")
    for shebang in doc["longShebangs"]:
        lines.append(f"  long shebang: {shebang['path']} ({shebang['length']} bytes > {shebang['limit']})")
    lines.extend(f"  warning: {warning}" for warning in doc["warnings"])
    return "\n".join(lines)
