"""ELF search paths, interpreter and debug sections, on binaries built by the machine's gcc."""

from __future__ import annotations

import os
import subprocess

import pytest
from relocate_build import built_tree_fixture, clean_env_run, copy_tree, require_tools  # noqa: F401 (fixture)

from ocikit.relocate import make_rpaths_relative, relocate_tree
from ocikit.relocate.elf import dynamic_strings, dynstr_references, parse_elf
from ocikit.relocate.filekind import FileKind
from ocikit.relocate.plan import plan_bytes
from ocikit.relocate.prefixes import PrefixMap


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _dynamic_section(path: str) -> str:
    return subprocess.run(["readelf", "-d", path], check=True, capture_output=True, text=True).stdout


def test_make_rpaths_relative_lets_a_copy_run_anywhere(built, tmp_path):
    dest = copy_tree(built.pristine, str(tmp_path / "anywhere"))
    for name in ("prog-rpath", "prog-runpath"):
        original = _read(f"{dest}/bin/{name}")
        rewritten = make_rpaths_relative(original, f"bin/{name}", built.prefix)
        assert len(rewritten) == len(original) and rewritten != original
        with open(f"{dest}/bin/{name}", "wb") as f:
            f.write(rewritten)
        assert "[$ORIGIN/../lib]" in _dynamic_section(f"{dest}/bin/{name}")
        result = clean_env_run(f"{dest}/bin/{name}")
        assert result.stdout == "hello from libgreet\n", result.stderr


def test_make_rpaths_relative_returns_other_files_untouched(built):
    pc = _read(f"{built.pristine}/lib/pkgconfig/greet.pc")
    library = _read(f"{built.pristine}/lib/libgreet.so")  # no search path at all
    assert make_rpaths_relative(pc, "lib/pkgconfig/greet.pc", built.prefix) is pc
    assert make_rpaths_relative(library, "lib/libgreet.so", built.prefix) is library


def test_entries_outside_the_root_are_kept(built, tmp_path):
    source = tmp_path / "p.c"
    source.write_text("int main(void) { return 0; }\n")
    out = str(tmp_path / "prog")
    rpath = f"{built.prefix}/lib:/usr/local/other-lib:{built.prefix}/lib"
    subprocess.run(["gcc", "-o", out, str(source), f"-Wl,--disable-new-dtags,-rpath,{rpath}"], check=True)
    rewritten = make_rpaths_relative(_read(out), "bin/prog", built.prefix)
    (search_path,) = [s for s in dynamic_strings(parse_elf(rewritten)) if s.where == "RPATH"]
    assert search_path.value == b"$ORIGIN/../lib:/usr/local/other-lib"  # the repeat is dropped


def test_references_into_dynstr_include_needed_libraries_and_symbols(built):
    data = _read(f"{built.pristine}/bin/prog-rpath")
    refs = dynstr_references(parse_elf(data))
    assert data.find(b"\x00libgreet.so\x00") + 1 in refs  # DT_NEEDED
    assert data.find(b"\x00greet\x00") + 1 in refs  # the undefined symbol
    assert data.find(b"\x00GLIBC_2.2.5\x00") + 1 in refs  # a version requirement


def test_truncated_elf_falls_back_to_same_length_rewrite(built):
    data = _read(f"{built.pristine}/bin/prog-rpath")
    prefix = built.prefix.encode()
    cut = data[: data.find(prefix) + len(prefix) + 8]  # keeps the RPATH string, loses the headers' targets
    cut = cut[:64] + b"\xff" * 8 + cut[72:]  # a program-header offset beyond the file
    assert parse_elf(cut) is None
    plan = plan_bytes(cut, "bin/x", PrefixMap.build(built.prefix, "/short"))
    assert plan.kind is FileKind.ELF and any("unreadable" in w for w in plan.warnings)
    assert plan.edits and all(e.length == len(e.data) for e in plan.edits)


@pytest.fixture(scope="module")
def debug_build(tmp_path_factory):
    """A program compiled with -g inside its prefix: DWARF keeps the prefix in .debug_* sections."""
    require_tools()
    base = str(tmp_path_factory.mktemp("dbg"))
    prefix = f"{base}/prefix-with-some-length-0123456789"
    os.makedirs(f"{prefix}/src")
    os.makedirs(f"{prefix}/bin")
    with open(f"{prefix}/src/main.c", "w") as f:
        f.write('#include <stdio.h>\nint main(void) { puts("debug build"); return 0; }\n')
    subprocess.run(["gcc", "-g", "-o", f"{prefix}/bin/dbg", "main.c"], cwd=f"{prefix}/src", check=True)
    pristine = f"{base}/pristine"
    os.rename(prefix, pristine)
    return prefix, pristine


def test_debug_sections_do_not_block_a_longer_destination(debug_build, tmp_path):
    prefix, pristine = debug_build
    dest = copy_tree(pristine, str(tmp_path / ("longer-" + "y" * 80)))
    report = relocate_tree(dest, prefix, dest)
    assert any(w.startswith("bin/dbg:") and ".debug" in w for w in report.warnings), report.warnings
    assert "bin/dbg" not in report.files_changed
    assert clean_env_run(f"{dest}/bin/dbg").stdout == "debug build\n"


def test_debug_sections_are_rewritten_when_the_path_fits(debug_build, tmp_path_factory):
    prefix, pristine = debug_build
    dest = copy_tree(pristine, str(tmp_path_factory.mktemp("s") / "s"))
    assert len(dest) <= len(prefix) - 8  # "/src" follows the prefix: a short tail must shrink by 8
    size = os.path.getsize(f"{dest}/bin/dbg")
    report = relocate_tree(dest, prefix, dest)
    assert report.files_changed == ["bin/dbg"] and report.warnings == []
    assert prefix.encode() not in _read(f"{dest}/bin/dbg")
    assert os.path.getsize(f"{dest}/bin/dbg") == size
    assert clean_env_run(f"{dest}/bin/dbg").stdout == "debug build\n"
