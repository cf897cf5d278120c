"""The view config: what push-view writes and pull reads, parsed and validated once.

A view's metadata tells a puller everything it needs without opening a layer: where the view
lived, its packages and layers (with each layer's uncompressed digest and tar size), the
symlinks its publisher declared as pointing outside, and the relocation record.

**Two shapes.** Since schema version 2 a view's config blob is an OCI *image* config
(``application/vnd.oci.image.config.v1+json``: ``architecture``, ``os``, ``created``,
``rootfs.diff_ids``), so containerd, CRI-O, skopeo and umoci treat the view as an image; the
view metadata sits in it under the key :data:`VIEW_KEY` (JSON Schema
``schemas/ocikit.view.config.v2.schema.json``). Image-spec readers ignore keys they do not
know. ocikit 0.1 wrote the view metadata itself as the config
(``application/vnd.ocikit.view.config.v1+json``, schema version 1); both are read.

Every reader goes through :meth:`ViewConfig.from_document`, which checks types once and
raises :class:`~ocikit.errors.InvalidContentError` naming the bad field; code below never
calls ``.get()`` on the raw JSON. :meth:`ViewConfig.to_document` writes the same shape back,
so push and pull cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import InvalidContentError
from .descriptor import Platform

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: ocikit 0.1 (the config blob is the view document itself)
VIEW_KEY = "vnd.ocikit.view"  # where an image-shaped config holds the view document
_T = TypeVar("_T")


@dataclass(frozen=True)
class RelocationRecord:
    """How to restore a view at another path: replace :attr:`stored_prefix` in ``files``.

    ``mount_path`` (version 2): the path the layers were relocated to at push, where the
    unpacked tree runs as is (an image volume's mount path). ``placeholder`` (version 1 only):
    a same-length stand-in for ``root`` that runs nowhere.
    """

    root: str
    view_path: str
    placeholder: str = ""
    files: tuple[str, ...] = ()
    relative_rpaths: bool = True
    store_root: str = ""
    mount_path: str = ""

    @property
    def stored_prefix(self) -> str:
        """The prefix the layers' bytes hold: the mount path, the placeholder, or else the root."""
        return self.mount_path or self.placeholder or self.root

    @property
    def home(self) -> str:
        """Where the tree works without relocation: the mount path, else the root it was built at."""
        return self.mount_path or self.root

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "root": self.root,
            "viewPath": self.view_path,
            "placeholder": self.placeholder,
            "files": sorted(set(self.files)),
            "relativeRpaths": self.relative_rpaths,
        }
        if self.store_root:
            doc["storeRoot"] = self.store_root
        if self.mount_path:
            doc["mountPath"] = self.mount_path
        return doc

    @classmethod
    def from_document(cls, doc: Any) -> RelocationRecord:
        doc = _mapping(doc, "relocation")
        return cls(
            root=_str(doc, "root", "relocation"),
            view_path=_str(doc, "viewPath", "relocation", default=""),
            placeholder=_str(doc, "placeholder", "relocation", default=""),
            files=_strings(doc, "files", "relocation"),
            relative_rpaths=_bool(doc, "relativeRpaths", "relocation", default=True),
            store_root=_str(doc, "storeRoot", "relocation", default=""),
            mount_path=_str(doc, "mountPath", "relocation", default=""),
        )


@dataclass(frozen=True)
class PackageRef:
    name: str
    version: str = ""
    hash: str = ""


@dataclass(frozen=True)
class ViewLayer:
    """One layer as the config records it (``counts``: files, symlinks, hardlinks, directories, bytes)."""

    digest: str
    size: int
    media_type: str
    diff_id: str
    tar_size: int
    title: str
    role: str
    part: int = 1
    parts: int = 1
    package: PackageRef | None = None
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "digest": self.digest,
            "size": self.size,
            "mediaType": self.media_type,
            "diffId": self.diff_id,
            "tarSize": self.tar_size,
            "title": self.title,
            "role": self.role,
            "part": self.part,
            "parts": self.parts,
            **self.counts,
        }
        if self.package is not None:
            doc["package"] = {"name": self.package.name, "version": self.package.version, "hash": self.package.hash}
        return doc

    @classmethod
    def from_document(cls, doc: Any) -> ViewLayer:
        doc = _mapping(doc, "layers[]")
        package = doc.get("package")
        ref = None
        if package is not None:
            package = _mapping(package, "layers[].package")
            ref = PackageRef(
                _str(package, "name", "layers[].package"),
                _str(package, "version", "layers[].package", default=""),
                _str(package, "hash", "layers[].package", default=""),
            )
        counts = {k: _int(doc, k, "layers[]") for k in ("files", "symlinks", "hardlinks", "directories", "bytes")
                  if k in doc}
        return cls(
            digest=_str(doc, "digest", "layers[]"),
            size=_int(doc, "size", "layers[]", default=0),
            media_type=_str(doc, "mediaType", "layers[]", default=""),
            diff_id=_str(doc, "diffId", "layers[]", default=""),
            tar_size=_int(doc, "tarSize", "layers[]", default=-1),
            title=_str(doc, "title", "layers[]", default=""),
            role=_str(doc, "role", "layers[]", default=""),
            part=_int(doc, "part", "layers[]", default=1),
            parts=_int(doc, "parts", "layers[]", default=1),
            package=ref,
            counts=counts,
        )

    @property
    def identity(self) -> str:
        """A stable name across pushes (same package, same part): a hint for the push digest cache."""
        if self.package is not None:
            who = f"{self.package.name}@{self.package.version}/{self.package.hash}" if self.package.hash else self.package.name
        else:
            who = self.title
        return f"{self.role}:{who}#{self.part}/{self.parts}"


