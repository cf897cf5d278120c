"""The compatibility spec document (layer ``application/vnd.oci.image-compatibility.spec.v1+json``).

Shape: OCI image-compatibility WG proposal F (github.com/opencontainers/wg-image-compatibility,
``docs/proposals/``) — ``{"compatibilities": {<group>: {...}}}``, one group per compatibility
interest group:

* ``org.supercontainers`` — flat strings (compspec keys): ``mpi.implementation``,
  ``mpi.version``, ``gpu``, ``glibc``, ``hardware.gpu.cuda.version``;
* ``io.archspec`` — ``target`` (and ``features``) when spack names one;
* ``io.ocikit`` — ocikit's own group: schema version, the requirements with their reasons
  and sources, the facts with provenance, and a summary of the scan.

Other tools read the first two; ``ocikit pull`` checks the third. A document written by
someone else with only the first two still gets checked for what those keys imply.
JSON Schema: ``schemas/image-compatibility.spec.v1.schema.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..errors import InvalidContentError
from ..spec import mediatypes as mt
from .report import Fact, ScanReport, semver
from .requirements import Requirement

OCIKIT_GROUP = "io.ocikit"
SUPERCONTAINERS_GROUP = "org.supercontainers"
ARCHSPEC_GROUP = "io.archspec"
DOCUMENT_VERSION = 1

# MPI family (supercontainers value) -> the soname a program built against it needs
_MPI_SONAME = {"openmpi": "libmpi.so.40", "mpich": "libmpi.so.12"}


def compat_document(report: ScanReport | Mapping[str, Any]) -> dict[str, Any]:
    """The spec-layer body for a scan report, or for its JSON form (``compat scan --json``)."""
    data = report.to_dict() if isinstance(report, ScanReport) else scan_report_dict(report)
    facts = {k: Fact.from_dict(k, v) for k, v in (data.get("facts") or {}).items()}

    def fact(key: str) -> str:
        return facts[key].value if key in facts else ""

    requirements = [Requirement.from_dict(r) for r in data.get("requirements") or ()]
    groups: dict[str, dict[str, Any]] = {}
    supercontainers = {
        "mpi.implementation": fact("mpi.family"),
        "mpi.version": fact("mpi.version"),
        "gpu": fact("gpu"),
        "glibc": semver(fact("glibc.minimum")) if fact("glibc.minimum") else "",
        "hardware.gpu.cuda.version": fact("cuda.runtime"),
        "os.name": fact("os"),
        "cpu.target": fact("cpu.target"),
    }
    supercontainers = {k: v for k, v in supercontainers.items() if v}
    if supercontainers:
        groups[SUPERCONTAINERS_GROUP] = supercontainers
    if fact("cpu.target"):
        archspec = {"target": fact("cpu.target")}
        features = next((r.features for r in requirements if r.kind == "cpu-target" and r.features), ())
        if features:
            archspec["features"] = ",".join(features)
        groups[ARCHSPEC_GROUP] = archspec
    counts = data.get("counts") or {}
    spack = data.get("spack") or {}
    groups[OCIKIT_GROUP] = {
        "schemaVersion": DOCUMENT_VERSION,
        "generator": f"ocikit {__version__}",
        "requirements": [r.to_dict() for r in requirements],
        "facts": {k: f.to_dict() for k, f in sorted(facts.items())},
        "summary": {
            "regularFiles": counts.get("regularFiles", 0),
            "symlinks": counts.get("symlinks", 0),
            "elfFiles": counts.get("elfFiles", 0),
            "architectures": [a.get("machine", "") for a in data.get("architectures") or ()],
            "spackPackages": [f"{p.get('name')}@{p.get('version')}" for p in spack.get("packages") or ()],
        },
    }
    return {"compatibilities": groups}


def scan_report_dict(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Check that ``data`` is a saved ``compat scan --json`` report and return it."""
    if not isinstance(data, Mapping) or data.get("mediaType") != mt.OCIKIT_COMPAT_SCAN_REPORT:
        raise InvalidContentError(f"not an ocikit scan report (mediaType {mt.OCIKIT_COMPAT_SCAN_REPORT} expected)")
    if not isinstance(data.get("facts"), Mapping) or not isinstance(data.get("requirements"), list):
        raise InvalidContentError("scan report lacks 'facts' or 'requirements'")
    return data


def annotations_of(report: ScanReport | Mapping[str, Any]) -> dict[str, str]:
    """The supercontainers labels of a report or of its JSON form."""
    if isinstance(report, ScanReport):
        return report.annotations()
    return {str(k): str(v) for k, v in (scan_report_dict(report).get("annotations") or {}).items()}


def has_compat_metadata(document: Mapping[str, Any]) -> bool:
    groups = document.get("compatibilities")
    return isinstance(groups, Mapping) and any(
        g in groups for g in (OCIKIT_GROUP, SUPERCONTAINERS_GROUP, ARCHSPEC_GROUP)
    )


def requirements_from_document(document: Mapping[str, Any]) -> list[Requirement]:
    """Requirements from a compat spec body, or from a scan report's JSON (``requirements``)."""
    if "requirements" in document and "compatibilities" not in document:
        return [Requirement.from_dict(r) for r in _list(document["requirements"])]
    groups = document.get("compatibilities")
    if not isinstance(groups, Mapping):
        raise InvalidContentError("compatibility document has no 'compatibilities' object")
    ours = groups.get(OCIKIT_GROUP)
    if isinstance(ours, Mapping) and "requirements" in ours:
        return [Requirement.from_dict(r) for r in _list(ours["requirements"])]
    return _requirements_from_labels(groups)


def _list(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise InvalidContentError("compatibility 'requirements' must be a list of objects")
    return value


def _requirements_from_labels(groups: Mapping[str, Any]) -> list[Requirement]:
    """What third-party keys imply (proposal F documents without ocikit's group)."""
    out: list[Requirement] = []
    labels = groups.get(SUPERCONTAINERS_GROUP) or {}
    source = ("org.supercontainers",)
    glibc = str(labels.get("glibc", "") or "")
    if glibc and glibc != "unknown":
        out.append(
            Requirement("libc", "glibc", minimum=glibc, why=f"org.supercontainers glibc={glibc}", sources=source)
        )
    mpi = str(labels.get("mpi.implementation", "") or "")
    for family in [m for m in mpi.split(",") if m in _MPI_SONAME]:
        # Advisory: the label names the MPI the image uses, not whether the host must supply it.
        out.append(
            Requirement(
                "library",
                _MPI_SONAME[family],
                category="mpi",
                required=False,
                why=f"org.supercontainers mpi.implementation={mpi}",
                sources=source,
            )
        )
    target = str((groups.get(ARCHSPEC_GROUP) or {}).get("target", "") or "")
    if target:
        features = str((groups.get(ARCHSPEC_GROUP) or {}).get("features", "") or "")
        out.append(
            Requirement(
                "cpu-target",
                target,
                features=tuple(f for f in features.split(",") if f),
                why=f"io.archspec target={target}",
                sources=("io.archspec",),
            )
        )
    return out
