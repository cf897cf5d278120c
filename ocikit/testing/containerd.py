"""A real containerd for tests: its own socket, root and state directories, nothing shared.

The test suite starts Debian's ``containerd`` (1.6; it unpacks images with the same rules as
2.x) with a config that disables the CRI plugin and every snapshotter but ``native`` and
``overlayfs``, listens on a socket inside ``workdir``, and talks to it with ``ctr -a SOCKET``.
It needs root (containerd mounts snapshots); :func:`containerd_available` says whether it can run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from .registry import stop_process

_DISABLED = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.aufs",
]


def containerd_available() -> bool:
    return bool(shutil.which("containerd") and shutil.which("ctr")) and os.geteuid() == 0


class ContainerdServer:
    """A running containerd; :meth:`ctr` runs ``ctr`` against it."""

    def __init__(self, workdir: str | None = None, snapshotter: str = "native") -> None:
        self._own_workdir = workdir is None
        # a short directory: the socket path must fit in sun_path (108 bytes)
        self.workdir = workdir or tempfile.mkdtemp(prefix="ocikit-ctd-")
        self.socket = os.path.join(self.workdir, "containerd.sock")
        self.snapshotter = snapshotter
        config = os.path.join(self.workdir, "config.toml")
        with open(config, "w") as fh:
            fh.write(self._config())
        self._log = open(os.path.join(self.workdir, "containerd.log"), "wb")
        self._process = subprocess.Popen(
            ["containerd", "--config", config], stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()

    def _config(self) -> str:
        quoted = ", ".join(f'"{name}"' for name in _DISABLED)
        return "\n".join([
            "version = 2",
            f'root = "{self.workdir}/root"',
            f'state = "{self.workdir}/state"',
            f"disabled_plugins = [{quoted}]",
            "[grpc]",
            f'  address = "{self.socket}"',
            "[ttrpc]",
            f'  address = "{self.socket}.ttrpc"',
            "[debug]",
            '  address = ""',
            "[metrics]",
            '  address = ""',
        ]) + "\n"

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"containerd exited early: {self.log_text()[-2000:]}")
            probe = subprocess.run(["ctr", "-a", self.socket, "version"], capture_output=True, timeout=10)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        self.close()
        raise RuntimeError("containerd did not become ready in time")

    @property
    def pid(self) -> int:
        """The daemon's process id (benchmarks read its CPU time and peak memory from /proc)."""
        return self._process.pid

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``ctr -a SOCKET ARGS…``; the caller checks ``returncode`` (stderr says why)."""
        return subprocess.run(["ctr", "-a", self.socket, *args], capture_output=True, text=True, timeout=timeout)

    def log_text(self) -> str:
        self._log.flush()
        with open(os.path.join(self.workdir, "containerd.log"), "rb") as fh:
            return fh.read().decode(errors="replace")

    def close(self) -> None:
        stop_process(self._process)
        self._log.close()
        if self._own_workdir:
            _unmount_below(self.workdir)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ContainerdServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unmount_below(directory: str) -> None:
    """Unmount what containerd left mounted under ``directory`` (deepest first) before removing it."""
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1] for line in fh]
    for point in sorted((p for p in points if p.startswith(directory + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
