"""Facts from spack's metadata: ``.spack/<pkg>/spec.json`` in a view, ``.spack/spec.json`` in a prefix.

Spack copies each package's ``.spack`` directory into the view unrelocated
(REFERENCE.md §7.1). Its ``spec.json`` is the concretized DAG: every node has a name,
version, ``arch`` (platform, os, target — a name, or a dict with the microarchitecture's
features) and ``dependencies`` edges whose ``parameters.virtuals`` say which package
provides which virtual (``mpi`` → ``openmpi``, ``libc`` → ``glibc``). That is better
evidence than sonames: it names the MPI and its version, and the exact CPU target.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# deptypes that put a package into the running view (build-only deps are not needed at run time)
_RUNTIME_DEPTYPES = frozenset({"link", "run"})


@dataclass(frozen=True)
class SpackNode:
    name: str
    version: str
    hash: str
    target: str = ""
    target_features: tuple[str, ...] = ()
    os: str = ""
    platform: str = ""
    external_path: str = ""
    variants: Mapping[str, Any] = field(default_factory=dict, compare=False)

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
class SpackProvider:
    """``virtual`` (mpi, libc, c …) is provided by ``node``; ``runtime`` when linked or run."""

    virtual: str
    node: SpackNode
    runtime: bool

    def to_dict(self) -> dict[str, Any]:
        out = {"virtual": self.virtual, "provider": self.node.spec, "runtime": self.runtime}
        if self.node.external_path:
            out["external"] = self.node.external_path
        return out


@dataclass
class SpackInfo:
    """Everything the scan learned from spack metadata under one root."""

    packages: list[SpackNode] = field(default_factory=list)  # the package each spec.json describes
    providers: dict[str, SpackProvider] = field(default_factory=dict)
    externals: list[SpackNode] = field(default_factory=list)  # link/run deps spack did not build
    spec_files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _nodes: dict[str, SpackNode] = field(default_factory=dict, repr=False)
    # (parent, child, deptypes) over all DAGs; parent/child None when the node is not in the file
    _edges: list[tuple[Any, Any, tuple[str, ...]]] = field(default_factory=list, repr=False)

    @property
    def found(self) -> bool:
        return bool(self.packages)

    def targets(self) -> list[str]:
        return sorted({p.target for p in self.packages if p.target})

    def target_features(self, target: str) -> tuple[str, ...]:
        for node in self.packages:
            if node.target == target and node.target_features:
                return node.target_features
        return ()

    def operating_systems(self) -> list[str]:
        return sorted({p.os for p in self.packages if p.os})

    def node(self, name: str) -> SpackNode | None:
        """Any node of the DAGs (packages and their dependencies) named ``name``."""
        for node in self._nodes.values():
            if node.name == name:
                return node
        return None

    def variant_values(self, variant: str) -> list[str]:
        """Values of a variant across all nodes (``cuda_arch`` → ["80", "90"])."""
        values: set[str] = set()
        for node in self._nodes.values():
            value = node.variants.get(variant)
            if isinstance(value, list):
                values.update(str(v) for v in value if str(v) != "none")
            elif value not in (None, "", "none", False):
                values.add(str(value))
        return sorted(values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "specFiles": list(self.spec_files),
            "packages": [p.to_dict() for p in self.packages],
            "providers": {v: p.to_dict() for v, p in sorted(self.providers.items())},
            "externals": [e.to_dict() for e in self.externals],
            "targets": self.targets(),
            "os": self.operating_systems(),
            **({"errors": list(self.errors)} if self.errors else {}),
        }


def is_spec_file(relative_path: str) -> bool:
    """``.spack/<pkg>/spec.json`` (view) or ``.spack/spec.json`` (install prefix)."""
    parts = relative_path.split("/")
    if parts[-1] != "spec.json" or len(parts) < 2:
        return False
    return parts[-2] == ".spack" or (len(parts) >= 3 and parts[-3] == ".spack")


def read_spack_metadata(root: str, spec_files: Iterable[str]) -> SpackInfo:
    """Parse the ``spec.json`` files (paths relative to ``root``) into one :class:`SpackInfo`."""
    info = SpackInfo()
    seen_roots: set[str] = set()
    for relative in sorted(spec_files):
        try:
            with open(os.path.join(root, relative), "rb") as stream:
                document = json.load(stream)
            nodes, edges = _parse_nodes(document)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            info.errors.append(f"{relative}: {type(exc).__name__}: {exc}")
            continue
        info.spec_files.append(relative)
        if not nodes:
            continue
        for node in nodes.values():
            info._nodes.setdefault(node.hash or node.spec, node)
        root_node = next(iter(nodes.values()))
        if root_node.hash not in seen_roots:
            seen_roots.add(root_node.hash)
            info.packages.append(root_node)
        _collect_providers(info, nodes, edges)
    _collect_externals(info)
    info.packages.sort(key=lambda n: n.name)
    return info


def _parse_nodes(document: Mapping[str, Any]):  # type: ignore[no-untyped-def]
    """(hash → node, in file order; list of (from_hash, to_hash, deptypes, virtuals))."""
    spec = document["spec"]
    raw_nodes = spec["nodes"] if isinstance(spec, Mapping) else _legacy_nodes(spec)
    nodes: dict[str, SpackNode] = {}
    edges: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = []
    for raw in raw_nodes:
        node = _node(raw)
        nodes[node.hash or node.spec] = node
        for dep in raw.get("dependencies") or []:
            params = dep.get("parameters") or {}
            deptypes = tuple(params.get("deptypes") or dep.get("type") or ())
            virtuals = tuple(params.get("virtuals") or ())
            edges.append((node.hash, str(dep.get("hash", "")), deptypes, virtuals))
    return nodes, edges


def _legacy_nodes(spec: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    # spec.json before v0.17 (specfile version 1): [{"<name>": {...}}, ...]
    out = []
    for entry in spec:
        ((name, body),) = entry.items()
        out.append({"name": name, **body})
    return out


def _node(raw: Mapping[str, Any]) -> SpackNode:
    arch = raw.get("arch") or {}
    target = arch.get("target", "")
    features: tuple[str, ...] = ()
    if isinstance(target, Mapping):
        features = tuple(str(f) for f in target.get("features") or ())
        target = target.get("name", "")
    external = raw.get("external") or {}
    return SpackNode(
        name=str(raw.get("name", "")),
        version=str(raw.get("version", "")),
        hash=str(raw.get("hash", "")),
        target=str(target),
        target_features=features,
        os=str(arch.get("platform_os", "")),
        platform=str(arch.get("platform", "")),
        external_path=str(external.get("path", "") or "") if isinstance(external, Mapping) else "",
        variants=dict(raw.get("parameters") or {}),
    )


def _collect_providers(info: SpackInfo, nodes: dict[str, SpackNode], edges) -> None:  # type: ignore[no-untyped-def]
    for _parent, child, deptypes, virtuals in edges:
        node = nodes.get(child)
        if node is None:
            continue
        runtime = bool(_RUNTIME_DEPTYPES.intersection(deptypes))
        for virtual in virtuals:
            known = info.providers.get(virtual)
            # A runtime provider outranks a build-only one for the same virtual.
            if known is None or (runtime and not known.runtime):
                info.providers[virtual] = SpackProvider(virtual, node, runtime)
    info._edges.extend((nodes.get(parent), nodes.get(child), deptypes) for parent, child, deptypes, _ in edges)


def _collect_externals(info: SpackInfo) -> None:
    """External packages that a package in the view links with or runs: the host must have them."""
    seen: set[str] = set()
    for parent, child, deptypes in info._edges:
        if parent is None or child is None or not child.external_path:
            continue
        if _RUNTIME_DEPTYPES.intersection(deptypes) and child.hash not in seen:
            seen.add(child.hash)
            info.externals.append(child)
    info.externals.sort(key=lambda n: n.name)
