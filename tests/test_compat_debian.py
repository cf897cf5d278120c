"""Real MPI, fabric and GPU-stack libraries from Debian bookworm (downloaded, unpacked, never installed)."""

from __future__ import annotations

import os

import pytest
from compat_support import (  # noqa: F401
    copy_into,
    debian_libs,
    glibc_sonames,
    is_elf,
    objdump_max_versions,
    package_files,
    readelf_runtime_closure,
)

from ocikit.compat.check import MISSING, OK, check_host
from ocikit.compat.host import HostInfo
from ocikit.compat.libraries import GLIBC_SONAMES
from ocikit.compat.nfd import nfd_document
from ocikit.compat.scan import scan
from ocikit.errors import IncompatibleError
from ocikit.spec import mediatypes as mt

LIBDIR = "usr/lib/x86_64-linux-gnu"


def _view(debian_root: str, tmp_path, *packages: str) -> str:
    files = [f for p in packages for f in package_files(debian_root, p)]
    return copy_into(debian_root, files, str(tmp_path / "view"))


def _host_with(debian_root: str, *packages: str) -> HostInfo:
    """This machine, plus the sonames of some downloaded packages as if they were installed."""
    real = HostInfo.probe()
    libraries = dict(real.libraries or {})
    for package in packages:
        for relative in package_files(debian_root, package):
            name = os.path.basename(relative)
            if ".so" in name:
                libraries[name] = "/" + relative
    return real.with_changes(libraries=libraries)


def _host_without_mpi() -> HostInfo:
    real = HostInfo.probe()
    assert not real.mpi_libraries(), "this test expects a machine without MPI installed"
    return real


def test_glibc_sonames_table_covers_libc6():
    assert glibc_sonames() <= GLIBC_SONAMES


