"""Prepare and serve one mount, in the foreground of the calling process.

Preparation is what a pull does before it writes anything — open the source, resolve the
reference, plan the artifact, check compatibility — then the layers' zTOCs are found
through the one discovery function (:func:`ocikit.ztoc.image.load_image_ztocs`), merged
like a subset pull merges them (:func:`ocikit.pull.subset.merged_tree`) and held to the
pull's rules (:func:`ocikit.mount.tree.build_mount_tree`). Nothing is mounted when a pull
would refuse the artifact.

Serving runs libfuse's loop until the filesystem is unmounted: ``fusermount3 -u``, or
SIGTERM/SIGINT/SIGHUP, which libfuse turns into a clean unmount. A mount left behind by a
killed daemon (``ENOTCONN``) is lazily unmounted before a new one takes its place.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..errors import LocalIOError, OcikitError
from ..extract.plan import KIND_IMAGE, plan_artifact, resolve_manifest
from ..extract.rules import verify_symlinks
from ..options import DEFAULT_OPTIONS, Options, RetryPolicy
from ..progress import NULL_PROGRESS, Progress
from ..pull.policy import DEFAULT_POLICY, PullPolicy
from ..pull.steps import check_compatibility, open_source, view_record
from ..reference import parse_reference
from .documents import CachedDocuments
from .spans import DEFAULT_MEMORY, DecodedSpans, LayerData, MountStats, SpanCache
from .tree import MountTree

if TYPE_CHECKING:
    from .relocated import Relocated

PREFETCH_NONE, PREFETCH_ALL = "none", "all"
DEFAULT_TIMEOUT = 30.0
DEFAULT_PREFETCH_RATE = 64 << 20  # bytes per second a background prefetch may take


@dataclass(frozen=True)
class MountConfig:
    """Everything one mount is made with (the CLI builds it from flags, a caller from keywords).

    ``prefetch``  ``none``, ``all`` (every layer, in span order), a file listing paths to fetch first,
                  or ``referrer`` (such a list attached as an ``application/vnd.ocikit.prefetch.v1`` referrer)
    ``timeout``   seconds after which a read the registry does not answer fails with EIO
    ``record``    at unmount, write the files that were read (one path a line, first read first):
                  a ``prefetch`` list for the next mount, or a referrer to attach
    ``detach``    the mount outlives the process that asked for it (a CSI driver that restarts);
                  otherwise it ends with its caller or its handle
    """

    reference: str
    mountpoint: str
    cache_dir: str
    policy: PullPolicy = DEFAULT_POLICY
    options: Options = DEFAULT_OPTIONS
    prefetch: str = PREFETCH_NONE
    prefetch_rate: int = DEFAULT_PREFETCH_RATE
    timeout: float = DEFAULT_TIMEOUT
    memory_bytes: int = DEFAULT_MEMORY
    allow_other: bool = False
    stats_file: str = ""
    relocate_to: str | None = None  # where the view will be seen (default: the mount point)
    record: str = ""
    detach: bool = False


@dataclass
class PreparedMount:
    """A mount ready to serve: its tree, its layers' readers and what it costs."""

    config: MountConfig
    digest: str
    kind: str
    tree: MountTree
    layers: list[LayerData]
    stats: MountStats
    roots: tuple[str, ...] = ()
    relocated: Relocated | None = None
    prefetch_paths: list[str] | None = None  # the files to prefetch, when a list was asked for
    errors: list[BaseException] = field(default_factory=list)


def mount_options(options: Options, timeout: float) -> Options:
    """``options`` with timeouts and retries that fail a read within about ``timeout`` seconds."""
    half = max(timeout / 2, 0.5)
    return replace(options, connect_timeout=half, read_timeout=half,
                   retry=RetryPolicy(attempts=2, base_delay=0.1, max_delay=0.5, max_retry_after=1.0))


