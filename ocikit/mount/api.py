"""``ocikit.mount()``: mount a view or image lazily and get a handle to unmount it.

The mount is served by a child process (:mod:`.daemon`), so libfuse's threads and signal
handlers stay out of the caller's process; :func:`mount` returns once the tree is mounted
and checked, or raises the error that stopped it (the same typed errors a pull raises).
``ocikit mount`` on the command line serves in the foreground instead (:func:`mount_foreground`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, fields

from ..cachedirs import node_cache_dir
from ..errors import LocalIOError
from ..options import DEFAULT_OPTIONS, Options
from ..progress import NULL_PROGRESS, Progress
from ..pull.policy import DEFAULT_POLICY, PullPolicy
from .daemon import rebuild_error, send_config
from .serve import DEFAULT_PREFETCH_RATE, DEFAULT_TIMEOUT, PREFETCH_NONE, MountConfig
from .spans import DEFAULT_MEMORY, MountStats


@dataclass
class MountHandle:
    """A running mount: ``unmount()`` it (or use it as a context manager).

    Unless it was mounted with ``detach=True``, the mount ends when the handle is garbage
    collected or the caller's process exits, whichever comes first: keep the handle.
    """

    reference: str
    mountpoint: str
    stats_file: str
    process: subprocess.Popen  # type: ignore[type-arg]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stats(self) -> MountStats:
        """What the mount has cost so far (updated by the daemon a few times a second)."""
        try:
            with open(self.stats_file, encoding="utf-8") as fh:
                document = json.load(fh)
        except (OSError, ValueError):
            return MountStats()
        known = {f.name for f in fields(MountStats)}
        return MountStats(**{k: v for k, v in document.items() if k in known})

    def unmount(self, timeout: float = 30.0) -> MountStats:
        """Unmount cleanly (SIGTERM to the daemon, which libfuse turns into an unmount); returns the final stats."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], check=False, capture_output=True)
                self.process.kill()
                self.process.wait()
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        stats = self.stats()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.stats_file)
        return stats

    def __enter__(self) -> MountHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()


def mount_config(
    reference: str,
    mountpoint: str,
    policy: PullPolicy = DEFAULT_POLICY,
    *,
    options: Options = DEFAULT_OPTIONS,
    cache: str | None = None,
    prefetch: str = PREFETCH_NONE,
    prefetch_rate: int = DEFAULT_PREFETCH_RATE,
    timeout: float = DEFAULT_TIMEOUT,
    memory_bytes: int = DEFAULT_MEMORY,
    allow_other: bool = False,
    relocate_to: str | None = None,
    record: str = "",
    stats_file: str = "",
    detach: bool = False,
) -> MountConfig:
    """The :class:`MountConfig` for these keywords (the cache defaults to the node cache's directory)."""
    cache_dir = os.path.abspath(cache or node_cache_dir())
    if not stats_file:
        stats_dir = os.path.join(cache_dir, "mount", "stats")
        try:
            os.makedirs(stats_dir, exist_ok=True)
        except OSError as exc:
            raise LocalIOError(f"cannot use the cache {cache_dir}: {exc.strerror}") from None
        stats_file = os.path.join(stats_dir, f"{os.getpid()}-{abs(hash((reference, mountpoint)))}.json")
    return MountConfig(
        reference=reference, mountpoint=os.path.abspath(mountpoint), cache_dir=cache_dir, policy=policy,
        options=options, prefetch=prefetch, prefetch_rate=prefetch_rate, timeout=timeout,
        memory_bytes=memory_bytes, allow_other=allow_other, stats_file=stats_file, relocate_to=relocate_to,
        record=os.path.abspath(record) if record else "", detach=detach,
    )


def mount(reference: str, mountpoint: str, policy: PullPolicy = DEFAULT_POLICY, **keywords: object) -> MountHandle:
    """Mount ``reference`` read-only at ``mountpoint``; file data is fetched when first read.

    Keywords are those of :func:`mount_config` (``options``, ``cache``, ``prefetch``, ``timeout``,
    ``allow_other``, ``relocate_to``, ``record``, ``detach``…). Returns once the tree is up; raises
    what stopped it. The mount ends with the caller's process (or the handle) unless ``detach=True``:
    then it stays until ``unmount()`` or ``fusermount3 -u MOUNTPOINT``.
    """
    config = mount_config(reference, mountpoint, policy, **keywords)  # type: ignore[arg-type]
    process = subprocess.Popen(
        [sys.executable, "-m", "ocikit.mount.daemon"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    assert process.stdin is not None and process.stdout is not None
    send_config(process.stdin, config)  # stdin stays open: the daemon's lifeline to this process
    if config.detach:
        process.stdin.close()
    line = process.stdout.readline().decode().strip()
    process.stdout.close()
    if line == "ready":
        return MountHandle(reference, config.mountpoint, config.stats_file, process)
    process.stdin.close()
    process.wait()
    if line.startswith("error "):
        raise rebuild_error(line)
    raise LocalIOError(f"the mount daemon for {mountpoint} exited ({process.returncode}) before mounting")


def mount_foreground(config: MountConfig, on_ready: object = None, progress: Progress = NULL_PROGRESS) -> MountStats:
    """Prepare and serve ``config`` in this process until unmounted (SIGTERM/SIGINT unmount cleanly)."""
    from .serve import prepare, serve

    prepared = prepare(config, progress)
    return serve(prepared, on_ready)  # type: ignore[arg-type]
