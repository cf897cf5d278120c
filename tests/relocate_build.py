"""Build a small installation tree with the machine's gcc, at one prefix, for relocation tests.

The tree mimics what a spack view holds: a shared library and programs linked to it through an
RPATH or a RUNPATH into the prefix, a program with its own ELF interpreter inside the prefix, a
program with the prefix compiled in as a string, a shell script whose shebang points into the
prefix, a pkg-config file, absolute symlinks, a python script and its bytecode cache, a static
archive and a compiled terminfo entry that both embed the prefix.

After building, the tree is moved away from its prefix (``pristine``), so that a test copying it
to a destination can prove the copy works without the original path existing.
"""

from __future__ import annotations

import os
import py_compile
import shutil
import subprocess
from dataclasses import dataclass

import pytest
from environment import require_binary

GREET_C = r"""
#include <stdio.h>
void greet(void) { puts("hello from libgreet"); }
"""

PROG_C = r"""
void greet(void);
int main(void) { greet(); return 0; }
"""

DATADIR_C = r"""
#include <stdio.h>
int main(void) {
    FILE *f = fopen(DATAFILE, "r");
    char line[256];
    if (!f) { perror(DATAFILE); return 1; }
    while (fgets(line, sizeof line, f)) fputs(line, stdout);
    fclose(f);
    return 0;
}
"""

ARCHIVE_C = r"""
const char *data_file(void) { return DATAFILE; }
"""

ARCHIVE_MAIN_C = r"""
#include <stdio.h>
const char *data_file(void);
int main(void) { puts(data_file()); return 0; }
"""

DATA_REL = "share/ocikit-test/data.txt"
DATA_TEXT = "the data file of the test tree\n"

# Files that embed the prefix as a plain binary string (or as the ELF interpreter): these can
# shrink but never grow, so a longer destination fails while they are in the tree.
GROWTH_BLOCKERS = ("bin/with-datadir", "bin/prog-interp", "lib/libdata.a", "share/terminfo/o/ocikit-test")


@dataclass(frozen=True)
class BuiltTree:
    prefix: str  # the path the tree was built for (no longer exists)
    pristine: str  # where the built tree now lives


TOOLS = ("gcc", "ar", "tic", "infocmp", "readelf", "pkg-config")


def require_tools() -> None:
    require_binary(*TOOLS)


@pytest.fixture(scope="session", name="built")
def built_tree_fixture(tmp_path_factory) -> BuiltTree:
    """The test tree, built once per session (import this fixture into a test module)."""
    require_tools()
    base = str(tmp_path_factory.mktemp("reloc"))
    return build_tree(f"{base}/orig/prefix-0123456789abcdef0123456789", f"{base}/pristine", f"{base}/src")


def _run(*args: str, cwd: str | None = None) -> None:
    subprocess.run(args, check=True, cwd=cwd, capture_output=True)


def system_interpreter() -> str:
    """The ELF interpreter of /bin/sh, read with binutils' readelf."""
    out = subprocess.run(["readelf", "-l", "/bin/sh"], check=True, capture_output=True, text=True).stdout
    marker = "[Requesting program interpreter: "
    line = next(line for line in out.splitlines() if marker in line)
    return line.split(marker, 1)[1].rstrip("]").strip()