def test_glibc_and_libstdcxx_answers_match_objdump_on_every_library(debian_libs):  # noqa: F811
    report = scan(debian_libs)
    assert len(report.elf_files) > 100
    for info in report.elf_files:
        expected = objdump_max_versions(os.path.join(debian_libs, info.path))
        for family in ("GLIBC", "GLIBCXX", "CXXABI"):
            assert info.max_version(family) == expected.get(family, ""), (info.path, family)
    highest = max(
        (objdump_max_versions(os.path.join(debian_libs, e.path)).get("GLIBC", "0") for e in report.elf_files),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    assert report.fact("glibc.minimum") == highest


def test_open_mpi_program_needs_libmpi_40_from_the_host(debian_libs, tmp_path):  # noqa: F811
    root = copy_into(debian_libs, ["usr/bin/ompi_info", "usr/bin/orte-info"], str(tmp_path / "view"))
    report = scan(root)
    assert report.fact("mpi.implementation") == "openmpi"
    assert report.facts["mpi.implementation"].sources == ("scan",)
    assert report.fact("mpi.abi") == "libmpi.so.40"
    assert report.annotations()[mt.SUPERCONTAINERS_MPI] == "openmpi"
    libmpi = next(r for r in report.requirements if r.name == "libmpi.so.40")
    assert libmpi.kind == "library" and libmpi.category == "mpi" and libmpi.required
    assert "usr/bin/ompi_info" in libmpi.why

    bare = check_host(report, _host_without_mpi())
    item = next(i for i in bare.items if i.requirement.name == "libmpi.so.40")
    assert item.status == MISSING and "host has no MPI library" in item.why
    assert not bare.compatible
    with pytest.raises(IncompatibleError, match="libmpi.so.40"):
        bare.raise_if_incompatible()

    mpich_host = check_host(report, _host_with(debian_libs, "libmpich12"))
    item = next(i for i in mpich_host.items if i.requirement.name == "libmpi.so.40")
    assert item.status == MISSING and "libmpich.so.12" in item.why and "different MPI ABI" in item.why

    openmpi_host = check_host(report, _host_with(debian_libs, "libopenmpi3"))
    statuses = {i.requirement.name: i.status for i in openmpi_host.items if i.requirement.category == "mpi"}
    assert statuses == {"libmpi.so.40": OK, "libopen-rte.so.40": OK, "libopen-pal.so.40": OK}


def test_ld_library_path_makes_a_module_loaded_mpi_visible(debian_libs, tmp_path, monkeypatch):  # noqa: F811
    root = copy_into(debian_libs, ["usr/bin/ompi_info"], str(tmp_path / "view"))
    report = scan(root)
    monkeypatch.setenv("LD_LIBRARY_PATH", os.path.join(debian_libs, LIBDIR))
    host = HostInfo.probe()  # the real probe, with the unpacked Open MPI on LD_LIBRARY_PATH
    assert host.library_path("libmpi.so.40") == os.path.join(debian_libs, LIBDIR, "libmpi.so.40")
    result = check_host(report, host)
    assert {i.requirement.name: i.status for i in result.items if i.requirement.category == "mpi"}["libmpi.so.40"] == OK


def test_required_versus_advisory_follows_the_dt_needed_closure(debian_libs, tmp_path):  # noqa: F811
    root = _view(debian_libs, tmp_path, "mpich", "libmpich12", "libucx0", "libfabric1")
    report = scan(root)
    reached, external = readelf_runtime_closure(root)
    glibc = glibc_sonames()
    expected = {
        soname: any(user in reached for user in users) for soname, users in external.items() if soname not in glibc
    }
    got = {r.name: r.required for r in report.requirements if r.kind == "library"}
    assert got == expected
    assert any(expected.values()) and not all(expected.values()), "the view should have both kinds"
    mpi = report.facts["mpi.implementation"]
    assert mpi.value == "mpich" and "libmpich.so.12 in the view" in mpi.evidence
    assert {"ucx", "libfabric"} <= set(report.fact("fabric").split(","))


def test_fabric_library_view_without_programs_requires_everything(debian_libs, tmp_path):  # noqa: F811
    root = _view(debian_libs, tmp_path, "libfabric1")
    report = scan(root)
    _, external = readelf_runtime_closure(root)
    libraries = [r for r in report.requirements if r.kind == "library"]
    assert {r.name for r in libraries} == set(external) - glibc_sonames()
    assert all(r.required for r in libraries)
    assert "libibverbs.so.1" in {r.name for r in libraries if r.category == "fabric"}
    assert "libfabric" in report.fact("fabric").split(",")


def test_rocm_and_opencl_consumers(debian_libs, tmp_path):  # noqa: F811
    root = _view(debian_libs, tmp_path, "libhiprand1", "clinfo")
    report = scan(root)
    assert report.fact("gpu") == "opencl,rocm"
    assert report.fact("rocm.hip") == "5"
    assert report.annotations()[mt.SUPERCONTAINERS_GPU] == "opencl,rocm"
    hip = next(r for r in report.requirements if r.name == "libamdhip64.so.5")
    opencl = next(r for r in report.requirements if r.name == "libOpenCL.so.1")
    assert hip.category == opencl.category == "gpu"
    assert opencl.required  # clinfo links it
    assert not hip.required  # only libhiprand, which no program of the view links
    document = nfd_document(report)
    assert document is not None
    rule = document["compatibilities"][0]["rules"][0]
    assert rule["matchFeatures"][0] == {
        "feature": "pci.device",
        "matchExpressions": {"vendor": {"op": "In", "value": ["1002"]}},
    }


def test_scripts_and_perl(debian_libs):  # noqa: F811
    report = scan(debian_libs)
    # mpijavac.pl and aggregate_profile are perl scripts shipped by Open MPI
    assert "/usr/bin/perl" in report.interpreters
    perl = next(r for r in report.requirements if r.kind == "interpreter" and r.name == "/usr/bin/perl")
    assert not perl.required


def test_parallel_scan_of_many_elf_files_matches_serial(debian_libs, monkeypatch):  # noqa: F811
    import ocikit.compat.scan as scan_module

    submitted = []

    class CountingPool(scan_module.ProcessPoolExecutor):
        def submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            submitted.append(len(args[2]))
            return super().submit(*args, **kwargs)

    serial = scan(debian_libs, workers=1).to_dict(files=True)
    monkeypatch.setattr(scan_module, "_BATCH", 16)  # the tree is smaller than one default batch
    monkeypatch.setattr(scan_module, "ProcessPoolExecutor", CountingPool)
    parallel = scan(debian_libs, workers=2).to_dict(files=True)
    assert len(submitted) > 10 and sum(submitted) == serial["counts"]["regularFiles"]
    serial.pop("seconds"), parallel.pop("seconds")
    assert serial == parallel
