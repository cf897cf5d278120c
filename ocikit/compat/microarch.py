"""CPU feature sets of the microarchitectures spack targets (a small subset of archspec).

A view built for ``target=haswell`` uses AVX2 and FMA; on an Ivy Bridge node it dies with
"Illegal instruction" somewhere inside a library. spack's ``spec.json`` names the target
and, for non-generic targets, usually lists its features too; this table covers the
common names when it does not. Feature names are those of ``/proc/cpuinfo`` flags
(x86) and ``Features`` (aarch64), which are also archspec's names.
"""

from __future__ import annotations

# name -> (family, parent or "", features added over the parent)
_TABLE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # x86-64 psABI levels
    "x86_64": ("x86_64", "", ()),
    "x86_64_v2": ("x86_64", "x86_64", ("cx16", "lahf_lm", "mmx", "sse", "sse2", "ssse3", "sse4_1", "sse4_2", "popcnt")),
    "x86_64_v3": ("x86_64", "x86_64_v2", ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")),
    "x86_64_v4": ("x86_64", "x86_64_v3", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
    # Intel
    "nocona": ("x86_64", "x86_64", ("mmx", "sse", "sse2", "sse3")),
    "core2": ("x86_64", "nocona", ("ssse3",)),
    "nehalem": ("x86_64", "core2", ("sse4_1", "sse4_2", "popcnt")),
    "westmere": ("x86_64", "nehalem", ("aes", "pclmulqdq")),
    "sandybridge": ("x86_64", "westmere", ("avx",)),
    "ivybridge": ("x86_64", "sandybridge", ("rdrand", "f16c")),
    "haswell": ("x86_64", "ivybridge", ("movbe", "fma", "avx2", "bmi1", "bmi2")),
    "broadwell": ("x86_64", "haswell", ("rdseed", "adx")),
    "skylake": ("x86_64", "broadwell", ("clflushopt", "xsavec", "xsaveopt")),
    "skylake_avx512": ("x86_64", "skylake", ("avx512f", "clwb", "avx512vl", "avx512bw", "avx512dq", "avx512cd")),
    "cascadelake": ("x86_64", "skylake_avx512", ("avx512_vnni",)),
    "icelake": (
        "x86_64",
        "cascadelake",
        (
            "avx512ifma",
            "avx512vbmi",
            "avx512_vbmi2",
            "avx512_bitalg",
            "avx512_vpopcntdq",
            "gfni",
            "vaes",
            "vpclmulqdq",
            "sha_ni",
        ),
    ),
    "sapphirerapids": ("x86_64", "icelake", ("avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "avx512_fp16")),
    # AMD
    "zen": (
        "x86_64",
        "x86_64",
        (
            "bmi1",
            "bmi2",
            "f16c",
            "fma",
            "fsgsbase",
            "avx",
            "avx2",
            "rdseed",
            "clzero",
            "aes",
            "pclmulqdq",
            "cx16",
            "movbe",
            "mmx",
            "sse",
            "sse2",
            "sse4a",
            "ssse3",
            "sse4_1",
            "sse4_2",
            "abm",
            "xsavec",
            "xsaveopt",
            "clflushopt",
            "popcnt",
        ),
    ),
    "zen2": ("x86_64", "zen", ("clwb",)),
    "zen3": ("x86_64", "zen2", ("pku", "vaes", "vpclmulqdq")),
    "zen4": (
        "x86_64",
        "zen3",
        (
            "avx512f",
            "avx512dq",
            "avx512ifma",
            "avx512cd",
            "avx512bw",
            "avx512vl",
            "avx512vbmi",
            "avx512_vbmi2",
            "avx512_vnni",
            "avx512_bitalg",
            "avx512_vpopcntdq",
            "avx512_bf16",
            "gfni",
        ),
    ),
    # Arm
    "aarch64": ("aarch64", "", ("fp", "asimd")),
    "neoverse_n1": (
        "aarch64",
        "aarch64",
        (
            "evtstrm",
            "aes",
            "pmull",
            "sha1",
            "sha2",
            "crc32",
            "atomics",
            "fphp",
            "asimdhp",
            "cpuid",
            "asimdrdm",
            "lrcpc",
            "dcpop",
            "asimddp",
        ),
    ),
    "neoverse_v1": (
        "aarch64",
        "neoverse_n1",
        (
            "sha3",
            "sm3",
            "sm4",
            "asimdfhm",
            "dit",
            "uscat",
            "ilrcpc",
            "flagm",
            "ssbs",
            "paca",
            "pacg",
            "dcpodp",
            "svei8mm",
            "svebf16",
            "i8mm",
            "bf16",
            "dgh",
            "rng",
            "sve",
        ),
    ),
    "neoverse_v2": ("aarch64", "neoverse_v1", ("sve2", "sb")),
    "a64fx": (
        "aarch64",
        "aarch64",
        ("evtstrm", "sha1", "sha2", "crc32", "atomics", "cpuid", "asimdrdm", "fphp", "asimdhp", "fcma", "dcpop", "sve"),
    ),
    # generic families spack may name without features
    "ppc64le": ("ppc64le", "", ()),
    "ppc64": ("ppc64", "", ()),
    "riscv64": ("riscv64", "", ()),
}

# Marketing names spack/archspec accept for the same microarchitecture.
_ALIASES = {"graviton2": "neoverse_n1", "graviton3": "neoverse_v1", "graviton4": "neoverse_v2"}

# A required feature is also satisfied by any of these host flags (archspec "feature_aliases":
# ssse3 implies sse3, and Linux calls SSE3 "pni"; every ARMv8 core has NEON = asimd).
FEATURE_ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "sse3": ("pni", "ssse3"),
    "neon": ("asimd",),
    "lzcnt": ("abm",),
}


def canonical(name: str) -> str:
    return _ALIASES.get(name, name)


def is_known(name: str) -> bool:
    return canonical(name) in _TABLE


def family(name: str) -> str:
    """The machine family (``x86_64``, ``aarch64``) of a target name, "" if unknown."""
    entry = _TABLE.get(canonical(name))
    return entry[0] if entry else ""


def features(name: str) -> frozenset[str]:
    """All features of ``name`` including its ancestors' (empty for unknown names)."""
    collected: set[str] = set()
    current = canonical(name)
    while current:
        entry = _TABLE.get(current)
        if entry is None:
            break
        collected.update(entry[2])
        current = entry[1]
    return frozenset(collected)


def missing_features(required: frozenset[str] | set[str] | tuple[str, ...], host_flags: frozenset[str]) -> list[str]:
    """Required features the host lacks, honouring :data:`FEATURE_ALTERNATIVES`."""
    missing = []
    for feature in sorted(required):
        if feature in host_flags:
            continue
        if any(alt in host_flags for alt in FEATURE_ALTERNATIVES.get(feature, ())):
            continue
        missing.append(feature)
    return missing


def best_host_target(host_flags: frozenset[str], machine: str) -> str:
    """The most capable psABI level / generic target the host flags satisfy (for messages)."""
    if machine == "x86_64":
        best = "x86_64"
        for level in ("x86_64_v2", "x86_64_v3", "x86_64_v4"):
            if missing_features(features(level), host_flags):
                break
            best = level
        return best
    return machine
