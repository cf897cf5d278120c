"""Parse ``WWW-Authenticate`` challenges (RFC 7235) as registries send them.

``Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"``
or ``Basic realm="Registry Realm"``. Quoted values may contain commas and escaped quotes;
one header may carry several challenges.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer" (others are kept but not answered)
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split()) if self.params.get("scope") else ()


def parse_challenges(header: str) -> list[Challenge]:
    """All challenges in one ``WWW-Authenticate`` header value, in order."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme_match = _SCHEME_RE.match(header, pos)
        if not scheme_match:
            break
        scheme = scheme_match.group(1).lower()
        pos = scheme_match.end()
        params: dict[str, str] = {}
        while pos < len(header):
            param = _PARAM_RE.match(header, pos)
            if not param:
                break
            key, value = param.group(1).lower(), param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[key] = value
            pos = param.end()
            if pos < len(header) and header[pos] == ",":
                pos += 1
                # A comma followed by "token token" or "token" then end starts a new challenge.
                if not _PARAM_RE.match(header, pos):
                    break
        challenges.append(Challenge(scheme, params))
        while pos < len(header) and header[pos] in " ,":
            pos += 1
    return challenges


def pick_challenge(header: str) -> Challenge | None:
    """The challenge ocikit answers: Bearer preferred over Basic; None if neither is offered."""
    challenges = parse_challenges(header)
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None
