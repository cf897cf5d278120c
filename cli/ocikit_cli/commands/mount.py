"""ocikit mount REF MOUNTPOINT"""

from __future__ import annotations

import click

from ocikit.cachedirs import node_cache_dir
from ocikit.mount.api import mount_config, mount_foreground
from ocikit.pull.policy import PullPolicy

from ..context import CliContext, pass_cli
from ..output import emit, human_bytes, json_option
from ..params import cache_dir_option, parse_size, platform_option


@click.command("mount")
@click.argument("reference")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@cache_dir_option(node_cache_dir, "$OCIKIT_CACHE_DIR/node", "Node cache whose mount/ (spans, documents) the mount shares.",
                  old=("--cache",))
@click.option("--prefetch", default="none", show_default=True, metavar="none|all|FILE|referrer",
              help="After mounting, fetch in the background every layer (all), the files FILE lists (one path a "
              "line, as --record writes), or those of the artifact's application/vnd.ocikit.prefetch.v1 referrer.")
@click.option("--prefetch-rate", default="64M", show_default=True, help="Bytes per second prefetch may take (0: no limit).")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds after which a read the registry does not answer fails with EIO.")
@click.option("--record", type=click.Path(dir_okay=False),
              help="At unmount, write the files that were read here (a --prefetch list for later mounts).")
@click.option("--mount-path", "relocate_to", help="Where the view is seen, if not MOUNTPOINT (a container's mount path).")
@click.option("--allow-other", is_flag=True, help="Let other users read the mount (non-root: user_allow_other in /etc/fuse.conf).")
@click.option("--rootfs", is_flag=True, help="Show every layer as a container filesystem layer (whiteouts).")
@click.option("--no-relocate", is_flag=True, help="Serve a view's files as recorded, without relocating them.")
@click.option("--skip-compat-check", is_flag=True, help="Do not check the artifact's compatibility metadata.")
@click.option("--against", metavar="APP_IMAGE", default="",
              help="Check the compatibility metadata against this application image instead of this host.")
@click.option("--max-size", help="Refuse a tree declaring more than this many bytes (e.g. 20G), per file and in total.")
@click.option("--allow-devices", is_flag=True, help="Show device nodes and fifos found in layers.")
@click.option("--preserve-special-modes", is_flag=True, help="Keep setuid, setgid and sticky bits.")
@platform_option()
@json_option
@pass_cli
def mount_cmd(cli: CliContext, reference: str, mountpoint: str, cache_dir: str, prefetch: str, prefetch_rate: str,
              timeout: float, record: str | None, relocate_to: str | None, allow_other: bool, rootfs: bool, no_relocate: bool,
              skip_compat_check: bool, against: str, max_size: str | None, allow_devices: bool, preserve_special_modes: bool,
              platform: str | None, json_output: bool) -> None:
    """Mount a view or image read-only at MOUNTPOINT; file data is fetched when first read.

    Serves in the foreground until unmounted (fusermount3 -u MOUNTPOINT, SIGTERM or Ctrl-C),
    then prints what the mount fetched.
    """
    policy = PullPolicy(rootfs=rootfs, max_size=parse_size(max_size) if max_size else None,
                        allow_devices=allow_devices, preserve_special_modes=preserve_special_modes,
                        relocate=not no_relocate, check_compat=not skip_compat_check, against=against,
                        platform=platform)  # type: ignore[arg-type]  # a string, parsed in __post_init__
    config = mount_config(reference, mountpoint, policy, options=cli.options, cache=cache_dir, prefetch=prefetch,
                          prefetch_rate=parse_size(prefetch_rate), timeout=timeout, allow_other=allow_other,
                          relocate_to=relocate_to, record=record or "")

    def ready(problem: BaseException | None) -> None:
        if problem is None and not json_output:
            click.echo(f"mounted {reference} at {config.mountpoint}", err=True)

    stats = mount_foreground(config, ready, cli.progress(json_output))
    emit(json_output, {"reference": reference, "mountpoint": config.mountpoint, **stats.to_dict()},
         lambda d: f"unmounted {d['mountpoint']}: {human_bytes(d['bytes_fetched'])} fetched in {d['spans_fetched']} "
         f"spans, {d['cache_hits']} spans from the cache, {d['errors']} failed reads")