@dataclass(frozen=True)
class ViewConfig:
    """The whole config document (see the module docstring and the JSON Schema)."""

    name: str
    kind: str
    view_path: str
    real_root: str
    relocation: RelocationRecord
    layers: tuple[ViewLayer, ...] = ()
    store_root: str | None = None
    created: str = ""
    layering: str = "packages"
    compression: Mapping[str, Any] = field(default_factory=dict)
    mtimes: str = "filesystem"
    packages: tuple[Mapping[str, Any], ...] = ()
    totals: Mapping[str, int] = field(default_factory=dict)
    external_symlinks: tuple[str, ...] = ()
    spack_version: str = ""

    def layer(self, digest: str) -> ViewLayer | None:
        for layer in self.layers:
            if layer.digest == digest:
                return layer
        return None

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "name": self.name,
            "kind": self.kind,
            "viewPath": self.view_path,
            "realRoot": self.real_root,
            "storeRoot": self.store_root,
            "created": self.created,
            "layering": self.layering,
            "compression": dict(self.compression),
            "mtimes": self.mtimes,
            "packages": [dict(p) for p in self.packages],
            "layers": [layer.to_document() for layer in self.layers],
            "totals": dict(self.totals),
            "externalSymlinks": list(self.external_symlinks),
            "relocation": self.relocation.to_document(),
        }
        if self.spack_version:
            doc["spackVersion"] = self.spack_version
        return doc

    def to_image_config(self, platform: Platform) -> dict[str, Any]:
        """The config blob push-view writes: an OCI image config holding this document under VIEW_KEY."""
        return {
            "architecture": platform.architecture,
            "os": platform.os,
            **({"variant": platform.variant} if platform.variant else {}),
            "created": self.created,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in self.layers]},
            VIEW_KEY: self.to_document(),
        }

    @classmethod
    def from_document(cls, doc: Any) -> ViewConfig:
        """Parse and check a config blob of either shape; raises InvalidContentError naming the bad field."""
        doc = _mapping(doc, "view config")
        if VIEW_KEY in doc:  # image-shaped (version 2 on): the view document is one member
            doc = _mapping(doc[VIEW_KEY], VIEW_KEY)
        version = doc.get("schemaVersion", 1)
        if version not in READABLE_VERSIONS:
            raise InvalidContentError(
                f"view config schemaVersion {version!r} is not supported (this ocikit reads {READABLE_VERSIONS})"
            )
        layers = doc.get("layers", [])
        packages = doc.get("packages", [])
        if not isinstance(layers, list) or not isinstance(packages, list):
            raise InvalidContentError("view config: layers and packages must be lists")
        store_root = doc.get("storeRoot")
        if store_root is not None and not isinstance(store_root, str):
            raise InvalidContentError("view config: storeRoot must be a string or null")
        return cls(
            name=_str(doc, "name", "view config", default=""),
            kind=_str(doc, "kind", "view config", default="directory"),
            view_path=_str(doc, "viewPath", "view config", default=""),
            real_root=_str(doc, "realRoot", "view config", default=""),
            relocation=RelocationRecord.from_document(doc.get("relocation", {"root": ""})),
            layers=tuple(ViewLayer.from_document(layer) for layer in layers),
            store_root=store_root,
            created=_str(doc, "created", "view config", default=""),
            layering=_str(doc, "layering", "view config", default="packages"),
            compression=dict(_mapping(doc.get("compression", {}), "compression")),
            mtimes=_str(doc, "mtimes", "view config", default="filesystem"),
            packages=tuple(_mapping(p, "packages[]") for p in packages),
            totals={k: int(v) for k, v in _mapping(doc.get("totals", {}), "totals").items() if isinstance(v, int)},
            external_symlinks=_strings(doc, "externalSymlinks", "view config"),
            spack_version=_str(doc, "spackVersion", "view config", default=""),
        )


# -- field readers: one message shape for every bad field ------------------------------------

_MISSING: Any = object()


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidContentError(f"view config: {where} must be an object")
    return value


def _field(doc: Mapping[str, Any], key: str, where: str, kind: type[_T], default: Any) -> _T:
    value = doc.get(key, default)
    if value is _MISSING:
        raise InvalidContentError(f"view config: {where} has no {key!r}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidContentError(f"view config: {where}.{key} must be a {kind.__name__}")
    return value


def _str(doc: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> str:
    return _field(doc, key, where, str, default)


def _int(doc: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> int:
    return _field(doc, key, where, int, default)


def _bool(doc: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> bool:
    return _field(doc, key, where, bool, default)


def _strings(doc: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value: Sequence[Any] = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidContentError(f"view config: {where}.{key} must be a list of strings")
    return tuple(value)
