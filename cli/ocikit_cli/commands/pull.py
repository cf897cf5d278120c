"""ocikit pull REF DEST, ocikit wait DEST"""

from __future__ import annotations

import dataclasses

import click

import ocikit
from ocikit.pull.policy import PullPolicy

from ..context import CliContext, pass_cli
from ..output import emit, human_bytes, json_option
from ..params import cache_dir_option, parse_size, platform_option


@click.command("pull")
@click.argument("reference")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--rootfs", is_flag=True, help="Apply every layer as a container filesystem layer (whiteouts).")
@click.option("--ready-file", type=click.Path(dir_okay=False), help="Also write the ready marker here.")
@click.option("--no-relocate", is_flag=True, help="Keep a view's recorded root instead of relocating to DEST.")
@click.option("--skip-compat-check", is_flag=True, help="Do not check the artifact's compatibility metadata.")
@click.option(
    "--against",
    metavar="APP_IMAGE",
    default="",
    help="Check the compatibility metadata against this application image's glibc, libstdc++, MPI "
    "and platform (the image that will run the view) instead of this host's.",
)
@click.option("--max-size", help="Refuse more than this many decompressed bytes (e.g. 20G): the bomb guard.")
@click.option("--allow-devices", is_flag=True, help="Create device nodes and fifos found in layers.")
@click.option("--preserve-special-modes", is_flag=True, help="Keep setuid, setgid and sticky bits.")
@click.option("--mirror", "mirrors", multiple=True, metavar="HOST", help="Try this registry mirror first (repeatable).")
@click.option("--hosts-dir", type=click.Path(file_okay=False), help="containerd hosts.toml directory (certs.d).")
@platform_option()
@click.option(
    "--merge",
    is_flag=True,
    help="DEST may hold files ocikit did not write: add the artifact's files beside them, remove nothing "
    "(without it such a DEST is refused).",
)
@cache_dir_option(None, False, "Build the tree in this node cache (see `ocikit cache`).", old=("--cache",))
@click.option(
    "--include",
    "include",
    multiple=True,
    metavar="GLOB",
    help="Extract only matching paths (and everything under matching directories), fetched on demand "
    "with range reads through the layers' zTOCs. Repeatable.",
)
@click.option(
    "--link-mode",
    type=click.Choice(["auto", "hardlink", "reflink", "copy"]),
    default="auto",
    show_default=True,
    help="With --cache-dir: how DEST gets the cached files (hardlink needs a read-only target, so it "
    "is refused here: DEST is writable).",
)
@json_option
@pass_cli
def pull_cmd(
    cli: CliContext,
    reference: str,
    dest: str,
    rootfs: bool,
    ready_file: str | None,
    no_relocate: bool,
    skip_compat_check: bool,
    against: str,
    max_size: str | None,
    allow_devices: bool,
    preserve_special_modes: bool,
    mirrors: tuple[str, ...],
    hosts_dir: str | None,
    platform: str | None,
    merge: bool,
    cache_dir: str | None,
    include: tuple[str, ...],
    link_mode: str,
    json_output: bool,
) -> None:
    """Pull a view, ORAS artifact or image into DEST, verified, and mark it ready.

    DEST is replaced atomically and gets DEST/.ocikit/ready.json last; pulling the digest
    DEST already holds does nothing. Applications wait for it with `ocikit wait DEST`.
    A DEST holding files ocikit did not write is refused (exit 1) unless --merge.
    """
    options = cli.options
    if mirrors:
        options = dataclasses.replace(options, mirrors={**options.mirrors, "*": tuple(mirrors)})
    if hosts_dir:
        options = dataclasses.replace(options, hosts_dir=hosts_dir)
    policy = PullPolicy(
        rootfs=rootfs,
        max_size=parse_size(max_size) if max_size else None,
        allow_devices=allow_devices,
        preserve_special_modes=preserve_special_modes,
        platform=platform,  # type: ignore[arg-type]
        include=include,
        relocate=not no_relocate,
        check_compat=not skip_compat_check,
        against=against,
        merge=merge,
        link_mode=link_mode,
    )
    progress = cli.progress(json_output)
    try:
        result = ocikit.pull(
            reference, dest, policy, options=options, cache=cache_dir, ready_file=ready_file, progress=progress
        )
    finally:
        getattr(progress, "close", lambda: None)()
    emit(json_output, result.to_dict(), _describe)


def _describe(r: dict) -> str:  # type: ignore[type-arg]
    if r["unchanged"]:
        return f"{r['dest']} already holds {r['digest']}"
    text = (
        f"pulled {r['digest']} ({r['kind']}) into {r['dest']}: {r['files']} files, "
        f"{human_bytes(r['bytes'])}, {human_bytes(r['downloaded'])} downloaded in {r['seconds']:.1f} s"
    )
    if r["relocated_to"]:
        text += f", relocated to {r['relocated_to']}"
    return text


@click.command("wait")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (default: wait forever).")
@click.option("--digest", help="Wait for this manifest digest specifically.")
@click.option("--ready-file", type=click.Path(dir_okay=False), help="Wait for this marker instead of DEST's own.")
@json_option
def wait_cmd(dest: str, timeout: float | None, digest: str | None, ready_file: str | None, json_output: bool) -> None:
    """Block until DEST is marked ready by `ocikit pull` (no busy polling).

    Exits 0 when ready, 8 with a one-line message on timeout.
    """
    marker = ocikit.wait_ready(dest, timeout=timeout, digest=digest, ready_file=ready_file)
    emit(json_output, marker, lambda m: f"{dest} is ready ({m['digest']})")
