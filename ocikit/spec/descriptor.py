"""Descriptors and platforms (image-spec descriptor.md, image-index.md).

A :class:`Descriptor` is immutable and converts to and from the wire JSON with
:meth:`Descriptor.to_dict` / :meth:`Descriptor.from_dict`; unknown fields are kept in
``extra`` so copying a foreign manifest never loses data.
"""

from __future__ import annotations

import base64
import platform as _platform
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..digest import digest_bytes, validate_digest
from ..errors import InvalidContentError, InvalidReferenceError
from . import mediatypes as mt


@dataclass(frozen=True)
class Platform:
    """The ``platform`` of an index entry: ``linux/amd64``, ``linux/arm64/v8`` …"""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Platform":
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidReferenceError(f"invalid platform {text!r} (expected os/arch[/variant])")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def host(cls) -> "Platform":
        """The platform of the running machine, in Go's GOARCH spelling."""
        return cls.linux(_platform.machine().lower())

    @classmethod
    def linux(cls, machine: str) -> "Platform":
        """``linux/<GOARCH>[/variant]`` for a uname-style machine name (``x86_64`` → ``linux/amd64``)."""
        arch, variant = _GOARCH.get(machine, (machine, ""))
        return cls("linux", arch, variant)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Platform":
        return cls(
            os=str(data.get("os", "")),
            architecture=str(data.get("architecture", "")),
            variant=str(data.get("variant", "")),
            os_version=str(data.get("os.version", "")),
            os_features=tuple(data.get("os.features", ()) or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out

    def matches(self, wanted: "Platform") -> bool:
        """Whether this platform satisfies ``wanted`` (a missing variant in ``wanted`` matches any)."""
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        if not wanted.variant:
            return True
        return (self.variant or _DEFAULT_VARIANT.get(self.architecture, "")) == wanted.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_GOARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "armv7l": ("arm", "v7"),
    "i686": ("386", ""),
}
_DEFAULT_VARIANT = {"arm64": "v8"}

_KNOWN_FIELDS = {"mediaType", "digest", "size", "annotations", "artifactType", "platform", "urls", "data"}


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: media type, digest, size and optional metadata."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    data: bytes | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_bytes(
        cls,
        media_type: str,
        content: bytes,
        annotations: Mapping[str, str] | None = None,
        artifact_type: str = "",
    ) -> "Descriptor":
        return cls(media_type, digest_bytes(content), len(content), dict(annotations or {}), artifact_type)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Descriptor":
        try:
            media_type = str(data["mediaType"])
            digest = validate_digest(str(data["digest"]))
            size = int(data["size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidContentError(f"invalid descriptor {dict(data)!r}: {exc}") from None
        if size < 0:
            raise InvalidContentError(f"invalid descriptor size {size} for {digest}")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, Mapping):
            raise InvalidContentError(f"invalid annotations in descriptor {digest}")
        platform = data.get("platform")
        inline = data.get("data")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations={str(k): str(v) for k, v in annotations.items()},
            artifact_type=str(data.get("artifactType", "") or ""),
            platform=Platform.from_dict(platform) if isinstance(platform, Mapping) else None,
            urls=tuple(data.get("urls") or ()),
            data=base64.b64decode(inline) if isinstance(inline, str) else None,
            extra={k: v for k, v in data.items() if k not in _KNOWN_FIELDS},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out["mediaType"] = self.media_type
        out["digest"] = self.digest
        out["size"] = self.size
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.urls:
            out["urls"] = list(self.urls)
        if self.data is not None:
            out["data"] = base64.b64encode(self.data).decode()
        return out

    def with_annotations(self, **changes: str) -> "Descriptor":
        merged = dict(self.annotations)
        merged.update(changes)
        return replace(self, annotations=merged)

    def replace(self, **changes: Any) -> "Descriptor":
        return replace(self, **changes)

    @property
    def is_manifest(self) -> bool:
        return self.media_type in mt.MANIFEST_TYPES

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEX_TYPES

    @property
    def title(self) -> str:
        return self.annotations.get(mt.ANNOTATION_TITLE, "")

    def short(self) -> str:
        """``sha256:0123456789ab`` — for messages and progress labels."""
        return self.digest[: self.digest.index(":") + 13]


EMPTY_DESCRIPTOR = Descriptor(mt.OCI_EMPTY, mt.EMPTY_DIGEST, 2)
