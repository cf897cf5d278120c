"""``ocikit ztoc``: build, list and inspect zTOCs (SOCI-compatible seekable indexes)."""

from __future__ import annotations

from typing import Any

import click

from ..context import CliContext, pass_cli
from ..output import emit, human_bytes, json_option, table
from ..params import SIZE, platform_option


@click.group("ztoc")
def ztoc() -> None:
    """Seekable indexes (zTOCs) for gzip, tar and zstd layers."""


@ztoc.command("build")
@click.argument("reference")
@click.option("--span-size", type=SIZE, default="4MiB", show_default=True, help="Uncompressed bytes per span.")
@click.option("--min-layer-size", type=SIZE, default="10MiB", show_default=True,
              help="Skip layers whose compressed size is smaller.")
@click.option("--force", is_flag=True, help="Rebuild zTOCs that already exist with this span size.")
@platform_option()
@json_option
@pass_cli
def build(cli: CliContext, reference: str, span_size: int, min_layer_size: int, force: bool, platform: str | None,
          json_output: bool) -> None:
    """Index every eligible layer of REFERENCE and attach a SOCI v1 index (replacing ocikit's earlier one).

    Current soci-snapshotter nodes read v1 only with `[pull_modes.soci_v1] enable = true`;
    `ztoc convert` makes the v2 image they use by default."""
    from ocikit.ztoc.api import build_ztocs

    progress = cli.progress(json_output)
    try:
        report = build_ztocs(reference, span_size=span_size, min_layer_size=min_layer_size, force=force,
                             platform=platform, options=cli.options, progress=progress)
    finally:
        getattr(progress, "close", lambda: None)()
    emit(json_output, report.to_dict(), _render_build)


def _render_build(doc: dict[str, Any]) -> str:
    rows = [[o["layer"][7:19], human_bytes(o["size"]), o["status"], o["ztoc"][7:19] or o["reason"]]
            for o in doc["layers"]]
    text = table(rows, ["LAYER", "SIZE", "STATUS", "ZTOC / REASON"])
    indexes = ", ".join(doc["indexes"]) or "none (nothing new)"
    return f"{text}\nattached: {indexes}"


@ztoc.command("convert")
@click.argument("reference")
@click.option("--to", "to", default=None, help="Tag the converted image here (default: REFERENCE's tag + '-soci').")
@click.option("--span-size", type=SIZE, default="4MiB", show_default=True, help="Uncompressed bytes per span.")
@click.option("--min-layer-size", type=SIZE, default="10MiB", show_default=True,
              help="Skip layers whose compressed size is smaller.")
@click.option("--platform", "platforms", multiple=True, help="Index this platform of a multi-platform image "
              "(repeatable; default: this host's).")
@click.option("--all-platforms", is_flag=True, help="Index every platform of a multi-platform image.")
@json_option
@pass_cli
def convert(cli: CliContext, reference: str, to: str | None, span_size: int, min_layer_size: int,
            platforms: tuple[str, ...], all_platforms: bool, json_output: bool) -> None:
    """Make a SOCI-enabled image of REFERENCE (SOCI index manifest v2, as `soci convert`)."""
    from ocikit.ztoc.api import convert_ztocs

    progress = cli.progress(json_output)
    try:
        report = convert_ztocs(reference, to=to, span_size=span_size, min_layer_size=min_layer_size,
                               platforms=platforms, all_platforms=all_platforms, options=cli.options,
                               progress=progress)
    finally:
        getattr(progress, "close", lambda: None)()
    emit(json_output, report.to_dict(), _render_convert)


def _render_convert(doc: dict[str, Any]) -> str:
    out = []
    for p in doc["platforms"]:
        rows = [[o["layer"][7:19], human_bytes(o["size"]), o["status"], o["ztoc"][7:19] or o["reason"]]
                for o in p["layers"]]
        index = p["index"] or "none (no layer indexed)"
        out.append(f"{p['platform']}: SOCI index {index}\n" + table(rows, ["LAYER", "SIZE", "STATUS", "ZTOC / REASON"]))
    out.append(f"converted: {doc['reference']} ({doc['digest']})")
    return "\n\n".join(out)


@ztoc.command("build-file")
@click.argument("layer", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the zTOC.")
@click.option("--span-size", type=SIZE, default="4MiB", show_default=True, help="Uncompressed bytes per span.")
@click.option("--build-tool-id", default=None, help="build_tool_identifier to record (default: ocikit vX).")
@json_option
def build_file(layer: str, output: str, span_size: int, build_tool_id: str | None, json_output: bool) -> None:
    """Build the zTOC of a local LAYER blob (tar, tar+gzip or tar+zstd)."""
    from ocikit.ztoc.api import build_ztoc_file
    from ocikit.ztoc.build import DEFAULT_BUILD_TOOL

    result = build_ztoc_file(layer, output, span_size=span_size, build_tool_id=build_tool_id or DEFAULT_BUILD_TOOL)
    emit(json_output, result.to_dict(), lambda d: (
        f"wrote {d['output']} ({d['digest']}, {human_bytes(d['size'])}): {d['compression']}, "
        f"{d['entries']} entries, {d['spans']} spans of {human_bytes(d['span_size'])}"))


@ztoc.command("ls")
@click.argument("reference")
@platform_option()
@json_option
@pass_cli
def ls(cli: CliContext, reference: str, platform: str | None, json_output: bool) -> None:
    """List the zTOCs of REFERENCE (SOCI v2 index first, then v1 referrers)."""
    from ocikit.ztoc.api import list_ztocs

    records = [r.to_dict() for r in list_ztocs(reference, platform=platform, options=cli.options)]
    emit(json_output, records, lambda rs: table(
        [[r["layer"][7:19], human_bytes(r["spanSize"]), r["kind"], r["via"], r["ztoc"][7:19],
          human_bytes(r["ztocSize"])]
         for r in rs], ["LAYER", "SPAN", "KIND", "VIA", "ZTOC", "SIZE"]) if rs else "no zTOCs found")


@ztoc.command("info")
@click.argument("source")
@platform_option("When SOURCE is an image index, pick this platform's manifest")
@json_option
@pass_cli
def info(cli: CliContext, source: str, platform: str | None, json_output: bool) -> None:
    """Describe a .ztoc file, or the zTOCs attached to the image SOURCE."""
    from ocikit.ztoc.api import ztoc_info

    infos = [i.to_dict() for i in ztoc_info(source, platform=platform, options=cli.options)]
    emit(json_output, infos if len(infos) != 1 else infos[0], _render_info)


def _render_info(doc: Any) -> str:
    docs = doc if isinstance(doc, list) else [doc]
    if not docs:
        return "no zTOCs attached"
    out = []
    for d in docs:
        out.append(
            f"zTOC {d['digest']}" + (f" for layer {d['layer']}" if d["layer"] else "") + "\n"
            f"version {d['version']}, build tool {d['build_tool']!r}, {d['compression']}, "
            f"{d['spans']} spans of {human_bytes(d['span_size'])}, "
            f"{human_bytes(d['compressed_size'])} compressed / {human_bytes(d['uncompressed_size'])} uncompressed"
        )
        rows = [[f["name"], f["type"], str(f["size"]), str(f["start_span"]), str(f["end_span"])] for f in d["files"]]
        out.append(table(rows, ["NAME", "TYPE", "SIZE", "START SPAN", "END SPAN"]))
    return "\n\n".join(out)
