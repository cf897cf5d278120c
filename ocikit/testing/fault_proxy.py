"""A loopback reverse proxy in front of a real registry that injects scripted faults.

A real registry never drops a connection mid-blob or answers 500 on cue, so the tests
put this proxy between ocikit and docker-registry. Everything is forwarded verbatim
(the ``Host`` header included, so upload ``Location`` URLs keep pointing at the proxy)
unless a :class:`Fault` rule matches:

* ``status``: answer ``status`` (with ``headers``, e.g. ``Retry-After``) without forwarding;
* ``drop_response``: forward, but cut the connection after ``after_bytes`` of the body;
* ``drop_request``: read ``after_bytes`` of the request body, then cut the connection;
* ``corrupt``: forward, flipping one bit of the response body at ``after_bytes``.

Each rule applies ``times`` times (``-1``: always) and counts its hits. Every request's
method, path and headers are recorded in ``requests``, so a test can prove which headers
(``Authorization``) reached this host.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Fault:
    method: str  # "GET", "PUT", … or "*"
    path: str  # regular expression searched in the request path (query included)
    action: str  # "status" | "drop_response" | "drop_request" | "corrupt"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    after_bytes: int = 0
    times: int = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and re.search(self.path, path) is not None and self.times != 0


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str  # query included
    headers: dict[str, str]  # as received, header names lower-cased


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream  # "127.0.0.1:PORT"
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of every answered request
        self.requests: list[SeenRequest] = []  # every request received, answered or not
        self.body_bytes = 0  # response body bytes sent to clients (what a reader cost)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.log.clear()
            self.requests.clear()
            self.body_bytes = 0

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                with proxy._lock:
                    proxy.requests.append(
                        SeenRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                    )
                fault = proxy._take(self.command, self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if fault and fault.action == "drop_request":
                    self.rfile.read(min(fault.after_bytes, length))
                    self._cut()
                    return
                body = self.rfile.read(length) if length else b""
                if fault and fault.action == "status":
                    self._answer(fault.status, fault.headers)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                self.send_response_only(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Connection", "close")
                self.end_headers()
                with proxy._lock:
                    proxy.log.append((self.command, self.path, response.status))
                if self.command == "HEAD":
                    upstream.close()
                    return
                limit = fault.after_bytes if fault and fault.action == "drop_response" else None
                flip = fault.after_bytes if fault and fault.action == "corrupt" else None
                sent = 0
                while chunk := response.read(64 << 10):
                    if flip is not None and sent <= flip < sent + len(chunk):
                        chunk = chunk[: flip - sent] + bytes([chunk[flip - sent] ^ 1]) + chunk[flip - sent + 1 :]
                    if limit is not None and sent + len(chunk) > limit:
                        self.wfile.write(chunk[: limit - sent])
                        self.wfile.flush()
                        upstream.close()
                        # FIN after the partial body: the client gets every byte sent, then an
                        # early end (an RST could discard queued bytes and make tests racy).
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    with proxy._lock:
                        proxy.body_bytes += len(chunk)
                upstream.close()
                self.close_connection = True

            def _answer(self, status: int, headers: dict[str, str]) -> None:
                payload = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
                self.send_response_only(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                self.close_connection = True
                with proxy._lock:
                    proxy.log.append((self.command, self.path, status))

            def _cut(self) -> None:
                # An abrupt close (RST) so the client sees a broken connection, not a clean EOF.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.close_connection = True
                self.connection.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
