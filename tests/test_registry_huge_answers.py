"""A registry answering with a huge body ends in a one-line typed error, in bounded memory.

No real registry serves a 200 MB manifest (distribution refuses pushes above 4 MiB), so the
peer here is a **fake**: a tiny HTTP server that answers the manifest and tag-list endpoints
with an endless body — plain, or a gzip bomb (1 GiB of zeros in about 1 MiB). The CLI runs
in a child process whose peak memory is measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ocikit.registry.client import MAX_MANIFEST_BYTES

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")
PLAIN_SIZE = 200 << 20
BOMB_SIZE = 1 << 30
# Peak RSS of the CLI process: the interpreter and its imports, plus at most one 16 MiB manifest
# buffer. A client that read the whole answer would need 200 MiB (plain) or 1 GiB (bomb).
MEMORY_BOUND_KIB = 160 << 10


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    zeros = bytes(1 << 20)
    return b"".join(compressor.compress(zeros) for _ in range(size >> 20)) + compressor.flush()


class HugeAnswerRegistry:
    """A **fake** registry: /v2/ answers 200, every other GET an oversized body (HEAD: no digest)."""

    def __init__(self) -> None:
        self.bomb = _gzip_bomb(BOMB_SIZE)
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 (http.server naming)
                # No Docker-Content-Digest: ocikit falls back to a GET, as with some real registries.
                self._headers(PLAIN_SIZE, "")

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/v2":
                    self._headers(2, "")
                    self.wfile.write(b"{}")
                    return
                if "bomb" in self.path:
                    self._headers(len(registry.bomb), "gzip")
                    self._send(registry.bomb)
                    return
                self._headers(PLAIN_SIZE, "")
                block = b" " * (1 << 20)
                for _ in range(PLAIN_SIZE >> 20):
                    if not self._send(block):
                        return

            def _headers(self, length: int, encoding: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.send_header("Content-Length", str(length))
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.end_headers()

            def _send(self, data: bytes) -> bool:
                try:
                    self.wfile.write(data)
                    return True
                except OSError:  # the client hung up, as it should
                    self.close_connection = True
                    return False

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def huge_registry():
    server = HugeAnswerRegistry()
    yield server
    server.close()


def _run_measured(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run the CLI; return the result and the child's peak resident memory in KiB."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "result = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)\n"
        "sys.stdout.write(result.stdout + '\\n' + str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
        "sys.stderr.write(result.stderr)\n"
        "sys.exit(result.returncode)\n"
    )
    result = subprocess.run([sys.executable, "-c", wrapper, OCIKIT, *args], capture_output=True, text=True, timeout=180)
    stdout, _, peak = result.stdout.rpartition("\n")
    return subprocess.CompletedProcess(result.args, result.returncode, stdout, result.stderr), int(peak)


@pytest.mark.parametrize("repository", ["big/plain", "big/bomb"])
@pytest.mark.parametrize("command", ["manifest", "tags"])
def test_huge_answer_is_a_one_line_error_in_bounded_memory(huge_registry, command, repository):
    target = f"{huge_registry.host}/{repository}" + (":v1" if command == "manifest" else "")
    result, peak_kib = _run_measured(command, target)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ocikit: error:")
    assert f"larger than {MAX_MANIFEST_BYTES} bytes" in result.stderr
    assert peak_kib < MEMORY_BOUND_KIB, f"peak memory {peak_kib >> 10} MiB"
