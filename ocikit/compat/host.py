"""Probe the running host: machine, C library, libstdc++, CPU flags, NVIDIA driver, libraries.

:class:`HostInfo` is plain data, so checks can run against a host described by hand (a
cluster's login node facts, a test's "glibc 2.28, no MPI" node) as well as against
``HostInfo.probe()``. Every probe is cheap and tolerant: a missing ``/proc`` file or
tool leaves the field unknown (``None``/``""``) instead of failing.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import InvalidContentError
from ..spec import mediatypes as mt
from . import cuda, libraries, microarch
from .elf import VERSION_FAMILIES, defined_versions
from .versions import max_version

_MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "i586": "i686"}
# ldconfig -p tags the ABI of each entry; keep only entries for the host's own ABI.
_LDCONFIG_ABI = {
    "x86_64": "x86-64",
    "aarch64": "AArch64",
    "ppc64le": "64bit",
    "ppc64": "64bit",
    "s390x": "64bit",
    "riscv64": "64bit",
}
_LDCONFIG_LINE = re.compile(r"^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)")
_NVIDIA_PROC = "/proc/driver/nvidia/version"
_NVIDIA_VERSION = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)")
_SMI_CUDA = re.compile(r"CUDA Version:\s*(\d+\.\d+)")
_TOOL_TIMEOUT = 10


def normalize_machine(machine: str) -> str:
    machine = machine.strip().lower()
    return _MACHINE_ALIASES.get(machine, machine)


@dataclass(frozen=True)
class HostInfo:
    """What a host offers. ``None`` means "not known" (not probed), never "absent"."""

    machine: str
    libc: str = ""  # glibc | musl | none (an app image without one) | "" (unknown)
    glibc: str = ""  # "2.36"
    glibcxx: str = ""  # highest GLIBCXX_ of the host's libstdc++.so.6 ("" = none found)
    cxxabi: str = ""
    cpu_vendor: str = ""
    cpu_flags: frozenset[str] | None = None
    libraries: Mapping[str, str] | None = None  # soname -> path (ldconfig cache, LD_LIBRARY_PATH)
    nvidia_driver: str = ""  # "535.104.05"; "" = no driver
    cuda_driver: str = ""  # newest CUDA the driver supports ("12.2")
    programs: frozenset[str] | None = None  # interpreters known to exist (paths or names)
    live: bool = field(default=False, compare=False)  # probed from this machine: look up programs live
    # Whose userland this is, as reports name it ("host", "app image registry/app:1"), where each
    # fact was read (fact or soname -> "<layer digest>:/<path>"), and where libraries were looked for.
    label: str = "host"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    library_scope: str = "the host's ldconfig cache or LD_LIBRARY_PATH"

    @classmethod
    def probe(cls) -> HostInfo:
        """Describe the machine this process runs on."""
        machine = normalize_machine(platform.machine())
        libc, glibc = _probe_libc()
        libs = _probe_libraries(machine)
        glibcxx, cxxabi = _probe_libstdcxx(libs)
        vendor, flags = _probe_cpu()
        driver, cuda_version = _probe_nvidia()
        return cls(
            machine=machine,
            libc=libc,
            glibc=glibc,
            glibcxx=glibcxx,
            cxxabi=cxxabi,
            cpu_vendor=vendor,
            cpu_flags=flags,
            libraries=libs,
            nvidia_driver=driver,
            cuda_driver=cuda_version,
            live=True,
        )

    def with_changes(self, **changes: Any) -> HostInfo:
        return replace(self, **changes)

    def library_path(self, soname: str) -> str | None:
        """Where the host has ``soname`` ("" when present at an unknown path), None when absent/unknown."""
        if self.libraries is None:
            return None
        return self.libraries.get(soname)

    def has_program(self, interpreter: str) -> bool | None:
        """Whether a ``#!`` interpreter (``/bin/sh`` or ``env:python3``) exists; None = unknown."""
        name = interpreter.removeprefix("env:")
        if self.programs is not None:
            return interpreter in self.programs or name in self.programs or os.path.basename(name) in self.programs
        if not self.live:
            return None
        if interpreter.startswith("env:"):
            return shutil.which(name) is not None
        return os.access(interpreter, os.X_OK)

    def mpi_libraries(self) -> dict[str, str]:
        """MPI sonames the host provides (``libmpi.so.40`` → path), from :attr:`libraries`."""
        found = {}
        for soname, path in (self.libraries or {}).items():
            role = libraries.classify_soname(soname)
            if role is not None and role.category == "mpi":
                found[soname] = path
        return dict(sorted(found.items()))

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        """JSON form; ``full`` adds every CPU flag and library so ``from_dict`` can rebuild the host."""
        out: dict[str, Any] = {
            "mediaType": mt.OCIKIT_COMPAT_HOST,
            "machine": self.machine,
            "libc": self.libc,
            "glibc": self.glibc,
        }
        out["libstdcxx"] = {"GLIBCXX": self.glibcxx, "CXXABI": self.cxxabi}
        if self.cpu_flags is not None:
            out["cpu"] = {
                "vendor": self.cpu_vendor,
                "level": microarch.best_host_target(self.cpu_flags, self.machine),
                "flags": sorted(self.cpu_flags) if full else len(self.cpu_flags),
            }
        out["nvidia"] = {"driver": self.nvidia_driver, "cuda": self.cuda_driver}
        if self.libraries is not None:
            out["mpi"] = self.mpi_libraries()
            out["libraries"] = dict(sorted(self.libraries.items())) if full else len(self.libraries)
        if full and self.programs is not None:
            out["programs"] = sorted(self.programs)
        if self.label != "host":
            out["label"] = self.label
        if self.sources:
            out["sources"] = dict(sorted(self.sources.items()))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostInfo:
        """Rebuild a host saved with ``to_dict(full=True)`` (``ocikit compat host --json``)."""
        if not isinstance(data, Mapping) or not data.get("machine"):
            raise InvalidContentError("host description needs at least 'machine'")
        cpu = data.get("cpu") or {}
        flags = cpu.get("flags")
        libs = data.get("libraries")
        stdcxx = data.get("libstdcxx") or {}
        nvidia = data.get("nvidia") or {}
        programs = data.get("programs")
        sources = data.get("sources")
        return cls(
            machine=normalize_machine(str(data["machine"])),
            libc=str(data.get("libc", "") or ""),
            glibc=str(data.get("glibc", "") or ""),
            glibcxx=str(stdcxx.get("GLIBCXX", "") or ""),
            cxxabi=str(stdcxx.get("CXXABI", "") or ""),
            cpu_vendor=str(cpu.get("vendor", "") or ""),
            cpu_flags=frozenset(str(f) for f in flags) if isinstance(flags, list) else None,
            libraries={str(k): str(v) for k, v in libs.items()} if isinstance(libs, Mapping) else None,
            nvidia_driver=str(nvidia.get("driver", "") or ""),
            cuda_driver=str(nvidia.get("cuda", "") or ""),
            programs=frozenset(str(p) for p in programs) if isinstance(programs, list) else None,
            label=str(data.get("label") or "host"),
            sources={str(k): str(v) for k, v in sources.items()} if isinstance(sources, Mapping) else {},
        )


