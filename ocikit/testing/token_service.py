"""A minimal Docker token service for testing Bearer auth against a real docker-registry.

docker-registry (distribution 2.8) configured with ``auth.token`` verifies JWTs whose
``x5c`` header carries a certificate chaining to its ``rootcertbundle``. This service
holds a self-signed RSA certificate, checks Basic credentials against one user, and
issues RS256 tokens granting exactly the scopes asked for (pull/push on any repository).
It counts token requests so tests can prove tokens are cached per scope.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ISSUER = "ocikit-test-issuer"
SERVICE = "ocikit-test-registry"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Serve ``GET /token`` on a loopback port; ``realm`` is its URL."""

    def __init__(self, workdir: str, username: str, password: str, lifetime: int = 300) -> None:
        self.username, self.password, self.lifetime = username, password, lifetime
        self.requests: list[dict[str, object]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cert = self._self_signed()
        self.cert_path = os.path.join(workdir, "token-root.pem")
        with open(self.cert_path, "wb") as fh:
            fh.write(self._cert.public_bytes(serialization.Encoding.PEM))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _self_signed(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocikit test token issuer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    def issue(self, scopes: list[str], subject: str) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",") if actions else []})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + self.lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        cert_der = self._cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(cert_der).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                query = parse_qs(urlsplit(self.path).query)
                user = self._basic_user()
                service.requests.append({"scopes": query.get("scope", []), "user": user})
                if user is None:
                    self.send_response(401)
                    self.end_headers()
                    return
                token = service.issue(query.get("scope", []), user or "anonymous")
                body = json.dumps({"token": token, "expires_in": service.lifetime}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _basic_user(self) -> str | None:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                ok = user == service.username and password == service.password
                return user if ok else None

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
