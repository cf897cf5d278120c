"""Requirements: what the host must provide, each with the reason it is needed.

A :class:`Requirement` is produced by the scan (``derive`` in :mod:`.report`), stored in
the compatibility artifact (``to_dict``) and read back on the pulling side
(``from_dict``), so that ``ocikit pull`` can check a host without the view's bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidContentError

# kind -> what ``name`` means
KINDS = {
    "arch": "machine (uname -m) the ELF files are built for",
    "libc": "C library (glibc or musl) and its minimum version",
    "glibcxx": "libstdc++ GLIBCXX_ version, when the view does not ship libstdc++",
    "cxxabi": "libstdc++ CXXABI_ version, when the view does not ship libstdc++",
    "library": "a soname the view needs and does not contain",
    "cuda-driver": "the NVIDIA driver (libcuda.so.1) and its minimum version",
    "cpu-target": "the CPU microarchitecture spack built for, as a feature set",
    "interpreter": "a script interpreter (#! line) the view does not contain",
}


@dataclass(frozen=True)
class Requirement:
    """One thing the host must have. ``required=False`` marks advisory needs (plugins, scripts)."""

    kind: str
    name: str
    minimum: str = ""
    features: tuple[str, ...] = ()
    category: str = ""  # for libraries: mpi, gpu, fabric, c++ … (from the soname table)
    required: bool = True
    why: str = ""
    sources: tuple[str, ...] = ("scan",)

    def describe(self) -> str:
        """Short human form: ``glibc >= 2.36``, ``libmpi.so.40``, ``CPU target haswell``."""
        if self.kind == "arch":
            return f"architecture {self.name}"
        if self.kind == "cpu-target":
            return f"CPU target {self.name}"
        if self.kind == "cuda-driver":
            return f"NVIDIA driver >= {self.minimum}" if self.minimum else "NVIDIA driver"
        if self.kind == "interpreter":
            return f"interpreter {self.name}"
        if self.kind in ("glibcxx", "cxxabi"):
            return f"{self.kind.upper()}_{self.minimum} (libstdc++)"
        if self.minimum:
            return f"{self.name} >= {self.minimum}"
        return self.name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "required": self.required}
        if self.minimum:
            out["minimum"] = self.minimum
        if self.features:
            out["features"] = list(self.features)
        if self.category:
            out["category"] = self.category
        if self.why:
            out["why"] = self.why
        out["sources"] = list(self.sources)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirement:
        try:
            kind = str(data["kind"])
            name = str(data["name"])
        except (KeyError, TypeError) as exc:
            raise InvalidContentError(f"compatibility requirement without {exc}: {data!r}") from None
        return cls(
            kind=kind,
            name=name,
            minimum=str(data.get("minimum", "") or ""),
            features=tuple(str(f) for f in data.get("features") or ()),
            category=str(data.get("category", "") or ""),
            required=bool(data.get("required", True)),
            why=str(data.get("why", "") or ""),
            sources=tuple(str(s) for s in data.get("sources") or ("scan",)),
        )
