"""File classification on real files made by real tools, libmagic answers checked against file(1)."""

from __future__ import annotations

import os
import py_compile
import shutil
import subprocess
import sys

import pytest

from ocikit.compat.filetype import HEADER_SIZE, classify, libmagic_available, parse_shebang


def _header(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(HEADER_SIZE)


def _kind(path: str, use_libmagic: bool = True) -> str:
    return classify(_header(path), os.path.basename(path), use_libmagic).kind


@pytest.fixture(scope="module")
def made_files(tmp_path_factory):
    """Files written by the real tools that define each format."""
    root = tmp_path_factory.mktemp("kinds")
    text = root / "notes.txt"
    text.write_text("plain text\n" * 200)
    made = {"text": str(text)}
    for tool, suffix, kind in (
        ("gzip", ".gz", "gzip"),
        ("xz", ".xz", "xz"),
        ("bzip2", ".bz2", "bzip2"),
        ("zstd", ".zst", "zstd"),
    ):
        if shutil.which(tool) is None:
            continue
        target = root / f"data{suffix}"
        with open(target, "wb") as out:
            subprocess.run([tool, "-c", str(text)], stdout=out, check=True)
        made[kind] = str(target)
    if shutil.which("ar"):
        subprocess.run(["ar", "rc", str(root / "libx.a"), str(text)], check=True)
        made["ar-archive"] = str(root / "libx.a")
    source = root / "mod.py"
    source.write_text("x = 1\n")
    made["python-bytecode"] = py_compile.compile(str(source), cfile=str(root / "mod.cpython.pyc"))
    shutil.make_archive(str(root / "bundle"), "zip", str(root), "mod.py")
    made["zip"] = str(root / "bundle.zip")
    (root / "empty").write_bytes(b"")
    made["empty"] = str(root / "empty")
    return made


def test_kinds_of_tool_made_files(made_files):
    assert len(made_files) >= 6
    for kind, path in made_files.items():
        assert _kind(path) == kind, path


def test_elf_of_the_running_interpreter():
    assert _kind(os.path.realpath(sys.executable)) == "elf"


def _system_scripts(limit: int = 15) -> list[str]:
    found = []
    for name in sorted(os.listdir("/usr/bin")):
        path = os.path.join("/usr/bin", name)
        if os.path.isfile(path) and not os.path.islink(path) and _header(path).startswith(b"#!"):
            found.append(path)
    return found[:limit]


@pytest.mark.parametrize("path", _system_scripts(), ids=os.path.basename)
def test_system_scripts_give_their_interpreter(path):
    with open(path, "rb") as stream:
        first_line = stream.readline().decode("utf-8", "replace")
    words = first_line[2:].split()  # what the kernel does: first word after #!
    result = classify(_header(path), os.path.basename(path))
    assert result.kind == "script"
    if os.path.basename(words[0]) == "env":
        assert result.interpreter == "env:" + next(w for w in words[1:] if not w.startswith("-") and "=" not in w)
    else:
        assert result.interpreter == words[0]


def test_shebang_forms():
    assert parse_shebang(b"#!/bin/sh\n") == "/bin/sh"
    assert parse_shebang(b"#! /usr/bin/perl -w\n") == "/usr/bin/perl"
    assert parse_shebang(b"#!/usr/bin/env -S LANG=C python3 -u\nbody") == "env:python3"
    assert parse_shebang(b"#!\n") == ""


def test_printable_magic_needs_a_nul_byte(tmp_path):
    # "MZ" opens PE files, but a text file may start with it too.
    path = tmp_path / "settings"
    path.write_text("MZ_DEBUG=1\n")
    assert _kind(str(path)) == "text"


def _unknown_binaries(limit: int = 12) -> list[str]:
    """Real binary files that no magic number of ocikit recognises (from the Python prefix and /usr)."""
    found: list[str] = []
    for top in (os.path.join(sys.base_prefix, "lib"), "/usr/lib/locale", "/usr/share/mime"):
        for directory, _, names in os.walk(top):
            for name in sorted(names):
                path = os.path.join(directory, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                if classify(_header(path), name, use_libmagic=False).kind == "data":
                    found.append(path)
                    if len(found) >= limit:
                        return found
    return found


@pytest.mark.skipif(not libmagic_available() or shutil.which("file") is None, reason="libmagic or file(1) missing")
def test_libmagic_only_for_unknown_binaries_and_agrees_with_file(tmp_path):
    paths = _unknown_binaries()
    assert paths, "expected some binary files without a known magic number"
    for index, path in enumerate(paths):
        header = _header(path)
        # file(1) gets exactly the bytes ocikit gave libmagic: the header
        sample = tmp_path / f"header{index}"
        sample.write_bytes(header)
        expected = subprocess.run(
            ["file", "-b", "--mime-type", str(sample)], capture_output=True, text=True, check=True
        ).stdout.strip()
        result = classify(header, os.path.basename(path))
        assert result.via_libmagic
        assert result.kind == expected, path


def test_known_kinds_never_reach_libmagic(made_files):
    for path in made_files.values():
        assert not classify(_header(path), os.path.basename(path)).via_libmagic
