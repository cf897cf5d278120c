"""The result of a scan: counts, ELF facts, spack facts, derived facts and requirements.

Every derived fact records where it came from (``sources``: ``scan`` for what the files
themselves say, ``spack`` for ``spec.json``) and the evidence (which file needs which
version, which spec names which provider), so a user can see why ocikit believes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..spec import mediatypes as mt
from ..spec.descriptor import Platform
from .elf import VERSION_FAMILIES, ElfInfo
from .requirements import Requirement
from .spack import SpackInfo
from .versions import parse_version

SCAN_REPORT_VERSION = 1
# How many example paths a fact or requirement quotes.
EXAMPLES = 3


@dataclass(frozen=True)
class Fact:
    """A fact about the view: ``value`` came from ``sources`` (scan, spack), shown by ``evidence``."""

    key: str
    value: str
    sources: tuple[str, ...]
    evidence: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "sources": list(self.sources), "evidence": list(self.evidence)}

    @classmethod
    def from_dict(cls, key: str, data: dict[str, Any]) -> Fact:
        return cls(key, str(data.get("value", "")), tuple(data.get("sources") or ()), tuple(data.get("evidence") or ()))


@dataclass
class ScanReport:
    """What ``scan(path)`` found. Build with :func:`ocikit.compat.scan.scan`."""

    root: str
    regular_files: int = 0
    symlinks: int = 0
    directories: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    elf_files: list[ElfInfo] = field(default_factory=list)
    # basenames of symlinks (``libz.so.1 -> libz.so.1.2.13`` provides libz.so.1)
    symlink_names: set[str] = field(default_factory=set)
    # basenames of files and symlinks directly in a ``bin`` directory (script interpreters)
    program_names: set[str] = field(default_factory=set)
    interpreters: dict[str, list[str]] = field(default_factory=dict)
    spack: SpackInfo = field(default_factory=SpackInfo)
    unreadable: list[str] = field(default_factory=list)
    libmagic_files: int = 0
    seconds: float = 0.0
    facts: dict[str, Fact] = field(default_factory=dict)
    requirements: list[Requirement] = field(default_factory=list)
    # derived tables, computed on first use once the scan has filled the fields above
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- views on the data -------------------------------------------------------------

    def provided_sonames(self) -> set[str]:
        """Names the loader can find inside the view: sonames, ELF file names, library symlinks."""
        if "provided" not in self._cache:
            names = {e.soname for e in self.elf_files if e.soname}
            names.update(os.path.basename(e.path) for e in self.elf_files if not e.error)
            names.update(n for n in self.symlink_names if ".so" in n)
            self._cache["provided"] = names
        return self._cache["provided"]

    def needed_by(self) -> dict[str, list[str]]:
        """soname → files that list it in DT_NEEDED (all of them, sorted)."""
        if "needed_by" not in self._cache:
            users: dict[str, list[str]] = {}
            for info in self.elf_files:
                for soname in info.needed:
                    users.setdefault(soname, []).append(info.path)
            self._cache["needed_by"] = {k: sorted(v) for k, v in sorted(users.items())}
        return self._cache["needed_by"]

    def external_needs(self) -> dict[str, list[str]]:
        """Needed sonames the view does not contain (what the host must provide, glibc included)."""
        provided = self.provided_sonames()
        return {k: v for k, v in self.needed_by().items() if k not in provided}

    def architectures(self) -> list[dict[str, Any]]:
        counts: dict[tuple[str, str, int, str], int] = {}
        for info in self.elf_files:
            if not info.error:
                key = (info.machine, info.e_machine, info.bits, info.endianness)
                counts[key] = counts.get(key, 0) + 1
        return [
            {"machine": m, "elfMachine": e, "bits": b, "endianness": o, "files": n}
            for (m, e, b, o), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def highest_version_need(self, family: str) -> tuple[str, str]:
        """(version, first file needing it) of the highest GLIBC/GLIBCXX/CXXABI need, or ("", "")."""
        from .versions import version_key

        best, where = "", ""
        for info in sorted(self.elf_files, key=lambda i: i.path):
            version = info.max_version(family)
            if version and (not best or version_key(version) > version_key(best)):
                best, where = version, info.path
        return best, where

    def fact(self, key: str) -> str:
        """The value of a fact, "" when unknown."""
        found = self.facts.get(key)
        return found.value if found else ""

    def platform(self) -> Platform | None:
        """The OCI platform of the view's main architecture (``linux/amd64``), None without ELF files."""
        arch = self.fact("arch")
        if not arch:
            return None
        from ..spec.descriptor import _GOARCH  # the one table of uname -> GOARCH names; no copy

        architecture, variant = _GOARCH.get(arch, (arch, ""))
        return Platform("linux", architecture, variant)

    # -- outputs ---------------------------------------------------------------------

    def annotations(self) -> dict[str, str]:
        """supercontainers labels (github.com/vsoch/containerspec labels/labels.go): ``org.supercontainers.mpi/.gpu/.glibc`` when known."""
        out: dict[str, str] = {}
        mpi = self.fact("mpi.family")
        if mpi:
            out[mt.SUPERCONTAINERS_MPI] = mpi
        gpu = self.fact("gpu")
        if gpu:
            out[mt.SUPERCONTAINERS_GPU] = gpu
        glibc = self.fact("glibc.minimum")
        if glibc:
            out[mt.SUPERCONTAINERS_GLIBC] = semver(glibc)
        return out

    def to_dict(self, files: bool = False) -> dict[str, Any]:
        """The JSON form (schema ``schemas/compat-scan-report.v1.schema.json``).

        ``files=True`` adds one entry per ELF file (large for big views).
        """
        version_needs = {}
        for family in VERSION_FAMILIES:
            version, where = self.highest_version_need(family)
            if version:
                version_needs[family] = {"version": version, "file": where}
        out: dict[str, Any] = {
            "schemaVersion": SCAN_REPORT_VERSION,
            "mediaType": mt.OCIKIT_COMPAT_SCAN_REPORT,
            "root": self.root,
            "counts": {
                "regularFiles": self.regular_files,
                "symlinks": self.symlinks,
                "directories": self.directories,
                "elfFiles": len(self.elf_files),
                "libmagicFiles": self.libmagic_files,
            },
            "kinds": dict(sorted(self.kinds.items())),
            "architectures": self.architectures(),
            "versionNeeds": version_needs,
            "externalNeeds": self.external_needs(),
            "interpreters": {
                k: {"files": len(v), "examples": v[:EXAMPLES]} for k, v in sorted(self.interpreters.items())
            },
            "facts": {k: f.to_dict() for k, f in sorted(self.facts.items())},
            "requirements": [r.to_dict() for r in self.requirements],
            "annotations": self.annotations(),
            "seconds": round(self.seconds, 3),
        }
        if self.spack.found or self.spack.errors:
            out["spack"] = self.spack.to_dict()
        unparsable = [e.to_dict() for e in self.elf_files if e.error]
        if unparsable:
            out["unparsableElf"] = unparsable
        if self.unreadable:
            out["unreadable"] = list(self.unreadable)
        if files:
            out["elfFiles"] = [e.to_dict() for e in sorted(self.elf_files, key=lambda i: i.path)]
        return out


def semver(version: str) -> str:
    """``2.36`` → ``2.36.0`` (the supercontainers glibc label is "XX.YY.Z")."""
    parts = list(parse_version(version)) + [0, 0, 0]
    return ".".join(str(p) for p in parts[:3])
