"""From raw scan data to facts (with provenance) and host requirements.

Two rules shape the requirements:

* **glibc is checked over every ELF file** — a plugin needing a newer glibc fails the
  moment it is loaded, and this is the number ``objdump -T`` users expect.
* **a missing library is required only if a program in the view reaches it** through
  ``DT_NEEDED``. Libraries nothing links to (MPI and fabric plugins, Python extension
  modules) are ``dlopen``ed; what they need is reported as advisory, so a node without
  InfiniBand still runs an Open MPI view whose verbs plugin needs ``libibverbs.so.1``.
  A view with no programs at all (a library stack) treats every file as required.
"""

from __future__ import annotations

import os
import re

from . import cuda, libraries, microarch
from .elf import ElfInfo
from .report import EXAMPLES, Fact, ScanReport
from .requirements import Requirement
from .versions import parse_version

# spack MPI package names -> ABI family
_MPI_FAMILY = {
    "openmpi": "openmpi",
    "mpich": "mpich",
    "mvapich": "mpich",
    "mvapich2": "mpich",
    "intel-mpi": "mpich",
    "intel-oneapi-mpi": "mpich",
    "cray-mpich": "mpich",
}
_PRIMARY_MPI = re.compile(r"^libmpi(ch|_cray|_abi)?\.so\.\d+$")
_CUDART_FILE = re.compile(r"^libcudart\.so\.(\d+\.\d+)(\.\d+)*$")


def analyse(report: ScanReport) -> None:
    """Fill ``report.facts`` and ``report.requirements`` from the scanned data."""
    runtime = runtime_files(report)
    facts = _Facts()
    _arch(report, facts)
    _libc(report, facts)
    _mpi(report, facts)
    _gpu(report, facts)
    _fabric(report, facts)
    _spack(report, facts)
    if report.interpreters:
        facts.add("interpreters", ",".join(sorted(report.interpreters)), "scan")
    report.facts = facts.facts
    report.requirements = _requirements(report, runtime)


class _Facts:
    def __init__(self) -> None:
        self.facts: dict[str, Fact] = {}

    def add(self, key: str, value: str, source: str, *evidence: str) -> None:
        """Record ``key=value``; a second source agreeing with the first joins its sources."""
        if not value:
            return
        known = self.facts.get(key)
        if known is None:
            self.facts[key] = Fact(key, value, (source,), tuple(e for e in evidence if e))
        elif known.value == value:
            self.confirm(key, source, *evidence)

    def confirm(self, key: str, source: str, *evidence: str) -> None:
        """``source`` agrees with the recorded fact (in its own, possibly coarser, terms)."""
        known = self.facts.get(key)
        if known is not None and source not in known.sources:
            self.facts[key] = Fact(key, known.value, known.sources + (source,), known.evidence + evidence)


def runtime_files(report: ScanReport) -> set[str] | None:
    """ELF paths a program of the view loads through DT_NEEDED (None: no programs, count all)."""
    programs = [e for e in report.elf_files if e.is_executable and not e.error]
    if not programs:
        return None
    by_name: dict[str, list[ElfInfo]] = {}
    for info in report.elf_files:
        for name in {info.soname, os.path.basename(info.path)} - {""}:
            by_name.setdefault(name, []).append(info)
    reached: set[str] = set()
    stack = list(programs)
    while stack:
        info = stack.pop()
        if info.path in reached:
            continue
        reached.add(info.path)
        for soname in info.needed:
            stack.extend(by_name.get(soname, ()))
    return reached


def _examples(paths: list[str]) -> str:
    shown = ", ".join(paths[:EXAMPLES])
    return shown + (f" (+{len(paths) - EXAMPLES} more)" if len(paths) > EXAMPLES else "")


# -- facts ------------------------------------------------------------------------------


def _arch(report: ScanReport, facts: _Facts) -> None:
    arches = report.architectures()
    if arches:
        main = arches[0]
        total = sum(a["files"] for a in arches)
        facts.add(
            "arch",
            main["machine"],
            "scan",
            f"{main['files']} of {total} ELF files are {main['machine']} "
            f"({main['bits']}-bit {main['endianness']}-endian)",
        )
    for target in report.spack.targets():
        family = microarch.family(target)
        if family:
            facts.add("arch", family, "spack", f"spack target={target}")


