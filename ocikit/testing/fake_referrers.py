"""FAKE referrers API in front of a real docker-registry (which lacks it).

distribution 2.8 has no ``/v2/<name>/referrers/<digest>`` and never sends ``OCI-Subject``,
so the API branch of ocikit's referrers code cannot be exercised against it. This proxy
forwards everything to the real registry and adds only that missing behaviour: it notes
every manifest PUT that carries a ``subject``, answers ``OCI-Subject`` on such PUTs, and
serves the referrers endpoint (with ``artifactType`` filtering and ``OCI-Filters-Applied``)
from what it noted. It is a fake, named as one; everything else is the real registry.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ..digest import digest_bytes
from ..spec import mediatypes as mt

_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")


class FakeReferrersRegistry:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.referrers: dict[tuple[str, str], list[dict[str, object]]] = {}
        self.referrers_requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _note(self, name: str, raw: bytes, media_type: str) -> str | None:
        try:
            document = json.loads(raw)
        except ValueError:
            return None
        subject = document.get("subject") if isinstance(document, dict) else None
        if not isinstance(subject, dict):
            return None
        config = document.get("config") or {}
        entry = {
            "mediaType": document.get("mediaType", media_type),
            "digest": digest_bytes(raw),
            "size": len(raw),
            "artifactType": document.get("artifactType") or config.get("mediaType", ""),
        }
        if document.get("annotations"):
            entry["annotations"] = document["annotations"]
        with self._lock:
            self.referrers.setdefault((name, subject["digest"]), []).append(entry)
        return str(subject["digest"])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                match = _REFERRERS.match(parts.path)
                if match and self.command == "GET":
                    self._referrers(match["name"], match["digest"], parse_qs(parts.query))
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream = http.client.HTTPConnection(fake.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                subject = None
                manifest = _MANIFEST.match(parts.path)
                if manifest and self.command == "PUT" and response.status == 201:
                    subject = fake._note(manifest["name"], body, self.headers.get("Content-Type", ""))
                self.send_response_only(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                if subject:
                    self.send_header("OCI-Subject", subject)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                upstream.close()

            def _referrers(self, name: str, digest: str, query: dict[str, list[str]]) -> None:
                wanted = (query.get("artifactType") or [""])[0]
                with fake._lock:
                    fake.referrers_requests += 1
                    entries = list(fake.referrers.get((name, digest), []))
                if wanted:
                    entries = [e for e in entries if e.get("artifactType") == wanted]
                body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}).encode()
                self.send_response(200)
                self.send_header("Content-Type", mt.OCI_INDEX)
                if wanted:
                    self.send_header("OCI-Filters-Applied", "artifactType")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
