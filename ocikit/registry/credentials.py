"""Find registry credentials the way docker, podman and oras do.

Order: explicit ``Options.username/password``; then the first config file that exists
among ``Options.registry_config``, ``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json``
(else ``~/.docker/config.json``) and podman's ``$XDG_RUNTIME_DIR/containers/auth.json``.
Inside a config: ``credHelpers[host]``, then ``auths[host]`` (``auth`` base64 ``user:pass``
or ``identitytoken``), then ``credsStore``. A Kubernetes ``.dockerconfigjson`` is the same
format, so a pull secret mounted into an init container works as ``--registry-config``.

Secrets are held in :class:`Credential` whose ``repr`` hides them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import AuthenticationError
from ..options import Options
from ..reference import DOCKER_HUB

log = logging.getLogger(__name__)

DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credential:
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)  # OAuth2 refresh token

    @property
    def is_empty(self) -> bool:
        return not (self.username or self.password or self.identity_token)


ANONYMOUS = Credential()


def find_credential(registry: str, options: Options) -> Credential:
    """Credentials for ``registry`` (as written in references, e.g. ``docker.io``), or ANONYMOUS."""
    if options.username or options.password:
        return Credential(options.username, options.password)
    for path in _config_paths(options):
        config = _load_config(path)
        if config is None:
            continue
        credential = _from_config(config, registry, path)
        if credential is not None:
            return credential
    return ANONYMOUS


def _config_paths(options: Options) -> Iterator[str]:
    if options.registry_config:
        yield options.registry_config
        return  # an explicit file is the only source, as with --authfile
    if os.environ.get("REGISTRY_AUTH_FILE"):
        yield os.environ["REGISTRY_AUTH_FILE"]
    docker_config = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    yield os.path.join(docker_config, "config.json")
    if os.environ.get("XDG_RUNTIME_DIR"):
        yield os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers", "auth.json")


def _load_config(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable registry config %s: %s", path, exc)
        return None
    return config if isinstance(config, dict) else None


def _keys_for(registry: str) -> tuple[str, ...]:
    if registry == DOCKER_HUB:
        return DOCKER_HUB_KEYS
    return (registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/")


def _from_config(config: dict[str, Any], registry: str, path: str) -> Credential | None:
    keys = _keys_for(registry)
    helpers = config.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _from_helper(str(helpers[key]), keys[0])
    auths = config.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict):
            credential = _from_auth_entry(entry, registry, path)
            if credential is not None:
                return credential
    if config.get("credsStore"):
        return _from_helper(str(config["credsStore"]), keys[0])
    return None


def _from_auth_entry(entry: dict[str, Any], registry: str, path: str) -> Credential | None:
    if entry.get("identitytoken"):
        return Credential(username=str(entry.get("username", "")), identity_token=str(entry["identitytoken"]))
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"])).decode()
            username, _, password = decoded.partition(":")
        except (ValueError, UnicodeDecodeError):
            raise AuthenticationError(registry, "read credentials", reason=f"malformed 'auth' entry in {path}") from None
        return Credential(username, password)
    if entry.get("username") or entry.get("password"):
        return Credential(str(entry.get("username", "")), str(entry.get("password", "")))
    return None


def _from_helper(helper: str, server_url: str) -> Credential | None:
    """Ask ``docker-credential-<helper> get``; None when it has nothing for this server."""
    program = f"docker-credential-{helper}"
    try:
        result = subprocess.run(
            [program, "get"], input=server_url.encode(), capture_output=True, timeout=30, check=False
        )
    except FileNotFoundError:
        log.warning("credential helper %s is configured but not installed", program)
        return None
    except subprocess.TimeoutExpired:
        log.warning("credential helper %s timed out", program)
        return None
    if result.returncode != 0:
        return None  # "credentials not found in native keychain" and friends
    try:
        data = json.loads(result.stdout)
    except ValueError:
        log.warning("credential helper %s printed something that is not JSON", program)
        return None
    username, secret = str(data.get("Username", "")), str(data.get("Secret", ""))
    if username == "<token>":
        return Credential(identity_token=secret)
    return Credential(username, secret)
