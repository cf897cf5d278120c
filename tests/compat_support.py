"""Fixtures and independent oracles for the compat tests (imported by tests/test_compat_*.py).

The oracles read ELF files with binutils (``objdump``, ``readelf``), never with the code
under test, so a disagreement points at ocikit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib import resources

import pytest
from environment import SPACK_VIEW_ARCHIVE, SPACK_VIEW_README
from environment import skip_or_fail as _skip_or_fail

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VIEW_HASH = "m5vlrdleywqmp3aiv3sv2s54dysxhz6m"




@pytest.fixture(scope="session")
def spack_view_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The real spack copy view unpacked once: {"root", "view", "readme"}."""
    root = tmp_path_factory.mktemp("spack-view-a")
    subprocess.run(["tar", "--zstd", "-xf", SPACK_VIEW_ARCHIVE, "-C", str(root)], check=True)
    return {
        "root": str(root),
        "view": os.path.join(str(root), "opt", "._view", VIEW_HASH),
        "readme": SPACK_VIEW_README,
    }


@pytest.fixture(scope="session")
def debian_libs() -> str:
    """Real MPI/fabric/GPU-stack libraries from Debian bookworm, unpacked (scripts/fetch-debian-libs.sh)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        _skip_or_fail("apt-get/dpkg-deb not available to fetch the Debian packages")
    script = os.path.join(REPO, "scripts", "fetch-debian-libs.sh")
    result = subprocess.run([script], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        _skip_or_fail(f"fetch-debian-libs.sh failed: {result.stderr.strip()[-500:]}")
    return result.stdout.strip().splitlines()[-1]


def copy_into(source_root: str, relatives: list[str], destination: str) -> str:
    """Copy files (symlinks as symlinks) from ``source_root`` into ``destination``, keeping paths."""
    for relative in relatives:
        source = os.path.join(source_root, relative)
        target = os.path.join(destination, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
    return destination


# -- binutils oracles -------------------------------------------------------------------

_OBJDUMP_VERSION = re.compile(r"\*UND\*\s+\S+\s+(?:\(([A-Za-z_]+)_([\d.]+)\)|([A-Za-z_]+)_([\d.]+))\s")


def objdump_max_versions(path: str) -> dict[str, str]:
    """Highest GLIBC_/GLIBCXX_/CXXABI_ versions of the undefined symbols per ``objdump -T``."""
    out = subprocess.run(["objdump", "-T", path], capture_output=True, text=True, check=False).stdout
    best: dict[str, tuple[int, ...]] = {}
    for line in out.splitlines():
        if "*UND*" not in line:
            continue
        match = re.search(r"\s\(?(GLIBC|GLIBCXX|CXXABI)_(\d+(?:\.\d+)+)\)?\s", line)
        if not match:
            continue
        family, version = match.group(1), tuple(int(p) for p in match.group(2).split("."))
        if version > best.get(family, ()):
            best[family] = version
    return {family: ".".join(map(str, v)) for family, v in best.items()}


def readelf_dynamic(path: str) -> dict[str, list[str]]:
    """NEEDED, SONAME, RPATH, RUNPATH as ``readelf -d`` prints them."""
    out = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True, check=False).stdout
    found: dict[str, list[str]] = {"NEEDED": [], "SONAME": [], "RPATH": [], "RUNPATH": []}
    for line in out.splitlines():
        match = re.search(r"\((NEEDED|SONAME|RPATH|RUNPATH)\)\s+[^\[]*\[(.*)\]\s*$", line)
        if match:
            found[match.group(1)].append(match.group(2))
    return found


def readelf_interpreter(path: str) -> str:
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=False).stdout
    match = re.search(r"Requesting program interpreter: (.*)\]", out)
    return match.group(1) if match else ""


def readelf_machine(path: str) -> str:
    out = subprocess.run(["readelf", "-hW", path], capture_output=True, text=True, check=False).stdout
    match = re.search(r"Machine:\s+(.*)", out)
    return match.group(1).strip() if match else ""


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read(4) == b"\x7fELF"
    except OSError:
        return False


# -- schemas ----------------------------------------------------------------------------


def validator(schema_file: str):  # type: ignore[no-untyped-def]
    """A jsonschema validator for one of ocikit's schemas, with the others resolvable by file name."""
    import jsonschema
    from referencing import Registry, Resource

    files = resources.files("ocikit.schemas")
    schemas = {
        entry.name: json.loads(entry.read_text()) for entry in files.iterdir() if entry.name.endswith(".schema.json")
    }
    # Schemas refer to each other by $id (their media type).
    registry = Registry().with_resources(
        (contents["$id"], Resource.from_contents(contents)) for contents in schemas.values()
    )
    schema = schemas[schema_file]
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


# -- Debian packages ----------------------------------------------------------------------


def package_files(debian_root: str, package: str) -> list[str]:
    """Regular files and symlinks a downloaded .deb installs (``dpkg-deb -c``), minus docs."""
    debs = os.path.join(os.path.dirname(debian_root), "debs")
    deb = next(os.path.join(debs, n) for n in sorted(os.listdir(debs)) if n.startswith(package + "_"))
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    out = []
    for line in listing.splitlines():
        mode, path = line.split()[0], line.split()[5]
        path = path.removeprefix("./")
        if mode[0] in "-l" and not path.startswith("usr/share/"):
            out.append(path)
    return out


def glibc_sonames() -> set[str]:
    """Sonames the host's libc6 package installs (``dpkg -L libc6``): what glibc provides."""
    listing = subprocess.run(["dpkg", "-L", "libc6"], capture_output=True, text=True, check=True).stdout
    pattern = re.compile(r"^/(usr/)?lib(64)?/(x86_64-linux-gnu/|aarch64-linux-gnu/)?([^/]+\.so[.0-9]*)$")
    return {m.group(4) for m in map(pattern.match, listing.splitlines()) if m}


def readelf_runtime_closure(root: str) -> tuple[set[str], dict[str, list[str]]]:
    """(ELF files a program reaches through DT_NEEDED, soname -> users not satisfied in the tree).

    Built from readelf output and a plain walk; the same rule as ocikit's, computed independently.
    """
    names: set[str] = set()
    elf: dict[str, dict[str, object]] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            names.add(name)
            if os.path.islink(path) or not is_elf(path):
                continue
            relative = os.path.relpath(path, root)
            dynamic = readelf_dynamic(path)
            header = subprocess.run(["readelf", "-hW", path], capture_output=True, text=True, check=True).stdout
            program = bool(readelf_interpreter(path)) or "EXEC (Executable file)" in header
            elf[relative] = {"needed": dynamic["NEEDED"], "soname": dynamic["SONAME"], "program": program}
            names.update(dynamic["SONAME"])
    providers: dict[str, list[str]] = {}
    for relative, data in elf.items():
        for name in {os.path.basename(relative), *data["soname"]}:  # type: ignore[misc]
            providers.setdefault(name, []).append(relative)
    programs = [r for r, d in elf.items() if d["program"]]
    reached: set[str] = set()
    stack = list(programs)
    while stack:
        current = stack.pop()
        if current in reached:
            continue
        reached.add(current)
        for soname in elf[current]["needed"]:  # type: ignore[union-attr]
            stack.extend(providers.get(soname, []))
    external: dict[str, list[str]] = {}
    for relative, data in elf.items():
        for soname in data["needed"]:  # type: ignore[union-attr]
            if soname not in names:
                external.setdefault(soname, []).append(relative)
    return (reached if programs else set(elf)), external
