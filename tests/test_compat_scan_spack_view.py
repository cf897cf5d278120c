"""Scanning the real spack copy view fixture; expectations come from its README and from binutils."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from compat_support import is_elf, objdump_max_versions, readelf_dynamic, spack_view_fixture, validator  # noqa: F401

from ocikit.compat.document import compat_document
from ocikit.compat.scan import scan
from ocikit.spec import mediatypes as mt


def _readme(fixture: dict[str, str]) -> str:
    with open(fixture["readme"], encoding="utf-8") as stream:
        return stream.read()


def _expand_slashes(text: str) -> str:
    """The README writes a run of N leading slashes as [Nx'/']."""
    return re.sub(r"\[(\d+)x'/'\]", lambda m: "/" * int(m.group(1)), text)


def readme_elf_table(fixture: dict[str, str]) -> dict[str, dict[str, object]]:
    """path (relative to the unpacked root) -> type, rpath, runpath, glibc, other version needs."""
    rows = {}
    section = _readme(fixture).split("#### ELF files", 1)[1].split("####", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`/opt/"):
            continue
        path, elf_type, paths, glibc, other = cells
        rpath = runpath = ""
        paths = paths.strip("`")
        if paths.startswith("RPATH="):
            rpath = _expand_slashes(paths[len("RPATH=") :])
        elif paths.startswith("RUNPATH="):
            runpath = _expand_slashes(paths[len("RUNPATH=") :])
        rows[path.strip("`").lstrip("/")] = {
            "type": "ET_" + elf_type,
            "rpath": rpath,
            "runpath": runpath,
            "glibc": glibc,
            "other": set() if other == "-" else {v.strip() for v in other.split(",")},
        }
    return rows


def readme_specs(fixture: dict[str, str]) -> tuple[set[str], set[str]]:
    """(name@version of the packages in the archive, name@version of the externals)."""
    block = _readme(fixture).split("### Concretized specs", 1)[1].split("```", 2)[1]
    built, externals = set(), set()
    for line in block.splitlines():
        if line.startswith("[e]"):
            externals = {s.strip() for s in line[3:].split("(")[0].split(",") if s.strip()}
        elif re.match(r"^[a-z0-9]{7} ", line) and "EXCLUDED" not in line:
            spec = line.split()[1]
            name_version = re.match(r"([\w-]+@[\d.]+)", spec)
            assert name_version
            built.add(name_version.group(1))
    return built, externals


@pytest.fixture(scope="module")
def whole(spack_view_fixture):  # noqa: F811
    return scan(os.path.join(spack_view_fixture["root"], "opt"))


@pytest.fixture(scope="module")
def view(spack_view_fixture):  # noqa: F811
    return scan(spack_view_fixture["view"])


def test_counts_match_readme(whole, spack_view_fixture):  # noqa: F811
    table = readme_elf_table(spack_view_fixture)
    assert len(table) == 42
    assert len(whole.elf_files) == len(table)
    # README counts table: 169 + 174 regular files, 126 + 126 symlinks plus the opt/view link
    counts = re.findall(r"^\| `opt/[^`]+` \| (\d+|–)[^|]* \| (\d+)", _readme(spack_view_fixture), re.MULTILINE)
    assert whole.regular_files == sum(int(f) for f, _ in counts if f != "–")
    assert whole.symlinks == sum(int(s) for _, s in counts)


def test_every_elf_file_matches_the_readme_table(whole, spack_view_fixture):  # noqa: F811
    table = readme_elf_table(spack_view_fixture)
    by_path = {"opt/" + info.path: info for info in whole.elf_files}
    assert set(by_path) == set(table)
    for path, row in table.items():
        info = by_path[path]
        assert info.elf_type == row["type"], path
        assert ":".join(info.rpath) == row["rpath"], path
        assert ":".join(info.runpath) == row["runpath"], path
        assert info.max_version("GLIBC") == row["glibc"], path
        # the README lists the compiler-runtime families (not XZ_5.0 of the view's own liblzma)
        other = {name for _, name in info.version_needs if re.match(r"^(GCC|GLIBCXX|CXXABI)_", name)}
        assert other == row["other"], path


def test_glibc_answer_matches_objdump(whole, spack_view_fixture):  # noqa: F811
    highest = max(
        (objdump_max_versions(os.path.join(whole.root, e.path)).get("GLIBC", "0") for e in whole.elf_files),
        key=lambda v: tuple(int(p) for p in v.split(".")),
    )
    assert whole.fact("glibc.minimum") == highest == "2.36"
    version, where = whole.highest_version_need("GLIBC")
    assert (version, os.path.basename(where)) == ("2.36", "libstdc++.so.6")


def test_spack_packages_targets_and_providers_match_readme(view, spack_view_fixture):  # noqa: F811
    built, externals = readme_specs(spack_view_fixture)
    assert {p.spec for p in view.spack.packages} == built
    assert {e.spec for e in view.spack.externals} <= externals
    assert view.spack.providers["libc"].node.spec in externals
    assert view.spack.targets() == ["x86_64"]  # "all for generic target=x86_64"
    assert view.spack.operating_systems() == ["debian12"]
    assert len(view.spack.spec_files) == len(built)


def test_facts_say_where_they_come_from(view):
    facts = view.facts
    assert facts["glibc.minimum"].sources == ("scan",)
    assert "libstdc++.so.6 needs GLIBC_2.36" in facts["glibc.minimum"].evidence[0]
    assert facts["glibc.build"].sources == ("spack",) and facts["glibc.build"].value == "2.36"
    assert facts["arch"].value == "x86_64" and set(facts["arch"].sources) == {"scan", "spack"}
    assert facts["libc"].value == "glibc" and set(facts["libc"].sources) == {"scan", "spack"}
    assert facts["cpu.target"].sources == ("spack",)
    assert "mpi.implementation" not in facts and "gpu" not in facts


def test_host_needs_only_glibc_which_readelf_confirms(view):
    # Independent oracle: every DT_NEEDED (readelf) that no file or symlink of the view provides.
    names = set()
    needed = set()
    for directory, _, files in os.walk(view.root):
        for name in files:
            names.add(name)
            path = os.path.join(directory, name)
            if not os.path.islink(path) and is_elf(path):
                needed.update(readelf_dynamic(path)["NEEDED"])
    assert set(view.external_needs()) == needed - names
    libraries = [r for r in view.requirements if r.kind == "library"]
    assert libraries == []  # libc.so.6, libm.so.6, ld-linux: covered by the glibc requirement
    kinds = {(r.kind, r.name, r.minimum, r.required) for r in view.requirements}
    assert ("libc", "glibc", "2.36", True) in kinds
    assert ("arch", "x86_64", "", True) in kinds
    # gcc-runtime ships libstdc++: no GLIBCXX requirement on the host
    assert not [r for r in view.requirements if r.kind in ("glibcxx", "cxxabi")]


def test_scripts_are_found_with_their_interpreters(view, spack_view_fixture):  # noqa: F811
    # README: "Scripts in this view use #!/bin/sh or #!/bin/bash"
    assert set(view.interpreters) == {"/bin/sh", "/bin/bash"}
    scripts = sorted(p for users in view.interpreters.values() for p in users)
    shell = subprocess.run(
        'for f in bin/*; do [ -L "$f" ] || [ "$(head -c 2 "$f")" != \'#!\' ] || echo "$f"; done',
        shell=True,
        cwd=view.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert scripts == sorted(shell)
    assert all(not r.required for r in view.requirements if r.kind == "interpreter")


def test_labels_and_documents_validate(view):
    assert view.annotations() == {mt.SUPERCONTAINERS_GLIBC: "2.36.0"}
    report = view.to_dict(files=True)
    validator("ocikit.compat.scan-report.v1.schema.json").validate(report)
    document = compat_document(view)
    validator("image-compatibility.spec.v1.schema.json").validate(document)
    assert document["compatibilities"]["org.supercontainers"]["glibc"] == "2.36.0"
    assert document["compatibilities"]["io.archspec"] == {"target": "x86_64"}
    assert document == compat_document(report)  # the saved JSON gives the same artifact body


def test_parallel_and_serial_scans_agree(spack_view_fixture):  # noqa: F811
    root = os.path.join(spack_view_fixture["root"], "opt")
    serial = scan(root, workers=1).to_dict(files=True)
    parallel = scan(root, workers=2).to_dict(files=True)
    serial.pop("seconds"), parallel.pop("seconds")
    assert serial == parallel