def build_tree(prefix: str, pristine: str, src: str) -> BuiltTree:
    os.makedirs(src, exist_ok=True)
    for sub in ("bin", "lib/pkgconfig", "lib/python", "share/ocikit-test", "share/terminfo"):
        os.makedirs(os.path.join(prefix, sub), exist_ok=True)

    def source(name: str, text: str) -> str:
        path = os.path.join(src, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    lib, datafile = f"{prefix}/lib", f"{prefix}/{DATA_REL}"
    _run("gcc", "-shared", "-fPIC", "-o", f"{lib}/libgreet.so", source("greet.c", GREET_C))
    prog = source("prog.c", PROG_C)
    _run("gcc", "-o", f"{prefix}/bin/prog-rpath", prog, f"-L{lib}", "-lgreet", f"-Wl,--disable-new-dtags,-rpath,{lib}")
    _run("gcc", "-o", f"{prefix}/bin/prog-runpath", prog, f"-L{lib}", "-lgreet", f"-Wl,--enable-new-dtags,-rpath,{lib}")
    interp = system_interpreter()
    shutil.copy2(interp, f"{lib}/{os.path.basename(interp)}")
    _run(
        "gcc", "-o", f"{prefix}/bin/prog-interp", prog, f"-L{lib}", "-lgreet",
        f"-Wl,--disable-new-dtags,-rpath,{lib},--dynamic-linker,{lib}/{os.path.basename(interp)}",
    )  # fmt: skip
    _run("gcc", "-o", f"{prefix}/bin/with-datadir", f'-DDATAFILE="{datafile}"', source("datadir.c", DATADIR_C))
    _run("gcc", "-c", "-o", f"{src}/data.o", f'-DDATAFILE="{datafile}"', source("archive.c", ARCHIVE_C))
    _run("ar", "rcs", f"{lib}/libdata.a", f"{src}/data.o")
    source("archive_main.c", ARCHIVE_MAIN_C)
    with open(f"{prefix}/{DATA_REL}", "w") as f:
        f.write(DATA_TEXT)

    shell = os.path.realpath("/bin/sh")
    shutil.copy2(shell, f"{prefix}/bin/sh")
    _write_exec(f"{prefix}/bin/hello.sh", f'#!{prefix}/bin/sh\necho "script running"\nexec {prefix}/bin/prog-rpath\n')
    _write_exec(
        f"{prefix}/bin/tool.py",
        f'#!/usr/bin/env python3\nDATA = "{datafile}"\nwith open(DATA) as f:\n    print(f.read(), end="")\n',
    )
    with open(f"{lib}/python/greetmod.py", "w") as f:
        f.write(f'PREFIX = "{prefix}"\n')
    py_compile.compile(f"{lib}/python/greetmod.py", doraise=True)
    with open(f"{lib}/pkgconfig/greet.pc", "w") as f:
        f.write(
            f"prefix={prefix}\nlibdir=${{prefix}}/lib\n\nName: greet\nDescription: test\nVersion: 1.0\n"
            "Libs: -L${libdir} -lgreet\n"
        )
    os.symlink(f"{lib}/libgreet.so", f"{lib}/libgreet-alias.so")
    os.symlink(f"{prefix}/bin/prog-rpath", f"{prefix}/bin/prog-link")
    os.symlink("prog-runpath", f"{prefix}/bin/prog-relative-link")

    terminfo_src = source(
        "ocikit-test.ti", f"ocikit-test|ocikit relocation test terminal,\n\tcols#80, iprog={prefix}/bin/init-prog,\n"
    )
    _run("tic", "-o", f"{prefix}/share/terminfo", terminfo_src)

    os.makedirs(os.path.dirname(pristine), exist_ok=True)
    os.rename(prefix, pristine)
    return BuiltTree(prefix=prefix, pristine=pristine)


def _write_exec(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def copy_tree(src: str, dest: str, drop: tuple[str, ...] = ()) -> str:
    shutil.copytree(src, dest, symlinks=True)
    for relpath in drop:
        os.unlink(os.path.join(dest, relpath))
    return dest


def snapshot(root: str) -> dict[str, tuple]:
    """Every entry's content (or link target), mode and mtime: to prove nothing was written."""
    state = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if os.path.islink(path):
                state[path] = ("link", os.readlink(path), info.st_mtime_ns)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    state[path] = ("file", f.read(), info.st_mode, info.st_mtime_ns, info.st_ino)
            else:
                state[path] = ("dir", info.st_mode)
    return state


def clean_env_run(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run with an empty environment: no LD_LIBRARY_PATH, no PATH help."""
    return subprocess.run(list(args), env={}, capture_output=True, text=True, cwd=cwd, check=False)


def resolved_libraries(binary: str) -> dict[str, str]:
    """soname -> path the loader resolves, from ``ldd`` run with an empty environment."""
    out = subprocess.run(["/usr/bin/ldd", binary], env={}, capture_output=True, text=True, check=False).stdout
    libs = {}
    for line in out.splitlines():
        name, sep, rest = line.strip().partition(" => ")
        if sep:
            libs[name] = rest.split(" (")[0].strip()
    return libs