def _libc(report: ScanReport, facts: _Facts) -> None:
    interpreters = sorted({e.interpreter for e in report.elf_files if e.interpreter})
    musl = [i for i in interpreters if "ld-musl" in i]
    glibc_version, where = report.highest_version_need("GLIBC")
    if musl:
        facts.add("libc", "musl", "scan", f"PT_INTERP {musl[0]}")
    elif glibc_version or any(i for i in interpreters if "ld-linux" in i or "ld64.so" in i):
        evidence = f"PT_INTERP {interpreters[0]}" if interpreters else f"{where} needs GLIBC_{glibc_version}"
        facts.add("libc", "glibc", "scan", evidence)
    if glibc_version:
        facts.add("glibc.minimum", glibc_version, "scan", f"{where} needs GLIBC_{glibc_version}")
    for family, key in (("GLIBCXX", "glibcxx.minimum"), ("CXXABI", "cxxabi.minimum")):
        version, where = report.highest_version_need(family)
        facts.add(key, version, "scan", f"{where} needs {family}_{version}")
    libc = report.spack.providers.get("libc")
    if libc is not None:
        origin = f" (external {libc.node.external_path})" if libc.node.external_path else ""
        facts.add("libc", libc.node.name, "spack", f"spack libc provider {libc.node.spec}{origin}")
        if libc.node.name == "glibc":
            facts.add("glibc.build", libc.node.version, "spack", f"built against {libc.node.spec}{origin}")


def _mpi(report: ScanReport, facts: _Facts) -> None:
    families, abis, evidence = _soname_roles(report, "mpi", primary=_PRIMARY_MPI)
    provider = report.spack.providers.get("mpi")
    if provider is not None:
        node = provider.node
        family = _MPI_FAMILY.get(node.name, node.name)
        facts.add("mpi.implementation", node.name, "spack", f"spack mpi provider {node.spec}")
        facts.add("mpi.version", node.version, "spack", f"spack mpi provider {node.spec}")
        facts.add("mpi.family", family, "spack", f"spack mpi provider {node.spec}")
        if families == {family}:
            facts.add("mpi.family", family, "scan", *evidence)
        if family == node.name and families == {family}:
            facts.add("mpi.implementation", node.name, "scan", *evidence)
    elif families:
        value = ",".join(sorted(families))
        facts.add("mpi.implementation", value, "scan", *evidence)
        facts.add(
            "mpi.family", ",".join(sorted({libraries.supercontainers_mpi(f) for f in families})), "scan", *evidence
        )
    if abis:
        facts.add("mpi.abi", ",".join(sorted(abis)), "scan", *evidence)


def _gpu(report: ScanReport, facts: _Facts) -> None:
    stacks, _, evidence = _soname_roles(report, "gpu")
    cuda_node = report.spack.node("cuda")
    hip_node = report.spack.node("hip")
    spack_stacks = {name for name, node in (("cuda", cuda_node), ("rocm", hip_node)) if node}
    if stacks or spack_stacks:
        origin = "scan" if stacks else "spack"
        facts.add("gpu", ",".join(sorted(stacks | spack_stacks)), origin, *evidence)
        if stacks and spack_stacks:
            facts.confirm("gpu", "spack", *(f"spack package {n.spec}" for n in (cuda_node, hip_node) if n))
    runtime, where = cuda_runtime_from_scan(report)
    if cuda_node:
        # spack knows the full version; libcudart.so.N only the major
        short = ".".join(str(p) for p in parse_version(cuda_node.version)[:2])
        facts.add("cuda.runtime", short, "spack", f"spack package {cuda_node.spec}")
        if runtime and short.split(".")[0] == runtime.split(".")[0]:
            facts.confirm("cuda.runtime", "scan", where)
    elif runtime:
        facts.add("cuda.runtime", runtime, "scan", where)
    facts.add("cuda.arch", ",".join(report.spack.variant_values("cuda_arch")), "spack", "spack variant cuda_arch")
    hip_major = sorted({r.major for r, _, _ in _roles(report) if r.name == "rocm" and r.major})
    if hip_major:
        facts.add("rocm.hip", ",".join(hip_major), "scan", f"libamdhip64.so.{hip_major[0]}")
    if hip_node:
        facts.add("rocm.version", hip_node.version, "spack", f"spack package {hip_node.spec}")
    facts.add(
        "rocm.gfx", ",".join(report.spack.variant_values("amdgpu_target")), "spack", "spack variant amdgpu_target"
    )


