"""Debian's containerd on a private socket, for tests that pull what ocikit writes with ``ctr``.

Its root, state and sockets live in a temporary directory; the CRI plugin is off; the
``native`` snapshotter unpacks (overlayfs may be unavailable inside a container). Needs root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from environment import require_binary, skip_or_fail

_CONFIG = """version = 2
root = "{work}/root"
state = "{work}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{work}/containerd.sock"
[ttrpc]
  address = "{work}/containerd.sock.ttrpc"
[debug]
  address = "{work}/debug.sock"
[metrics]
  address = ""
"""


class Containerd:
    def __init__(self, work: str) -> None:
        require_binary("containerd", "ctr")
        if os.geteuid() != 0:
            skip_or_fail("containerd needs root")
        self.work = work
        self.socket = os.path.join(work, "containerd.sock")
        config = os.path.join(work, "config.toml")
        with open(config, "w") as fh:
            fh.write(_CONFIG.format(work=work))
        self.log = open(os.path.join(work, "containerd.log"), "wb")
        self.process = subprocess.Popen(["containerd", "--config", config], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited: see {self.log.name}")
            if os.path.exists(self.socket) and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("containerd did not start")

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "-a", self.socket, "-n", "ocikit-test", *args], capture_output=True,
                              text=True, timeout=120, check=check)

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # our own process, by its pid
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
