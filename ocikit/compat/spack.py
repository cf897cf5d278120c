"""Facts from spack's metadata: ``.spack/<pkg>/spec.json`` in a view, ``.spack/spec.json`` in a prefix.

Spack copies each package's ``.spack`` directory into the view unrelocated
(fixtures/spack-views/README.md shows a real one). Its ``spec.json`` is the concretized DAG: every node has a name,
version, ``arch`` (platform, os, target — a name, or a dict with the microarchitecture's
features) and ``dependencies`` edges whose ``parameters.virtuals`` say which package
provides which virtual (``mpi`` → ``openmpi``, ``libc`` → ``glibc``). That is better
evidence than sonames: it names the MPI and its version, and the exact CPU target.
The files are read by :mod:`ocikit.spack.specfile`; this module turns their DAGs into facts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidContentError, LocalIOError
from ..spack.specfile import SpecFile, SpecNode, read_spec_file


@dataclass(frozen=True)
class SpackProvider:
    """``virtual`` (mpi, libc, c …) is provided by ``node``; ``runtime`` when linked or run."""

    virtual: str
    node: SpecNode
    runtime: bool

    def to_dict(self) -> dict[str, Any]:
        out = {"virtual": self.virtual, "provider": self.node.spec, "runtime": self.runtime}
        if self.node.external_path:
            out["external"] = self.node.external_path
        return out


@dataclass
class SpackInfo:
    """Everything the scan learned from spack metadata under one root."""

    packages: list[SpecNode] = field(default_factory=list)  # the package each spec.json describes
    providers: dict[str, SpackProvider] = field(default_factory=dict)
    externals: list[SpecNode] = field(default_factory=list)  # link/run deps spack did not build
    spec_files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _nodes: dict[str, SpecNode] = field(default_factory=dict, repr=False)
    # (parent, child, runtime) over all DAGs
    _edges: list[tuple[SpecNode, SpecNode, bool]] = field(default_factory=list, repr=False)

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

    def node(self, name: str) -> SpecNode | None:
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


def read_spack_metadata(root: str, spec_files: Iterable[str]) -> SpackInfo:
    """Parse the ``spec.json`` files (paths relative to ``root``) into one :class:`SpackInfo`."""
    info = SpackInfo()
    seen_roots: set[str] = set()
    for relative in sorted(spec_files):
        try:
            spec_file = read_spec_file(os.path.join(root, relative), shown_as=relative)
        except (InvalidContentError, LocalIOError) as exc:
            info.errors.append(str(exc))
            continue
        info.spec_files.append(relative)
        if spec_file.root is None:
            continue
        for node in spec_file.nodes:
            info._nodes.setdefault(node.hash or node.spec, node)
        if spec_file.root.hash not in seen_roots:
            seen_roots.add(spec_file.root.hash)
            info.packages.append(spec_file.root)
        _collect_edges(info, spec_file)
    _collect_externals(info)
    info.packages.sort(key=lambda n: n.name)
    return info


def _collect_edges(info: SpackInfo, spec_file: SpecFile) -> None:
    for parent, edge, child in spec_file.edges():
        if child is None:
            continue
        for virtual in edge.virtuals:
            known = info.providers.get(virtual)
            # A runtime provider outranks a build-only one for the same virtual.
            if known is None or (edge.runtime and not known.runtime):
                info.providers[virtual] = SpackProvider(virtual, child, edge.runtime)
        info._edges.append((parent, child, edge.runtime))


def _collect_externals(info: SpackInfo) -> None:
    """External packages that a package in the view links with or runs: the host must have them."""
    seen: set[str] = set()
    for _parent, child, runtime in info._edges:
        if runtime and child.external_path and child.hash not in seen:
            seen.add(child.hash)
            info.externals.append(child)
    info.externals.sort(key=lambda n: n.name)