def _fabric(report: ScanReport, facts: _Facts) -> None:
    names, _, evidence = _soname_roles(report, "fabric")
    if names:
        facts.add("fabric", ",".join(sorted(names)), "scan", *evidence)


def _spack(report: ScanReport, facts: _Facts) -> None:
    spack = report.spack
    if not spack.found:
        return
    first = spack.spec_files[0] if spack.spec_files else ""
    facts.add(
        "spack.packages", ",".join(p.spec for p in spack.packages), "spack", f"{len(spack.spec_files)} spec.json files"
    )
    targets = spack.targets()
    facts.add("cpu.target", ",".join(targets), "spack", first)
    facts.add("os", ",".join(spack.operating_systems()), "spack", first)
    compiler = spack.providers.get("c") or spack.providers.get("cxx")
    if compiler is not None:
        facts.add("compiler", compiler.node.spec, "spack", f"spack c/cxx provider {compiler.node.spec}")


def _roles(report: ScanReport):  # type: ignore[no-untyped-def]
    """(role, soname, evidence) for every known soname the view provides or needs."""
    for soname in sorted(report.provided_sonames()):
        role = libraries.classify_soname(soname)
        if role is not None:
            yield role, soname, f"{soname} in the view"
    for soname, users in report.external_needs().items():
        role = libraries.classify_soname(soname)
        if role is not None:
            yield role, soname, f"{users[0]} needs {soname} (not in the view)"


def _soname_roles(report: ScanReport, category: str, primary: re.Pattern[str] | None = None):  # type: ignore[no-untyped-def]
    names: set[str] = set()
    sonames: set[str] = set()
    evidence: list[str] = []
    for role, soname, why in _roles(report):
        if role.category != category:
            continue
        names.add(role.name)
        if primary is None or primary.match(soname):
            sonames.add(soname)
        if len(evidence) < EXAMPLES:
            evidence.append(why)
    return names, sonames, evidence


def cuda_runtime_from_scan(report: ScanReport) -> tuple[str, str]:
    """CUDA runtime version from libcudart file names (12.2) or sonames (12)."""
    best, where = "", ""
    for info in report.elf_files:
        match = _CUDART_FILE.match(os.path.basename(info.path))
        if match:
            return match.group(1), info.path
    for soname in sorted(report.provided_sonames() | set(report.needed_by())):
        role = libraries.classify_soname(soname)
        if role and role.name == "cuda" and soname.startswith("libcudart.so.") and role.major:
            best, where = role.major, soname
    return best, where


# -- requirements -----------------------------------------------------------------------


def _requirements(report: ScanReport, runtime: set[str] | None) -> list[Requirement]:
    def in_runtime(paths: list[str]) -> bool:
        return runtime is None or any(p in runtime for p in paths)

    out: list[Requirement] = []
    out += _arch_requirements(report)
    out += _cpu_requirements(report)
    out += _libc_requirements(report)
    external = report.external_needs()
    out += _cxx_requirements(report, external, in_runtime)
    out += _cuda_requirements(report, external, in_runtime)
    libs = []
    for soname, users in external.items():
        if libraries.is_glibc_soname(soname):
            continue
        role = libraries.classify_soname(soname)
        if role is not None and role.host_only:
            continue  # the driver: a cuda-driver requirement above
        category = role.category if role else ("c++" if libraries.is_cpp_runtime(soname) else "")
        required = in_runtime(users)
        why = f"needed by {_examples(users)}, not in the view"
        if not required:
            why += "; no program in the view links it (plugin or module loaded at run time)"
        libs.append(Requirement("library", soname, category=category, required=required, why=why))
    out += sorted(libs, key=lambda r: (not r.required, r.name))
    out += _interpreter_requirements(report)
    return out


def _arch_requirements(report: ScanReport) -> list[Requirement]:
    arches = report.architectures()
    out = []
    for index, arch in enumerate(arches):
        files = [e.path for e in report.elf_files if e.machine == arch["machine"] and not e.error]
        why = f"{arch['files']} ELF files are {arch['machine']} ({arch['bits']}-bit {arch['endianness']}-endian)"
        if index:
            why += f", e.g. {_examples(sorted(files))}; most of the view is {arches[0]['machine']}"
        out.append(Requirement("arch", arch["machine"], required=index == 0, why=why))
    return out


