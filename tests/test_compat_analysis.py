"""Facts and requirements from spack metadata and from ELF metadata of stacks Debian main cannot supply.

spack views with MPI providers and microarchitecture targets are made from the real fixture's
spec.json (a provider edge and a target dict added the way spack writes them); the CUDA case
uses constructed ELF *metadata* (ElfInfo records), because no CUDA runtime is in Debian main.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
from compat_support import VIEW_HASH, copy_into, debian_libs, spack_view_fixture  # noqa: F401

from ocikit.compat.analysis import analyse
from ocikit.compat.check import MISSING, OK, check_host
from ocikit.compat.elf import ElfInfo
from ocikit.compat.host import HostInfo
from ocikit.compat.nfd import nfd_document
from ocikit.compat.report import ScanReport
from ocikit.compat.scan import scan
from ocikit.spec import mediatypes as mt

HASWELL = [
    "mmx",
    "sse",
    "sse2",
    "ssse3",
    "sse4_1",
    "sse4_2",
    "popcnt",
    "aes",
    "pclmulqdq",
    "avx",
    "rdrand",
    "f16c",
    "movbe",
    "fma",
    "avx2",
    "bmi1",
    "bmi2",
]


def _spec_with(fixture: dict[str, str], provider: str, version: str, target: object = "x86_64") -> dict:
    """The fixture's zstd spec.json plus an MPI provider node and edge, and a given target."""
    with open(os.path.join(fixture["view"], ".spack", "zstd", "spec.json"), encoding="utf-8") as stream:
        document = json.load(stream)
    nodes = document["spec"]["nodes"]
    mpi = copy.deepcopy(nodes[0])
    mpi.update(name=provider, version=version, hash="a" * 32, dependencies=[])
    nodes[0]["dependencies"].append(
        {"name": provider, "hash": "a" * 32, "parameters": {"deptypes": ["build", "link"], "virtuals": ["mpi"]}}
    )
    nodes.append(mpi)
    for node in nodes:
        node["arch"]["target"] = target
    return document


def _mpi_view(tmp_path, debian_root: str, document: dict) -> str:
    root = copy_into(debian_root, ["usr/bin/ompi_info"], str(tmp_path / "view"))
    spack_dir = os.path.join(root, ".spack", "zstd")
    os.makedirs(spack_dir)
    with open(os.path.join(spack_dir, "spec.json"), "w", encoding="utf-8") as stream:
        json.dump(document, stream)
    return root


def test_spack_provider_and_scan_agree_on_open_mpi(tmp_path, spack_view_fixture, debian_libs):  # noqa: F811
    report = scan(_mpi_view(tmp_path, debian_libs, _spec_with(spack_view_fixture, "openmpi", "4.1.6")))
    implementation = report.facts["mpi.implementation"]
    assert implementation.value == "openmpi" and implementation.sources == ("spack", "scan")
    assert report.facts["mpi.version"].value == "4.1.6" and report.facts["mpi.version"].sources == ("spack",)
    assert report.annotations()[mt.SUPERCONTAINERS_MPI] == "openmpi"


def test_spack_names_an_mpich_family_mpi_the_scan_does_not_confirm(
    tmp_path,
    spack_view_fixture,  # noqa: F811
    debian_libs,  # noqa: F811
):
    report = scan(_mpi_view(tmp_path, debian_libs, _spec_with(spack_view_fixture, "intel-oneapi-mpi", "2021.10.0")))
    assert report.facts["mpi.implementation"].value == "intel-oneapi-mpi"
    assert report.facts["mpi.implementation"].sources == ("spack",)  # ompi_info needs libmpi.so.40: no agreement
    assert report.fact("mpi.family") == "mpich"
    assert report.fact("mpi.abi") == "libmpi.so.40"


