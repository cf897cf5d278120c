"""Requirements × host → one verdict per requirement: ok, missing or too-old, and why.

``compatible`` is true when no *required* requirement is missing or too old; advisory ones
(plugins nothing links, script interpreters) are reported but never block. ``unknown``
means the host fact could not be probed (no /proc/cpuinfo, a hand-written HostInfo
without library list); it does not block either, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import IncompatibleError
from ..spec import mediatypes as mt
from . import libraries, microarch
from .host import HostInfo, normalize_machine
from .requirements import Requirement
from .versions import version_at_least

OK = "ok"
MISSING = "missing"
TOO_OLD = "too-old"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class CheckItem:
    requirement: Requirement
    status: str
    why: str
    source: str = ""  # where the fact compared with came from ("<layer digest>:/<path>", "config")

    @property
    def blocking(self) -> bool:
        return self.requirement.required and self.status in (MISSING, TOO_OLD)

    def line(self) -> str:
        """``missing   libmpi.so.40: not in the ldconfig cache … (needed by bin/app)``."""
        label = self.status.replace("-", " ")
        advisory = "" if self.requirement.required else " (advisory)"
        source = f" [{self.source}]" if self.source else ""
        return f"{label:<8} {self.requirement.describe()}{advisory}: {self.why}{source}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement.to_dict(),
            "status": self.status,
            "blocking": self.blocking,
            "why": self.why,
            **({"source": self.source} if self.source else {}),
        }


@dataclass
class CheckReport:
    items: list[CheckItem]
    host: HostInfo
    subject: str = ""  # what was checked: a path or a manifest digest
    notes: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return not any(item.blocking for item in self.items)

    def problems(self) -> list[CheckItem]:
        return [item for item in self.items if item.blocking]

    def explain(self) -> str:
        """One line naming every blocking problem (the IncompatibleError message)."""
        where = "this host" if self.host.label == "host" else self.host.label
        if self.compatible:
            return f"{self.subject or 'artifact'} is compatible with {where}"
        reasons = "; ".join(
            f"{i.requirement.describe()} {i.status.replace('-', ' ')}: {i.why}" + (f" [{i.source}]" if i.source else "")
            for i in self.problems()
        )
        return f"{self.subject or 'artifact'} cannot run on {where}: {reasons}"

    def raise_if_incompatible(self) -> None:
        if not self.compatible:
            raise IncompatibleError(self.explain())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": mt.OCIKIT_COMPAT_CHECK_REPORT,
            "subject": self.subject,
            "compatible": self.compatible,
            "host": self.host.to_dict(),
            "items": [item.to_dict() for item in self.items],
        }
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def check_host(
    report_or_requirements: Any, host: HostInfo | None = None, subject: str = "", against: Any = None
) -> CheckReport:
    """Check requirements against ``host`` (default: this machine, probed).

    Accepts a :class:`~ocikit.compat.report.ScanReport`, an iterable of
    :class:`Requirement`, or a document: the compatibility spec body of an artifact or a
    scan report's JSON. ``against`` (an :class:`~ocikit.compat.app_image.AppImage`) replaces
    the host's userland — C library, libstdc++, libraries, platform — by the facts of the
    application image that will load the artifact, read for exactly these requirements.
    """
    from .document import requirements_from_document  # late: document imports the package version
    from .report import ScanReport

    if isinstance(report_or_requirements, ScanReport):
        requirements = list(report_or_requirements.requirements)
        subject = subject or report_or_requirements.root
    elif isinstance(report_or_requirements, Mapping):
        requirements = requirements_from_document(report_or_requirements)
    else:
        requirements = list(report_or_requirements)
    notes: list[str] = []
    if against is not None:
        facts = against.facts(requirements)
        host = facts.host(against.node)
        notes.append(facts.summary())
    host = host or HostInfo.probe()
    return CheckReport([check_requirement(r, host) for r in requirements], host, subject, notes)


def check_requirement(requirement: Requirement, host: HostInfo) -> CheckItem:
    checker = _CHECKERS.get(requirement.kind)
    if checker is None:
        return CheckItem(requirement, UNKNOWN, f"ocikit does not know how to check a {requirement.kind!r} requirement")
    status, why = checker(requirement, host)
    if requirement.why and status != OK:
        why = f"{why} ({requirement.why})"
    return CheckItem(requirement, status, why, _source(requirement, host))


def _source(requirement: Requirement, host: HostInfo) -> str:
    """Where the fact a requirement was compared with was read (only known for an app image)."""
    key = {"arch": "machine", "libc": "libc"}.get(requirement.kind, requirement.kind)
    if requirement.kind == "library":
        key = requirement.name
    return host.sources.get(key, "")


def _arch(req: Requirement, host: HostInfo) -> tuple[str, str]:
    wanted, have = normalize_machine(req.name), host.machine
    if wanted == have:
        return OK, f"{host.label} is {have}"
    if wanted == "i686" and have == "x86_64":
        return OK, f"32-bit x86 code runs on x86_64 when the {host.label} has 32-bit libraries"
    return MISSING, f"{host.label} is {have}, the view is built for {wanted}"


def _libc(req: Requirement, host: HostInfo) -> tuple[str, str]:
    if not host.libc:
        return UNKNOWN, f"could not determine the {host.label}'s C library"
    if host.libc != req.name:
        return MISSING, f"{host.label} C library is {host.libc}, the view needs {req.name}"
    if req.name != "glibc" or not req.minimum:
        return OK, f"{host.label} C library is {host.libc}"
    return _version(host.glibc, req.minimum, f"{host.label} glibc")


def _libstdcxx(req: Requirement, host: HostInfo) -> tuple[str, str]:
    have = host.glibcxx if req.kind == "glibcxx" else host.cxxabi
    if host.libraries is not None and "libstdc++.so.6" not in host.libraries:
        return MISSING, f"{host.label} has no libstdc++.so.6"
    if not have:
        return UNKNOWN, f"could not read the {host.label} libstdc++'s version definitions"
    return _version(have, req.minimum, f"{host.label} libstdc++ {req.kind.upper()}")


def _library(req: Requirement, host: HostInfo) -> tuple[str, str]:
    if host.libraries is None:
        return UNKNOWN, f"{host.label} library list not probed"
    path = host.library_path(req.name)
    if path is not None:
        return OK, f"{host.label} has {path}" if path else f"{host.label} has it"
    hint = _mpi_hint(req, host)
    return MISSING, f"not in {host.library_scope}" + hint


def _mpi_hint(req: Requirement, host: HostInfo) -> str:
    if req.category != "mpi":
        return ""
    present = host.mpi_libraries()
    if not present:
        return f"; {host.label} has no MPI library"
    found = ", ".join(f"{name} ({_mpi_family(name)})" for name in present)
    return f"; {host.label} MPI libraries: {found}: a different MPI ABI"


def _mpi_family(soname: str) -> str:
    role = libraries.classify_soname(soname)
    return role.detail if role is not None else soname


def _cuda_driver(req: Requirement, host: HostInfo) -> tuple[str, str]:
    if not host.nvidia_driver:
        return MISSING, "no NVIDIA driver on the host (no /proc/driver/nvidia/version, no nvidia-smi)"
    if not req.minimum:
        return OK, f"NVIDIA driver {host.nvidia_driver}"
    supports = f", supports CUDA {host.cuda_driver}" if host.cuda_driver else ""
    status, why = _version(host.nvidia_driver, req.minimum, "NVIDIA driver")
    return status, why + supports


def _cpu_target(req: Requirement, host: HostInfo) -> tuple[str, str]:
    family = microarch.family(req.name)
    if family and family != host.machine:
        return MISSING, f"target {req.name} is {family}, host is {host.machine}"
    features = set(req.features) or set(microarch.features(req.name))
    if not features:
        if family:
            return OK, f"generic target {req.name}: nothing beyond the {family} baseline"
        return UNKNOWN, f"target {req.name} is unknown to ocikit and lists no features"
    if host.cpu_flags is None:
        return UNKNOWN, "host CPU flags not probed (no /proc/cpuinfo)"
    missing = microarch.missing_features(features, host.cpu_flags)
    level = microarch.best_host_target(host.cpu_flags, host.machine)
    if missing:
        shown = ", ".join(missing[:8]) + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        return MISSING, f"host CPU ({host.cpu_vendor or 'unknown vendor'}, {level}) lacks {shown}"
    return OK, f"host CPU has all {len(features)} features of {req.name}"


def _interpreter(req: Requirement, host: HostInfo) -> tuple[str, str]:
    found = host.has_program(req.name)
    if found is None:
        return UNKNOWN, "host programs not probed"
    shown = req.name.replace("env:", "")
    return (OK, f"host has {shown}") if found else (MISSING, f"host has no {shown}")


def _version(have: str, need: str, what: str) -> tuple[str, str]:
    if not have:
        return UNKNOWN, f"{what} version unknown"
    if version_at_least(have, need):
        return OK, f"{what} {have} >= {need}"
    return TOO_OLD, f"{what} {have} < {need}"


_CHECKERS: dict[str, Callable[[Requirement, HostInfo], tuple[str, str]]] = {
    "arch": _arch,
    "libc": _libc,
    "glibcxx": _libstdcxx,
    "cxxabi": _libstdcxx,
    "library": _library,
    "cuda-driver": _cuda_driver,
    "cpu-target": _cpu_target,
    "interpreter": _interpreter,
}


def check_reference(
    store: Any, subject: Any, host: HostInfo | None = None, against: Any = None
) -> CheckReport | None:
    """Check the compatibility referrer of ``subject`` in ``store`` against ``host``
    (or, with ``against``, against the application image's userland: see :func:`check_host`).

    Reads only the newest ``application/vnd.oci.image-compatibility.v1`` referrer and its
    spec layer — never the image's layers — so ``pull`` can refuse before downloading.
    For an index without its own metadata, the manifest for the host's (or app image's)
    platform is tried. Returns None when there is no compatibility metadata (or the store
    cannot list referrers).
    """
    from ..content.base import fetch_manifest
    from ..errors import NotFoundError
    from ..spec.descriptor import Platform
    from ..spec.manifest import select_platform
    from .artifact import read_compat_document
    from .document import requirements_from_document

    document = read_compat_document(store, subject)
    checked = subject
    if document is None and subject.is_index:
        if against is not None:
            wanted = against.target_platform()
        else:
            wanted = Platform.host() if host is None else _platform_of(host)
        try:
            checked = select_platform(fetch_manifest(store, subject), wanted)
        except NotFoundError:
            return None
        document = read_compat_document(store, checked)
    if document is None:
        return None
    requirements = requirements_from_document(document)
    return check_host(requirements, host, subject=f"{store.describe()}@{checked.digest}", against=against)


def _platform_of(host: HostInfo) -> Any:
    from ..spec.descriptor import _GOARCH, Platform  # the one uname -> GOARCH table

    architecture, variant = _GOARCH.get(host.machine, (host.machine, ""))
    return Platform("linux", architecture, variant)
