"""ELF reading on the machine's own binaries, checked against binutils (objdump, readelf)."""

from __future__ import annotations

import os
import shutil

import pytest
from compat_support import (  # noqa: F401
    is_elf,
    objdump_max_versions,
    readelf_dynamic,
    readelf_interpreter,
    readelf_machine,
)

from ocikit.compat.elf import defined_versions, read_elf

pytestmark = pytest.mark.skipif(shutil.which("objdump") is None, reason="binutils not installed")

# readelf's "Machine:" text for the machines ocikit names
_READELF_MACHINE = {"x86_64": "X86-64", "aarch64": "AArch64", "i686": "80386", "ppc64le": "PowerPC64"}


def _sample(directory: str, count: int) -> list[str]:
    """Every n-th ELF file of a system directory, deterministic and spread over the alphabet."""
    if not os.path.isdir(directory):
        return []
    names = sorted(n for n in os.listdir(directory) if not os.path.islink(os.path.join(directory, n)))
    paths = [os.path.join(directory, n) for n in names if is_elf(os.path.join(directory, n))]
    step = max(1, len(paths) // count)
    return paths[::step][:count]


SYSTEM_ELF = (
    _sample("/usr/bin", 25) + _sample("/usr/lib/x86_64-linux-gnu", 25) + _sample("/usr/lib/aarch64-linux-gnu", 25)
)


def test_sample_is_large_enough():
    assert len(SYSTEM_ELF) >= 20, "expected plenty of ELF files in /usr/bin and /usr/lib/<triplet>"


@pytest.mark.parametrize("path", SYSTEM_ELF, ids=os.path.basename)
def test_version_needs_match_objdump(path):
    info = read_elf(path)
    assert not info.error
    expected = objdump_max_versions(path)
    for family in ("GLIBC", "GLIBCXX", "CXXABI"):
        assert info.max_version(family) == expected.get(family, ""), family


@pytest.mark.parametrize("path", SYSTEM_ELF, ids=os.path.basename)
def test_dynamic_section_and_interpreter_match_readelf(path):
    info = read_elf(path)
    dynamic = readelf_dynamic(path)
    assert list(info.needed) == dynamic["NEEDED"]
    assert info.soname == (dynamic["SONAME"][0] if dynamic["SONAME"] else "")
    assert ":".join(info.rpath) == ":".join(dynamic["RPATH"])
    assert ":".join(info.runpath) == ":".join(dynamic["RUNPATH"])
    assert info.interpreter == readelf_interpreter(path)
    assert _READELF_MACHINE.get(info.machine, "?") in readelf_machine(path)


def test_truncated_elf_is_reported_not_raised(tmp_path):
    with open("/usr/bin/ls", "rb") as stream:
        head = stream.read(200)  # a real ELF header whose section table is cut off
    truncated = tmp_path / "ls-truncated"
    truncated.write_bytes(head)
    info = read_elf(str(truncated), "ls-truncated")
    assert info.error
    assert info.path == "ls-truncated"


def test_unreadable_path_is_reported():
    info = read_elf("/nonexistent/libfoo.so.1", "lib/libfoo.so.1")
    assert info.error.startswith("cannot read")


def test_defined_versions_of_libstdcxx_match_objdump():
    path = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
    if not os.path.exists(path):
        pytest.skip("no libstdc++ on this machine")
    import subprocess

    text = subprocess.run(["objdump", "-p", path], capture_output=True, text=True, check=True).stdout
    section = text.split("Version definitions:", 1)[1].split("Version References:", 1)[0]
    expected = {line.split()[-1] for line in section.splitlines() if line.strip() and line.split()[-1][0].isalpha()}
    assert {"GLIBCXX_3.4", "CXXABI_1.3"} <= set(defined_versions(path))
    assert set(defined_versions(path)) == expected


def test_scan_survives_broken_elf_fifos_and_counts_progress(tmp_path):
    from ocikit.compat.scan import scan
    from ocikit.progress import CountingProgress

    root = tmp_path / "view"
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/usr/bin/ls", root / "bin" / "ls")
    with open("/usr/bin/ls", "rb") as stream:
        (root / "bin" / "broken").write_bytes(stream.read(200))
    os.mkfifo(root / "bin" / "pipe")  # opening it for reading would block
    (root / "bin" / "ll").symlink_to("ls")
    progress = CountingProgress()
    report = scan(str(root), progress=progress)
    assert report.regular_files == 2 and report.symlinks == 1
    assert progress.total_advanced == 2
    assert [e.path for e in report.elf_files if e.error] == ["bin/broken"]
    assert report.to_dict()["unparsableElf"][0]["path"] == "bin/broken"
    assert report.fact("glibc.minimum") == objdump_max_versions("/usr/bin/ls")["GLIBC"]
