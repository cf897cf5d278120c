"""spack's ``spec.json``: the one reader of the concretized DAG spack writes beside every install.

Spack keeps ``<prefix>/.spack/spec.json`` in each install prefix and copies it, unrelocated,
to ``<view>/.spack/<name>/spec.json`` in a view. Push-view needs a package's version and
hash from it, compat needs the whole DAG (targets, providers of virtuals, externals); both
read it here, into :class:`SpecFile`.

The first node is the package the file describes. The layouts by spack's specfile version:

=======  ===============  ==============================================================
version  spack            shape
=======  ===============  ==============================================================
1        up to 0.16       ``{"spec": [{"<name>": {...}}, ...]}``; dependencies are a map
                          ``name -> {"hash", "type"}`` whose hash is the child's build hash
2        0.17, 0.18       ``{"spec": {"_meta": {"version": 2}, "nodes": [...]}}``;
                          dependencies ``[{"name", "build_hash", "type"}]``
3        0.19             dependencies ``[{"name", "hash", "type"}]``
4, 5     0.20 to 1.x      dependencies ``[{"name", "hash", "parameters": {"deptypes", "virtuals"}}]``
=======  ===============  ==============================================================

``arch.target`` is a name, or (for a microarchitecture) a map with its ``name`` and
``features``. The yaml-era ``spec.yaml`` is not read.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..errors import InvalidContentError, LocalIOError

SPEC_FILE_NAME = "spec.json"
METADATA_DIR = ".spack"

# deptypes that put a package into the running view (build-only dependencies are not needed at run time)
RUNTIME_DEPTYPES = frozenset({"link", "run"})


@dataclass(frozen=True)
class SpecEdge:
    """A dependency edge: ``name`` (whose ``key`` identifies it in the file) with its types."""

    name: str
    key: str  # the child's dag hash (specfile v3+) or build hash (v1, v2)
    deptypes: tuple[str, ...] = ()
    virtuals: tuple[str, ...] = ()  # the virtuals (mpi, libc, c …) the child provides to the parent

    @property
    def runtime(self) -> bool:
        return bool(RUNTIME_DEPTYPES.intersection(self.deptypes))


@dataclass(frozen=True)
class SpecNode:
    """One concretized package of the DAG."""

    name: str
    version: str
    hash: str
    target: str = ""
    target_features: tuple[str, ...] = ()
    os: str = ""
    platform: str = ""
    external_path: str = ""
    variants: Mapping[str, Any] = field(default_factory=dict, compare=False)
    dependencies: tuple[SpecEdge, ...] = field(default=(), compare=False)
    build_hash: str = field(default="", compare=False)  # what v1/v2 dependency edges name

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "hash": self.hash}
        if self.target:
            out["target"] = self.target
        if self.os:
            out["os"] = self.os
        if self.external_path:
            out["external"] = self.external_path
        return out


@dataclass(frozen=True)
class SpecFile:
    """A parsed ``spec.json``: its format version and its nodes in file order (the root first)."""

    version: int
    nodes: tuple[SpecNode, ...]

    @property
    def root(self) -> SpecNode | None:
        return self.nodes[0] if self.nodes else None

    def node(self, name: str) -> SpecNode | None:
        return next((n for n in self.nodes if n.name == name), None)

    def child(self, edge: SpecEdge) -> SpecNode | None:
        """The node an edge points at (None when the file does not hold it)."""
        return self._by_key.get(edge.key) if edge.key else None

    @cached_property
    def _by_key(self) -> dict[str, SpecNode]:
        keys = {node.build_hash: node for node in self.nodes if node.build_hash}
        keys.update((node.hash, node) for node in self.nodes if node.hash)
        return keys

    def edges(self) -> Iterator[tuple[SpecNode, SpecEdge, SpecNode | None]]:
        """Every (parent, edge, child) of the DAG, parents in file order."""
        for parent in self.nodes:
            for edge in parent.dependencies:
                yield parent, edge, self.child(edge)


def is_spec_file(relative_path: str) -> bool:
    """``.spack/<pkg>/spec.json`` (view) or ``.spack/spec.json`` (install prefix)."""
    parts = relative_path.split("/")
    if parts[-1] != SPEC_FILE_NAME or len(parts) < 2:
        return False
    return parts[-2] == METADATA_DIR or (len(parts) >= 3 and parts[-3] == METADATA_DIR)


def spec_file_in(metadata_dir: str) -> str:
    """The ``spec.json`` path inside a package's metadata directory (``.spack/<pkg>``)."""
    return posixpath.join(metadata_dir, SPEC_FILE_NAME)


