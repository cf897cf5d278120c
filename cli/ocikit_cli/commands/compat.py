"""``ocikit compat``: scan a view, attach what it needs to an image, check a host against it."""

from __future__ import annotations

from typing import Any

import click

from ocikit.errors import IncompatibleError

from ..context import CliContext, pass_cli
from ..output import emit, json_option
from ..params import cache_dir_option, platform_option


@click.group("compat")
def compat() -> None:
    """Compatibility metadata: what a view needs from the host (glibc, MPI, GPU, CPU)."""


@compat.command("scan")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--files", is_flag=True, help="Include one entry per ELF file in --json output.")
@click.option("--no-libmagic", is_flag=True, help="Do not ask libmagic about unrecognised binary files.")
@json_option
@pass_cli
def scan_command(cli: CliContext, path: str, files: bool, no_libmagic: bool, json_output: bool) -> None:
    """Scan PATH (a view or any directory) and report its host requirements."""
    from ocikit.compat.scan import scan

    progress = cli.progress(json_output)
    report = scan(path, progress=progress, use_libmagic=not no_libmagic)
    _close(progress)
    emit(json_output, report.to_dict(files=files), _render_scan)


@compat.command("attach")
@click.argument("reference")
@click.argument("source", type=click.Path(exists=True), required=False)
@click.option("--nfd", is_flag=True, help="Also attach an NFD image-compatibility artifact.")
@platform_option("Attach to (and scan) this platform's manifest when REFERENCE is an index",
                 default="the index itself; this host's manifest is scanned")
@json_option
@pass_cli
def attach_command(
    cli: CliContext, reference: str, source: str | None, nfd: bool, platform: str | None, json_output: bool
) -> None:
    """Attach the host requirements of REFERENCE as a compatibility referrer.

    SOURCE (a view directory or a saved `compat scan --json`) is scanned when given;
    otherwise the artifact itself is pulled into a temporary directory and scanned.
    """
    from ocikit.compat.by_reference import attach_to_reference

    progress = cli.progress(json_output)
    descriptor = attach_to_reference(reference, source, cli.options, nfd=nfd, progress=progress, platform=platform)
    _close(progress)
    emit(json_output, descriptor.to_dict(), lambda d: f"attached {d['artifactType']} {d['digest']} to {reference}")


@compat.command("check")
@click.argument("target")
@click.option(
    "--host",
    "host_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Check against a host saved with `ocikit compat host --json` instead of this one.",
)
@click.option(
    "--against",
    metavar="APP_IMAGE",
    help="Check against the userland (glibc, libstdc++, MPI, platform) of the application image "
    "that will load TARGET, read from its layers without pulling it.",
)
@cache_dir_option(None, "$OCIKIT_CACHE_DIR/image-facts", "Cache of --against app-image facts.", old=("--facts-cache",))
@platform_option("Check the metadata of this platform's manifest when TARGET is an index",
                 default="the index's own, else this host's manifest's")
@json_option
@pass_cli
def check_command(
    cli: CliContext, target: str, host_file: str | None, against: str | None, cache_dir: str | None,
    platform: str | None, json_output: bool,
) -> None:
    """Check this host against TARGET: an image reference, a view directory or a saved scan report.

    With --against APP_IMAGE the C library, libstdc++ and libraries are the app image's
    (CPU and GPU driver stay this node's). Exit status 0 only when compatible; 7 when a
    requirement is missing or too old.
    """
    from ocikit.compat.by_reference import check_target, load_host

    host = load_host(host_file) if host_file else None
    progress = cli.progress(json_output)
    result = check_target(
        target, cli.options, host=host, progress=progress, against=against, facts_cache=cache_dir, platform=platform
    )
    _close(progress)
    emit(json_output, result.to_dict(), lambda _: "\n".join([item.line() for item in result.items] + result.notes))
    if not result.compatible:
        raise IncompatibleError(result.explain())


@compat.command("host")
@json_option
def host_command(json_output: bool) -> None:
    """Show what this host offers (save with --json for `compat check --host`)."""
    from ocikit.compat.host import HostInfo

    host = HostInfo.probe()
    emit(json_output, host.to_dict(full=json_output), _render_host)


def _close(progress: Any) -> None:
    close = getattr(progress, "close", None)
    if close is not None:
        close()


def _render_scan(report: dict[str, Any]) -> str:
    counts = report["counts"]
    lines = [
        (
            f"{report['root']}: {counts['regularFiles']} files, {counts['symlinks']} symlinks, "
            f"{counts['elfFiles']} ELF ({report['seconds']:.2f} s)"
        )
    ]
    for key, fact in report["facts"].items():
        lines.append(f"  {key:<18} {fact['value']}  [{'+'.join(fact['sources'])}]")
    if report["requirements"]:
        lines.append("requirements:")
    for requirement in report["requirements"]:
        flag = "required" if requirement["required"] else "advisory"
        minimum = f" >= {requirement['minimum']}" if requirement.get("minimum") else ""
        lines.append(
            f"  {flag:<8} {requirement['kind']:<11} {requirement['name']}{minimum}: {requirement.get('why', '')}"
        )
    for key, value in report["annotations"].items():
        lines.append(f"label {key}={value}")
    return "\n".join(lines)


def _render_host(host: dict[str, Any]) -> str:
    cpu = host.get("cpu") or {}
    nvidia = host["nvidia"]
    lines = [
        f"machine  {host['machine']}",
        f"libc     {host['libc']} {host['glibc']}".rstrip(),
        f"libstdc++ GLIBCXX_{host['libstdcxx']['GLIBCXX'] or '-'} CXXABI_{host['libstdcxx']['CXXABI'] or '-'}",
    ]
    if cpu:
        lines.append(f"cpu      {cpu.get('vendor', '')} {cpu.get('level', '')} ({cpu.get('flags')} flags)")
    lines.append(
        f"nvidia   driver {nvidia['driver'] or 'none'}" + (f", CUDA {nvidia['cuda']}" if nvidia["cuda"] else "")
    )
    if "mpi" in host:
        lines.append("mpi      " + (", ".join(f"{k} ({v})" for k, v in host["mpi"].items()) or "none"))
    return "\n".join(lines)