def prepare(config: MountConfig, progress: Progress = NULL_PROGRESS) -> PreparedMount:
    """Resolve, plan and check the artifact and build the tree the mount will show."""
    from ..pull.subset import merged_tree
    from ..ztoc.image import image_manifest, load_image_ztocs
    from .prefetch import prefetch_paths
    from .tree import build_mount_tree
    from .treecache import load_tree, save_tree, tree_path

    policy = config.policy
    ref = parse_reference(config.reference)
    documents = os.path.join(config.cache_dir, "mount", "documents")
    source = CachedDocuments(open_source(ref, mount_options(config.options, config.timeout)), documents)
    resolved = resolve_manifest(source, ref.reference, platform=policy.platform, label=str(ref))
    plan = plan_artifact(source, resolved, rootfs=policy.rootfs)
    # the host's facts, or with policy.against the app image's (cached beside the node cache's)
    check_compatibility(source, plan.manifest_desc, policy, config.options, os.path.join(config.cache_dir, "facts"))
    rules = replace(policy.extract_policy(plan), rootfs=plan.kind == KIND_IMAGE)
    kept_at = tree_path(config.cache_dir, plan.digest, policy.tree_key())
    descriptors = list(image_manifest(source, plan.manifest_desc, policy.platform)[1].layers)
    kept = load_tree(kept_at)
    if kept is not None and len(kept[1]) == len(descriptors):
        tree, ztocs = kept  # mounted before under this policy: no zTOC discovery, parse or merge
    else:
        with _collector_paused():
            image = load_image_ztocs(source, plan.manifest_desc, policy.platform, progress)
            tree = build_mount_tree(merged_tree(image, plan), rules)
        descriptors, ztocs = image.layers, image.ztocs
        save_tree(kept_at, tree, ztocs)
    stats = MountStats()
    cache, memory = SpanCache(config.cache_dir), DecodedSpans(config.memory_bytes)
    layers = [LayerData(source, layer, ztoc, cache, stats, memory) for layer, ztoc in zip(descriptors, ztocs)]
    prepared = PreparedMount(config, plan.digest, plan.kind, tree, layers, stats, rules.symlink_roots)
    prepared.prefetch_paths = prefetch_paths(config.prefetch, source, plan.manifest_desc)
    record = view_record(plan)
    target = os.path.abspath(config.relocate_to or config.mountpoint)
    if policy.relocate and record is not None and record.stored_prefix and record.stored_prefix != target:
        from .relocated import Relocated

        prepared.relocated = Relocated(record, target, tree, layers, config.cache_dir, config.options.concurrency)
    return prepared


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the tree is built.

    Parsing and merging make hundreds of thousands of objects that all live on, none in a cycle;
    the collector would rescan them all at every generation threshold (a third of the time).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def clear_stale_mount(mountpoint: str) -> None:
    """Lazily unmount a mount point whose daemon died (it answers ENOTCONN and blocks a new mount)."""
    from .fs import is_stale_mount

    if is_stale_mount(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", mountpoint], check=False, capture_output=True)


def serve(prepared: PreparedMount, ready: Callable[[BaseException | None], None] | None = None) -> MountStats:
    """Mount and serve until unmounted; ``ready`` is told once the tree is up and checked (or why not)."""
    import mfusepy as fuse

    from .fs import TreeOperations
    from .prefetch import Prefetcher

    config = prepared.config
    mountpoint = os.path.abspath(config.mountpoint)
    clear_stale_mount(mountpoint)
    if not os.path.isdir(mountpoint):
        raise LocalIOError(f"mount point {mountpoint} is not a directory")
    stop = threading.Event()
    mounted = threading.Event()
    writer = _StatsWriter(prepared.stats, config.stats_file, stop)

    def after_mount() -> None:
        mounted.set()
        try:
            verify_symlinks(mountpoint, prepared.tree.links, prepared.roots)
        except OcikitError as exc:
            prepared.errors.append(exc)
            if ready is not None:
                ready(exc)
            subprocess.run(["fusermount3", "-u", "-z", mountpoint], check=False, capture_output=True)
            return
        writer.write()  # what preparing cost (zTOCs built, relocated files) is visible from the start
        writer.start()
        if config.prefetch != PREFETCH_NONE:
            Prefetcher(prepared, config.prefetch, config.prefetch_rate, stop, writer.write).start()
        if ready is not None:
            ready(None)

    relocated = prepared.relocated
    operations = TreeOperations(
        prepared.tree, prepared.layers, prepared.stats,
        relocated=relocated.content if relocated is not None else None,
        on_cost=writer.write,
        on_init=lambda: threading.Thread(target=after_mount, name="ocikit-mount-ready", daemon=True).start(),
    )
    options: dict[str, object] = {"foreground": True, "ro": True, "fsname": "ocikit", "subtype": "ocikit",
                                  "default_permissions": True, "kernel_cache": True,
                                  "entry_timeout": 3600, "attr_timeout": 3600, "negative_timeout": 3600,
                                  "max_threads": 16, "max_idle_threads": 8}
    if config.allow_other:
        options["allow_other"] = True
    gc.freeze()  # the tree lives as long as the mount: later collections need not scan it
    try:
        fuse.FUSE(operations, mountpoint, **options)
    except RuntimeError as exc:
        # libfuse reports a loop ended by SIGTERM/SIGINT as an error (8): after a mount that is the clean end
        if not mounted.is_set():
            raise LocalIOError(f"cannot mount at {mountpoint} (libfuse error {exc}); is /dev/fuse usable?") from None
    finally:
        stop.set()
        writer.write()
        if relocated is not None:
            relocated.close()
        if config.record:
            _write_record(config.record, list(operations.touched))
    if prepared.errors:
        raise prepared.errors[0]
    return prepared.stats


def _write_record(path: str, touched: list[str]) -> None:
    from ..ztoc.extract import write_atomically

    write_atomically(path, "".join(f"{name}\n" for name in touched).encode())


class _StatsWriter:
    """Writes the mount's stats as JSON to ``path`` while it runs (when they change) and at the end."""

    def __init__(self, stats: MountStats, path: str, stop: threading.Event, interval: float = 0.2) -> None:
        self.stats, self.path, self.stop, self.interval = stats, path, stop, interval
        self._last = ""
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.path:
            threading.Thread(target=self._run, name="ocikit-mount-stats", daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.write()

    def write(self) -> None:
        if not self.path:
            return
        with self._lock:
            text = json.dumps(self.stats.to_dict(), sort_keys=True)
            if text == self._last:
                return
            self._last = text
            tmp = f"{self.path}.tmp"
            with contextlib.suppress(OSError):
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, self.path)