def _cpu_requirements(report: ScanReport) -> list[Requirement]:
    out = []
    for target in report.spack.targets():
        features = report.spack.target_features(target) or tuple(sorted(microarch.features(target)))
        count = sum(1 for p in report.spack.packages if p.target == target)
        why = f"spack built {count} package(s) for target={target}"
        if not features and not microarch.is_known(target):
            why += "; its features are unknown to ocikit, only the machine family is checked"
        out.append(Requirement("cpu-target", target, features=tuple(features), why=why, sources=("spack",)))
    return out


def _libc_requirements(report: ScanReport) -> list[Requirement]:
    libc = report.facts.get("libc")
    if libc is None:
        return []
    if libc.value == "musl":
        return [Requirement("libc", "musl", why="; ".join(libc.evidence), sources=libc.sources)]
    version, where = report.highest_version_need("GLIBC")
    if not version:
        return []
    count = sum(1 for e in report.elf_files if e.max_version("GLIBC") == version)
    why = f"{where} needs GLIBC_{version}" + (f" ({count} files need that version)" if count > 1 else "")
    sources: tuple[str, ...] = ("scan",)
    build = report.facts.get("glibc.build")
    if build is not None:
        why += f"; spack built against glibc@{build.value}"
        sources = ("scan", "spack")
    return [Requirement("libc", "glibc", minimum=version, why=why, sources=sources)]


def _cxx_requirements(report: ScanReport, external, in_runtime) -> list[Requirement]:  # type: ignore[no-untyped-def]
    users = external.get("libstdc++.so.6")
    if not users:
        return []
    out = []
    for family, kind in (("GLIBCXX", "glibcxx"), ("CXXABI", "cxxabi")):
        version, where = report.highest_version_need(family)
        if version:
            out.append(
                Requirement(
                    kind,
                    "libstdc++.so.6",
                    minimum=version,
                    category="c++",
                    required=in_runtime(users),
                    why=f"{where} needs {family}_{version} and the view has no libstdc++",
                )
            )
    return out


def _cuda_requirements(report: ScanReport, external, in_runtime) -> list[Requirement]:  # type: ignore[no-untyped-def]
    driver_users = external.get("libcuda.so.1", [])
    runtime_fact = report.facts.get("cuda.runtime")
    if not driver_users and runtime_fact is None:
        return []
    reasons = []
    if driver_users:
        reasons.append(f"{_examples(driver_users)} need(s) libcuda.so.1 from the NVIDIA driver")
    minimum = ""
    if runtime_fact is not None:
        minimum = cuda.minimum_driver(runtime_fact.value)
        reasons.append(f"CUDA runtime {runtime_fact.value} ({'; '.join(runtime_fact.evidence)})")
        if minimum:
            major = runtime_fact.value.split(".")[0]
            reasons.append(f"CUDA {major}.x runs on drivers >= {minimum} (minor-version compatibility)")
    cudart_users = [u for s, us in report.needed_by().items() if s.startswith("libcudart.so.") for u in us]
    users = driver_users + cudart_users
    sources = runtime_fact.sources if runtime_fact is not None else ("scan",)
    return [
        Requirement(
            "cuda-driver",
            "nvidia",
            minimum=minimum,
            category="gpu",
            required=in_runtime(users) if users else True,
            why="; ".join(reasons),
            sources=sources,
        )
    ]


# An interpreter at one of these absolute paths is the host's, whatever the view contains.
_SYSTEM_PREFIXES = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/lib/", "/usr/lib/")


def _interpreter_requirements(report: ScanReport) -> list[Requirement]:
    out = []
    for interpreter, users in sorted(report.interpreters.items()):
        program = interpreter.removeprefix("env:").rsplit("/", 1)[-1]
        if not program:
            continue
        host_path = interpreter.startswith(_SYSTEM_PREFIXES)
        if not host_path and program in report.program_names:
            continue  # env:python3 or a (relocated) path into the view: the view's bin/python3 runs it
        shown = interpreter.replace("env:", "/usr/bin/env ")
        why = f"{len(users)} script(s) start with #!{shown}: {_examples(users)}"
        out.append(Requirement("interpreter", interpreter, required=False, why=why))
    return out
