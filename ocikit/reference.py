"""Parse references the way the container ecosystem does.

Two kinds of reference exist:

* :class:`RegistryReference` — ``[host[:port]/]repo/name[:tag][@digest]`` with docker's
  normalisation: a first path component that has no ``.`` or ``:`` and is not ``localhost``
  is part of the repository on ``docker.io``, and single-component names there live under
  ``library/`` (``ubuntu`` → ``docker.io/library/ubuntu``).
* :class:`LayoutReference` — ``oci:PATH[:TAG|@DIGEST]`` (also ``oci-layout:``), an OCI
  image-layout directory on disk. This is ocikit's embedded default: no server needed.

Grammar from distribution/reference (``reference/regexp.go``), tag up to 128 characters.

A reference without a tag means ``latest`` for both kinds, for pull and push alike
(:class:`DefaultTag` holds that rule): ``push-view DIR oci:/x`` tags ``latest``, and
``pull oci:/x`` resolves ``latest``. How a layout without a ``latest`` tag answers is the
layout store's business (:meth:`ocikit.content.layout.LayoutStore.resolve`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .digest import validate_digest
from .errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
LAYOUT_SCHEMES = ("oci:", "oci-layout:", "oci-layout://")

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")


class DefaultTag:
    """The one rule for a reference without a tag: it means ``latest``, for pull and push alike."""

    tag: str
    digest: str

    @property
    def reference(self) -> str:
        """What to resolve: the digest if pinned, else the tag (``latest`` when none is given)."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def push_tag(self) -> str:
        """The tag a push writes: the tag, ``latest`` when none is given, none when pinned by digest."""
        return self.tag or ("" if self.digest else DEFAULT_TAG)


@dataclass(frozen=True)
class RegistryReference(DefaultTag):
    """A repository on a registry, optionally pinned to a tag and/or digest."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def api_host(self) -> str:
        """The host the HTTP API lives on (Docker Hub's API is not on ``docker.io``)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def is_loopback(self) -> bool:
        host = self.registry.rsplit(":", 1)[0] if not self.registry.startswith("[") else self.registry
        return host in ("localhost", "127.0.0.1", "[::1]") or host.startswith("127.")

    def with_tag(self, tag: str) -> "RegistryReference":
        return replace(self, tag=_check_tag(tag), digest="")

    def with_digest(self, digest: str) -> "RegistryReference":
        return replace(self, digest=validate_digest(digest))

    def repository_reference(self) -> "RegistryReference":
        return replace(self, tag="", digest="")

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class LayoutReference(DefaultTag):
    """An OCI image layout directory, optionally with a tag (``ref.name``) or digest."""

    path: str
    tag: str = ""
    digest: str = ""

    def with_tag(self, tag: str) -> "LayoutReference":
        return replace(self, tag=_check_tag(tag), digest="")

    def with_digest(self, digest: str) -> "LayoutReference":
        return replace(self, digest=validate_digest(digest))

    def repository_reference(self) -> "LayoutReference":
        return replace(self, tag="", digest="")

    def __str__(self) -> str:
        text = f"oci:{self.path}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


Reference = RegistryReference | LayoutReference


def name_with(name: str, tag_or_digest: str) -> str:
    """``repo:tag`` or ``repo@sha256:…``: how a name and a tag *or digest* are written together."""
    return f"{name}@{tag_or_digest}" if ":" in tag_or_digest else f"{name}:{tag_or_digest}"


def parse_reference(text: str) -> Reference:
    """Parse a registry or layout reference; raise :class:`InvalidReferenceError` naming the problem."""
    if not text or text != text.strip():
        raise InvalidReferenceError(f"invalid reference {text!r}: empty or surrounded by whitespace")
    for scheme in LAYOUT_SCHEMES:
        if text.startswith(scheme):
            return parse_layout_reference(text[len(scheme) :], original=text)
    return parse_registry_reference(text)


def parse_layout_reference(spec: str, original: str = "") -> LayoutReference:
    """``PATH[:TAG|@DIGEST]`` — the part after ``oci:``."""
    original = original or f"oci:{spec}"
    path, tag, digest = spec, "", ""
    if "@" in path:
        path, digest = path.rsplit("@", 1)
        _digest_or_raise(digest, original)
    # A tag is what follows the last ':' when that part has no '/' (paths may contain ':').
    head, sep, tail = path.rpartition(":")
    if sep and head and "/" not in tail:
        if not _TAG_RE.match(tail):
            raise InvalidReferenceError(f"invalid reference {original!r}: bad tag {tail!r}")
        path, tag = head, tail
    if not path:
        raise InvalidReferenceError(f"invalid reference {original!r}: no layout path")
    return LayoutReference(path, tag, digest)


def parse_registry_reference(text: str) -> RegistryReference:
    name, digest = text, ""
    if "@" in name:
        name, digest = name.split("@", 1)
        _digest_or_raise(digest, text)
    tag = ""
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidReferenceError(f"invalid reference {text!r}: bad tag {tag!r}")
    registry, repository = split_registry(name, text)
    return RegistryReference(registry, repository, tag, digest)


def split_registry(name: str, original: str = "") -> tuple[str, str]:
    """Split ``host[:port]/repo`` into registry and repository, applying docker's defaults."""
    original = original or name
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _HOST_RE.match(first):
            raise InvalidReferenceError(f"invalid reference {original!r}: bad registry host {first!r}")
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not repository or not _REPOSITORY_RE.match(repository):
        raise InvalidReferenceError(
            f"invalid reference {original!r}: repository {repository!r} must be lowercase "
            "path components separated by '/'"
        )
    if len(registry) + 1 + len(repository) > 255:
        raise InvalidReferenceError(f"invalid reference {original!r}: name longer than 255 characters")
    return registry, repository


def _check_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise InvalidReferenceError(f"invalid tag {tag!r}")
    return tag


def _digest_or_raise(digest: str, original: str) -> None:
    try:
        validate_digest(digest)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"invalid reference {original!r}: {exc}") from None
