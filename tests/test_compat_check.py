"""Checking requirements against hosts: the real one, and hosts described with HostInfo."""

from __future__ import annotations

import os
import subprocess

import pytest
from compat_support import spack_view_fixture  # noqa: F401

from ocikit.compat import cuda, microarch
from ocikit.compat.check import MISSING, OK, TOO_OLD, UNKNOWN, check_host
from ocikit.compat.host import HostInfo, parse_cpuinfo, parse_ldconfig
from ocikit.compat.requirements import Requirement
from ocikit.compat.scan import scan
from ocikit.errors import IncompatibleError

HASWELL_FEATURES = microarch.features("haswell")


@pytest.fixture(scope="module")
def view(spack_view_fixture):  # noqa: F811
    return scan(spack_view_fixture["view"])


@pytest.fixture(scope="module")
def real_host() -> HostInfo:
    return HostInfo.probe()


def _status(report, kind: str) -> str:
    return next(i.status for i in report.items if i.requirement.kind == kind)


# -- the real host ------------------------------------------------------------------------


def test_probe_matches_the_system(real_host):
    glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    assert real_host.glibc == glibc and real_host.libc == "glibc"
    ldd = subprocess.run(["ldd", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    assert ldd.endswith(glibc)
    assert real_host.machine == os.uname().machine
    assert os.path.exists(real_host.library_path("libc.so.6") or "")
    with open("/proc/cpuinfo", encoding="utf-8") as stream:
        flags_line = next(line for line in stream if line.startswith(("flags", "Features")))
    assert real_host.cpu_flags == frozenset(flags_line.split(":", 1)[1].split())


def test_ldconfig_parse_keeps_only_the_host_abi(real_host):
    text = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    parsed = parse_ldconfig(text, "x86_64")
    lines = [line for line in text.splitlines()[1:] if "=>" in line]
    abi64 = [line for line in lines if "x86-64" in line]
    assert len(parsed) == len({line.split()[0] for line in abi64})
    assert all(os.path.exists(p) for p in list(parsed.values())[:50])


def test_view_on_this_host_is_compatible_iff_glibc_is_new_enough(view, real_host):
    result = check_host(view, real_host)
    glibc_ok = tuple(map(int, real_host.glibc.split("."))) >= (2, 36)
    assert result.compatible == (glibc_ok and real_host.machine == "x86_64")
    assert _status(result, "libc") == (OK if glibc_ok else TOO_OLD)


# -- simulated hosts ----------------------------------------------------------------------


def test_glibc_too_old(view, real_host):
    old = real_host.with_changes(glibc="2.28")
    result = check_host(view, old)
    item = next(i for i in result.items if i.requirement.kind == "libc")
    assert item.status == TOO_OLD
    assert "2.28 < 2.36" in item.why and "libstdc++.so.6 needs GLIBC_2.36" in item.why
    assert not result.compatible
    with pytest.raises(IncompatibleError, match="GLIBC_2.36"):
        result.raise_if_incompatible()
    assert "too old" in item.line()


def test_wrong_architecture(view, real_host):
    arm = real_host.with_changes(machine="aarch64", cpu_flags=frozenset({"fp", "asimd"}))
    result = check_host(view, arm)
    assert _status(result, "arch") == MISSING
    assert _status(result, "cpu-target") == MISSING
    assert "host is aarch64" in next(i.why for i in result.items if i.requirement.kind == "arch")


def test_musl_host(view):
    musl = HostInfo(machine="x86_64", libc="musl", libraries={}, cpu_flags=frozenset())
    result = check_host(view, musl)
    item = next(i for i in result.items if i.requirement.kind == "libc")
    assert item.status == MISSING and "musl" in item.why


def test_advisory_items_never_block(view):
    host = HostInfo(machine="x86_64", libc="glibc", glibc="2.40", programs=frozenset(), cpu_flags=frozenset())
    result = check_host(view, host)
    interpreters = [i for i in result.items if i.requirement.kind == "interpreter"]
    assert interpreters and all(i.status == MISSING and not i.blocking for i in interpreters)
    assert result.compatible


def test_unknown_host_facts_are_reported_not_blocking():
    result = check_host(
        [Requirement("library", "libfoo.so.1"), Requirement("teleporter", "v2")], HostInfo(machine="x86_64")
    )
    assert [i.status for i in result.items] == [UNKNOWN, UNKNOWN]
    assert result.compatible


def test_cpu_target_features_against_cpuinfo_flags(real_host):
    requirement = Requirement("cpu-target", "haswell", features=tuple(sorted(HASWELL_FEATURES)))
    assert {"avx2", "fma", "bmi2", "sse4_2"} <= HASWELL_FEATURES
    with open("/proc/cpuinfo", encoding="utf-8") as stream:
        _, flags = parse_cpuinfo(stream.read())
    assert flags is not None
    if not microarch.missing_features(HASWELL_FEATURES, flags):
        ok = check_host([requirement], real_host.with_changes(cpu_flags=flags))
        assert ok.items[0].status == OK
    without_avx2 = check_host([requirement], real_host.with_changes(cpu_flags=flags - {"avx2", "fma"}))
    assert without_avx2.items[0].status == MISSING
    assert "avx2, fma" in without_avx2.items[0].why


def test_spack_feature_list_wins_over_the_table():
    # spack writes the features of non-generic targets into spec.json; the table is a fallback
    custom = Requirement("cpu-target", "haswell", features=("avx512f",))
    host = HostInfo(machine="x86_64", cpu_flags=frozenset(HASWELL_FEATURES))
    assert check_host([custom], host).items[0].status == MISSING


def test_microarchitecture_table_is_consistent():
    assert microarch.features("x86_64_v2") < microarch.features("x86_64_v3") < microarch.features("x86_64_v4")
    assert microarch.features("ivybridge") < microarch.features("haswell") < microarch.features("skylake_avx512")
    assert microarch.features("graviton3") == microarch.features("neoverse_v1")
    assert microarch.family("a64fx") == "aarch64" and microarch.family("zen3") == "x86_64"
    assert microarch.missing_features({"sse3"}, frozenset({"pni"})) == []


def test_cuda_driver_requirements():
    requirement = Requirement("cuda-driver", "nvidia", minimum=cuda.minimum_driver("12.2"), category="gpu")
    assert requirement.minimum == "525.60.13"  # CUDA 12.x minor-version compatibility
    none = check_host([requirement], HostInfo(machine="x86_64"))
    assert none.items[0].status == MISSING and "no NVIDIA driver" in none.items[0].why
    old = check_host([requirement], HostInfo(machine="x86_64", nvidia_driver="470.82.01", cuda_driver="11.4"))
    assert old.items[0].status == TOO_OLD
    new = check_host([requirement], HostInfo(machine="x86_64", nvidia_driver="535.104.05", cuda_driver="12.2"))
    assert new.items[0].status == OK
    assert cuda.highest_cuda_for_driver("535.104.05") == "12.2"
    assert cuda.highest_cuda_for_driver("400.1") == ""


def test_third_party_document_with_supercontainers_keys(real_host):
    document = {
        "compatibilities": {
            "org.supercontainers": {"mpi.implementation": "openmpi", "glibc": "2.99.0"},
            "io.archspec": {"target": "x86_64"},
        }
    }
    result = check_host(document, real_host)
    kinds = {i.requirement.kind: i for i in result.items}
    assert kinds["libc"].status == TOO_OLD
    assert kinds["library"].requirement.name == "libmpi.so.40" and not kinds["library"].requirement.required
    assert not result.compatible


def test_host_round_trips_through_json(real_host):
    again = HostInfo.from_dict(real_host.to_dict(full=True))
    assert again == real_host.with_changes(programs=None)
