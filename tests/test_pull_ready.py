"""The ready marker from the outside: `ocikit wait` in another process, timeouts, a pull
killed half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from pull_support import TarBuilder, ThrottledProxy, leftovers, push_tar

import ocikit
from ocikit.errors import WaitTimeoutError
from ocikit.pull import ready

OCIKIT = [sys.executable, "-m", "ocikit_cli.main"]


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*OCIKIT, *args], capture_output=True, text=True, **kwargs)


def test_wait_times_out_with_a_clear_message_and_exit_code(tmp_path):
    dest = str(tmp_path / "never")
    result = _cli("wait", dest, "--timeout", "0.3")
    assert result.returncode == 8
    assert result.stderr.strip() == (
        f"ocikit: error: {dest} is not ready after 0.3 s (no ready marker at {dest}/.ocikit/ready.json)"
    )
    with pytest.raises(WaitTimeoutError):
        ocikit.wait_ready(dest, timeout=0)


def test_waiter_in_another_process_unblocks_when_the_marker_appears(tmp_path):
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "work" / "dest")
    push_tar(layout, TarBuilder().file("app.py", b"print(1)").bytes())
    waiter = subprocess.Popen([*OCIKIT, "wait", dest, "--timeout", "60", "--json"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the waiter is up and blocked (DEST and even its parent do not exist yet)
        assert waiter.poll() is None
        os.makedirs(os.path.dirname(dest))
        time.sleep(0.3)
        assert waiter.poll() is None  # a parent appearing is not readiness
        result = ocikit.pull(f"oci:{layout}:v1", dest)
        out, _ = waiter.communicate(timeout=30)
    finally:
        waiter.kill()
    assert waiter.returncode == 0
    assert json.loads(out)["digest"] == result.digest


def test_wait_for_a_specific_digest(tmp_path):
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    push_tar(layout, TarBuilder().file("v", b"1").bytes())
    first = ocikit.pull(f"oci:{layout}:v1", dest)
    push_tar(layout, TarBuilder().file("v", b"2").bytes())
    second_digest = ocikit.resolve(f"oci:{layout}:v1").digest
    assert second_digest != first.digest
    timeout = _cli("wait", dest, "--timeout", "0.2", "--digest", second_digest)
    assert timeout.returncode == 8 and f"the marker names {first.digest}" in timeout.stderr
    waiter = subprocess.Popen([*OCIKIT, "wait", dest, "--timeout", "60", "--digest", second_digest], stdout=subprocess.PIPE)
    try:
        time.sleep(0.5)
        assert waiter.poll() is None
        ocikit.pull(f"oci:{layout}:v1", dest)  # replaces the tree by an atomic exchange
        assert waiter.wait(timeout=30) == 0
    finally:
        waiter.kill()


def test_wait_sleeps_on_inotify_instead_of_polling(tmp_path, monkeypatch):
    """While nothing changes the marker is read once per safety interval, not in a loop."""
    reads = []
    real = ready.read_marker
    monkeypatch.setattr(ready, "read_marker", lambda *a, **k: reads.append(1) or real(*a, **k))
    monkeypatch.setattr(ready, "SAFETY_RECHECK", 30.0)
    with pytest.raises(WaitTimeoutError):
        ready.wait_ready(str(tmp_path / "dest"), timeout=1.5)
    assert len(reads) <= 2


def test_killed_pull_never_looks_ready(tmp_path, registry):
    """SIGKILL a pull at several moments against a slow registry: never a marker for a partial tree."""
    layout = str(tmp_path / "layout")
    files = TarBuilder()
    for i in range(40):
        files.file(f"d{i % 4}/f{i}", os.urandom(40_000))
    desc = push_tar(layout, files.bytes(), kind="none")
    ocikit.copy(f"oci:{layout}:v1", f"{registry}/pull/killed:v1")
    proxy = ThrottledProxy(registry, bytes_per_second=600_000)  # ~3 s for the 1.6 MB layer
    try:
        interrupted = []
        for delay in (0.5, 1.5, 2.5):
            dest = str(tmp_path / f"dest-{delay}")
            process = subprocess.Popen([*OCIKIT, "pull", f"{proxy.host}/pull/killed:v1", dest, "--json"])
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert ready.read_marker(dest) is None, f"killed after {delay} s but marked ready"
            assert not os.path.exists(dest) or not os.listdir(dest)
            interrupted += leftovers(str(tmp_path), os.path.basename(dest))
        assert interrupted, "no kill landed while a staging tree was being filled"
        # the next pull cleans the stale staging and completes
        result = ocikit.pull(f"{proxy.host}/pull/killed:v1", dest)
        assert result.digest == desc.digest and ready.is_ready(dest, desc.digest)
        assert sorted(n for n in os.listdir(tmp_path) if n.startswith(f".dest-{delay}")) == [f".dest-{delay}.ocikit-lock"]
        assert len(os.listdir(os.path.join(dest, "d0"))) == 10
    finally:
        proxy.close()