# -- probes -----------------------------------------------------------------------------


def _probe_libc() -> tuple[str, str]:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        text = ""
    if text.startswith("glibc "):
        return "glibc", text.split()[1]
    for directory in ("/lib", "/usr/lib"):
        try:
            if any(n.startswith("ld-musl-") for n in os.listdir(directory)):
                return "musl", ""
        except OSError:
            continue
    return "", ""


def _probe_libraries(machine: str) -> dict[str, str] | None:
    found: dict[str, str] = {}
    cache = _ldconfig_cache(machine)
    if cache is None:
        cache = _default_dirs_listing(machine)
    found.update(cache)
    # HPC module systems put MPI and CUDA on LD_LIBRARY_PATH, not in the ldconfig cache;
    # the loader searches those first, so they win.
    for directory in reversed([d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]):
        found.update(_list_libraries(directory))
    return found


def _ldconfig_cache(machine: str) -> dict[str, str] | None:
    tool = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None
    )
    if tool is None:
        return None
    try:
        result = subprocess.run([tool, "-p"], capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return parse_ldconfig(result.stdout, machine)


def parse_ldconfig(text: str, machine: str) -> dict[str, str]:
    """soname → path from ``ldconfig -p`` output, keeping only the host ABI's entries."""
    abi = _LDCONFIG_ABI.get(machine)
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _LDCONFIG_LINE.match(line)
        if not match:
            continue
        name, tags, path = match.groups()
        if abi is not None and abi not in tags:
            continue  # e.g. 32-bit "(libc6)" entries on an x86_64 host
        found.setdefault(name, path)
    return found


def default_library_dirs(machine: str) -> tuple[str, ...]:
    """The directories the loader searches when nothing else names one (Debian's multiarch first)."""
    triplet = f"{machine}-linux-gnu"
    return (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib")


def _default_dirs_listing(machine: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for directory in default_library_dirs(machine):
        for name, path in _list_libraries(directory).items():
            found.setdefault(name, path)
    return found


def _list_libraries(directory: str) -> dict[str, str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    return {n: os.path.join(directory, n) for n in names if ".so" in n}


def _probe_libstdcxx(libs: Mapping[str, str] | None) -> tuple[str, str]:
    path = (libs or {}).get("libstdc++.so.6")
    if not path:
        return "", ""
    return libstdcxx_versions(defined_versions(path))


def libstdcxx_versions(names: list[str]) -> tuple[str, str]:
    """The highest ``GLIBCXX_`` and ``CXXABI_`` among a libstdc++'s version definitions."""
    out = []
    for family in ("GLIBCXX", "CXXABI"):
        pattern = VERSION_FAMILIES[family]
        out.append(max_version([m.group(1) for n in names if (m := pattern.match(n))]))
    return out[0], out[1]


def _probe_cpu() -> tuple[str, frozenset[str] | None]:
    """Vendor and flags of the first processor in /proc/cpuinfo (x86 ``flags``, Arm ``Features``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            text = stream.read(65536)
    except OSError:
        return "", None
    return parse_cpuinfo(text)


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str] | None]:
    vendor, flags = "", None
    for line in text.splitlines():
        if not line.strip():
            if flags is not None:
                break  # end of the first processor block
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("vendor_id", "cpu implementer") and not vendor:
            vendor = value.strip()
        elif key in ("flags", "features") and flags is None:
            flags = frozenset(value.split())
    return vendor, flags


def _probe_nvidia() -> tuple[str, str]:
    """(driver version, newest CUDA it supports), from /proc or nvidia-smi; ("", "") without a driver."""
    driver = ""
    try:
        with open(_NVIDIA_PROC, encoding="utf-8", errors="replace") as stream:
            match = _NVIDIA_VERSION.search(stream.read())
            driver = match.group(1) if match else ""
    except OSError:
        pass
    cuda_version = ""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            result = subprocess.run([smi], capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=False)
            match = _SMI_CUDA.search(result.stdout)
            cuda_version = match.group(1) if match else ""
            if not driver:
                found = re.search(r"Driver Version:\s*(\d+\.\d+(?:\.\d+)?)", result.stdout)
                driver = found.group(1) if found else ""
        except (OSError, subprocess.SubprocessError):
            pass
    if driver and not cuda_version:
        cuda_version = cuda.highest_cuda_for_driver(driver)
    return driver, cuda_version