def test_target_features_from_spec_json_become_the_cpu_requirement(
    tmp_path,
    spack_view_fixture,  # noqa: F811
    debian_libs,  # noqa: F811
):
    target = {
        "name": "haswell",
        "vendor": "GenuineIntel",
        "features": HASWELL,
        "generation": 0,
        "parents": ["ivybridge"],
    }
    report = scan(_mpi_view(tmp_path, debian_libs, _spec_with(spack_view_fixture, "openmpi", "4.1.6", target)))
    cpu = next(r for r in report.requirements if r.kind == "cpu-target")
    assert cpu.name == "haswell" and set(cpu.features) == set(HASWELL) and cpu.sources == ("spack",)
    host = HostInfo(machine="x86_64", cpu_flags=frozenset(HASWELL) - {"avx2"})
    item = next(i for i in check_host([cpu], host).items)
    assert item.status == MISSING and "avx2" in item.why
    rules = nfd_document(report)["compatibilities"][0]["rules"]
    cpuid = rules[0]["matchFeatures"][0]
    assert cpuid["feature"] == "cpu.cpuid"
    assert {"AVX2", "FMA3", "SSE42", "AESNI"} <= set(cpuid["matchExpressions"])


def _cuda_report() -> ScanReport:
    common = {"machine": "x86_64", "e_machine": "EM_X86_64", "bits": 64, "endianness": "little"}
    report = ScanReport(
        root="/views/cuda-app",
        elf_files=[
            ElfInfo(
                "bin/solver",
                elf_type="ET_DYN",
                interpreter="/lib64/ld-linux-x86-64.so.2",
                needed=("libcudart.so.12", "libc.so.6"),
                version_needs=(("libc.so.6", "GLIBC_2.34"),),
                **common,
            ),
            ElfInfo(
                "lib/libcudart.so.12.2.140",
                elf_type="ET_DYN",
                soname="libcudart.so.12",
                needed=("libc.so.6", "libdl.so.2"),
                version_needs=(("libc.so.6", "GLIBC_2.17"),),
                **common,
            ),
        ],
        symlink_names={"libcudart.so.12"},
    )
    analyse(report)
    return report


def test_cuda_runtime_needs_a_driver_for_its_major():
    report = _cuda_report()
    assert report.fact("gpu") == "cuda"
    assert report.fact("cuda.runtime") == "12.2"
    assert report.annotations()[mt.SUPERCONTAINERS_GPU] == "cuda"
    driver = next(r for r in report.requirements if r.kind == "cuda-driver")
    assert driver.minimum == "525.60.13" and driver.required
    assert not [r for r in report.requirements if r.kind == "library"]  # libcudart ships in the view
    too_old = check_host(report, HostInfo(machine="x86_64", libc="glibc", glibc="2.36", nvidia_driver="470.57.02"))
    assert not too_old.compatible
    fine = check_host(report, HostInfo(machine="x86_64", libc="glibc", glibc="2.36", nvidia_driver="550.54.14"))
    assert next(i for i in fine.items if i.requirement.kind == "cuda-driver").status == OK
    vendors = [
        r["matchFeatures"][0]["matchExpressions"]["vendor"]["value"]
        for r in nfd_document(report)["compatibilities"][0]["rules"]
    ]
    assert vendors == [["10de"]]


@pytest.mark.parametrize("machine", ["aarch64", "ppc64le"])
def test_mixed_architectures_make_the_minority_advisory(machine):
    report = ScanReport(
        root="/views/mixed",
        elf_files=[
            ElfInfo(
                f"bin/tool{i}",
                machine="x86_64",
                e_machine="EM_X86_64",
                bits=64,
                endianness="little",
                elf_type="ET_EXEC",
            )
            for i in range(3)
        ]
        + [
            ElfInfo(
                "share/firmware.elf",
                machine=machine,
                e_machine="EM_OTHER",
                bits=64,
                endianness="little",
                elf_type="ET_EXEC",
            )
        ],
    )
    analyse(report)
    arches = [(r.name, r.required) for r in report.requirements if r.kind == "arch"]
    assert arches == [("x86_64", True), (machine, False)]