def read_spec_file(path: str, shown_as: str = "") -> SpecFile:
    """Read and parse ``path``; errors name it ``shown_as`` (default: the path itself)."""
    shown = shown_as or path
    try:
        with open(path, "rb") as stream:
            document = json.load(stream)
    except OSError as exc:
        raise LocalIOError(f"cannot read {shown}: {exc.strerror}") from None
    except ValueError as exc:  # also a UnicodeDecodeError
        raise InvalidContentError(f"{shown} is not valid JSON: {exc}") from None
    return parse_spec_document(document, shown)


def parse_spec_document(document: Any, shown: str = SPEC_FILE_NAME) -> SpecFile:
    """A :class:`SpecFile` from the decoded JSON of a ``spec.json`` (any version in the table)."""
    spec = document.get("spec") if isinstance(document, Mapping) else None
    if isinstance(spec, list):
        return SpecFile(1, tuple(_node(_legacy_node(entry, shown), shown) for entry in spec))
    if not isinstance(spec, Mapping) or not isinstance(spec.get("nodes"), list):
        raise InvalidContentError(f"{shown} is not a spack spec file (no 'spec' nodes)")
    return SpecFile(_format_version(spec.get("_meta")), tuple(_node(raw, shown) for raw in spec["nodes"]))


def _format_version(meta: Any) -> int:
    """``_meta.version``, 0 when absent or not a number."""
    version = meta.get("version") if isinstance(meta, Mapping) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


def _legacy_node(entry: Any, shown: str) -> Mapping[str, Any]:
    # specfile v1: each node is a one-entry map {"<name>": {...}}
    if not isinstance(entry, Mapping) or len(entry) != 1:
        raise InvalidContentError(f"{shown}: a node of a version 1 spec is not a {{name: node}} map")
    ((name, body),) = entry.items()
    if not isinstance(body, Mapping):
        raise InvalidContentError(f"{shown}: node {name!r} is not an object")
    return {**body, "name": name}


def _node(raw: Any, shown: str) -> SpecNode:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise InvalidContentError(f"{shown}: a spec node has no name")
    arch = _mapping(raw.get("arch"))
    target = arch.get("target")
    features: tuple[str, ...] = ()
    if isinstance(target, Mapping):
        features = _strings(target.get("features"))
        target = target.get("name")
    return SpecNode(
        name=raw["name"],
        version=_text(raw.get("version")),
        hash=_text(raw.get("hash")),
        target=_text(target),
        target_features=features,
        os=_text(arch.get("platform_os")),
        platform=_text(arch.get("platform")),
        external_path=_external_path(raw.get("external")),
        variants=dict(_mapping(raw.get("parameters"))),
        dependencies=_edges(raw.get("dependencies"), shown),
        build_hash=_text(raw.get("build_hash")),
    )


def _edges(raw: Any, shown: str) -> tuple[SpecEdge, ...]:
    if isinstance(raw, Mapping):  # v1: {name: {"hash", "type"}}
        return tuple(_edge({**_mapping(body), "name": name}, shown) for name, body in raw.items())
    if isinstance(raw, list):
        return tuple(_edge(entry, shown) for entry in raw)
    if raw is None:
        return ()
    raise InvalidContentError(f"{shown}: 'dependencies' is neither a list nor a map")


def _edge(raw: Any, shown: str) -> SpecEdge:
    if not isinstance(raw, Mapping):
        raise InvalidContentError(f"{shown}: a dependency is not an object")
    parameters = _mapping(raw.get("parameters"))
    return SpecEdge(
        name=_text(raw.get("name")),
        key=_text(raw.get("hash") or raw.get("build_hash")),
        deptypes=_strings(parameters.get("deptypes") or raw.get("type")),
        virtuals=_strings(parameters.get("virtuals")),
    )


def _external_path(raw: Any) -> str:
    return _text(raw.get("path")) if isinstance(raw, Mapping) else ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    """A scalar as text ("" for a missing, null or structured value)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(v for v in value if isinstance(v, str))
    return ()
