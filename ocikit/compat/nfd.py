"""The NFD image-compatibility spec (node-feature-discovery, ``v1alpha1``) for a scan report.

NFD matches node features, not libraries, so only two kinds of requirement translate:
the CPU features of the spack target (feature ``cpu.cpuid``; NFD names x86 flags the way
``klauspost/cpuid`` does, which mostly is the upper-cased ``/proc/cpuinfo`` flag) and the
presence of the GPU vendor's PCI device (feature ``pci.device``, vendor 10de NVIDIA,
1002 AMD). glibc, MPI and library needs have no NFD feature and stay in the OCI artifact.
Flags without a known NFD name are left out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .report import ScanReport
from .requirements import Requirement

NFD_VERSION = "v1alpha1"

# /proc/cpuinfo flag -> NFD cpu.cpuid name where the two differ (x86)
_X86_RENAMES = {
    "pni": "SSE3",
    "sse3": "SSE3",
    "sse4_1": "SSE4",
    "sse4_2": "SSE42",
    "fma": "FMA3",
    "aes": "AESNI",
    "pclmulqdq": "CLMUL",
    "lahf_lm": "LAHF",
    "abm": "LZCNT",
    "sha_ni": "SHA",
    "avx512_vnni": "AVX512VNNI",
    "avx512_bf16": "AVX512BF16",
    "avx512_fp16": "AVX512FP16",
    "avx512_vbmi2": "AVX512VBMI2",
    "avx512_bitalg": "AVX512BITALG",
    "avx512_vpopcntdq": "AVX512VPOPCNTDQ",
    "amx_bf16": "AMXBF16",
    "amx_int8": "AMXINT8",
    "amx_tile": "AMXTILE",
}
# Flags whose upper-cased spelling is also the NFD name.
_X86_SAME = frozenset(
    {
        "adx",
        "avx",
        "avx2",
        "avx512bw",
        "avx512cd",
        "avx512dq",
        "avx512f",
        "avx512ifma",
        "avx512vbmi",
        "avx512vl",
        "bmi1",
        "bmi2",
        "cx16",
        "f16c",
        "gfni",
        "mmx",
        "movbe",
        "popcnt",
        "rdrand",
        "rdseed",
        "sse",
        "sse2",
        "sse4a",
        "ssse3",
        "vaes",
        "vpclmulqdq",
        "xsave",
        "xsavec",
        "xsaveopt",
        "clzero",
    }
)
_PCI_VENDORS = {"cuda": ("10de", "NVIDIA"), "rocm": ("1002", "AMD")}


def nfd_name(flag: str) -> str:
    """The NFD ``cpu.cpuid`` attribute for a cpuinfo flag, "" when unknown."""
    if flag in _X86_RENAMES:
        return _X86_RENAMES[flag]
    return flag.upper() if flag in _X86_SAME else ""


def nfd_document(report: ScanReport | Mapping[str, Any]) -> dict[str, Any] | None:
    """The NFD spec for ``report`` (or its JSON form), or None when no requirement has an NFD form."""
    if isinstance(report, ScanReport):
        requirements, gpu = report.requirements, report.fact("gpu")
    else:
        requirements = [Requirement.from_dict(r) for r in report.get("requirements") or ()]
        gpu = str(((report.get("facts") or {}).get("gpu") or {}).get("value", ""))
    rules: list[dict[str, Any]] = []
    for requirement in requirements:
        if requirement.kind != "cpu-target" or not requirement.features:
            continue
        names = sorted({n for n in (nfd_name(f) for f in requirement.features) if n})
        if names:
            rules.append(
                {
                    "name": f"cpu features of spack target {requirement.name}",
                    "matchFeatures": [
                        {"feature": "cpu.cpuid", "matchExpressions": {n: {"op": "Exists"} for n in names}}
                    ],
                }
            )
    for stack in gpu.split(","):
        if stack in _PCI_VENDORS:
            vendor, label = _PCI_VENDORS[stack]
            rules.append(
                {
                    "name": f"{label} GPU ({stack})",
                    "matchFeatures": [
                        {"feature": "pci.device", "matchExpressions": {"vendor": {"op": "In", "value": [vendor]}}}
                    ],
                }
            )
    if not rules:
        return None
    return {
        "version": NFD_VERSION,
        "compatibilities": [{"description": "host requirements found by ocikit compat scan", "rules": rules}],
    }
