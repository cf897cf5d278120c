"""Text vs binary is decided from content; files are made by the real tools that produce them."""

from __future__ import annotations

import gzip
import py_compile
import shutil
import subprocess

import pytest
from environment import require_binary

from ocikit.relocate import relocate_tree
from ocikit.relocate.filekind import FileKind, classify


def _tool(name: str) -> str:
    require_binary(name)
    return shutil.which(name) or name


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_static_archive_is_binary_even_without_nul_bytes(tmp_path):
    member = tmp_path / "notes.txt"
    member.write_text("a member that is plain text /opt/view/lib\n")
    subprocess.run([_tool("ar"), "rc", str(tmp_path / "libx.a"), str(member)], check=True)
    data = _read(tmp_path / "libx.a")
    assert b"\x00" not in data  # the "no NUL byte, so text" rule would call this text
    assert classify(data) == (FileKind.BINARY, "ar archive")


def test_compiled_terminfo_is_binary(tmp_path):
    source = tmp_path / "t.ti"
    source.write_text("ocikit-t|test,\n\tcols#80, iprog=/opt/view/bin/x,\n")
    subprocess.run([_tool("tic"), "-o", str(tmp_path / "ti"), str(source)], check=True, capture_output=True)
    assert classify(_read(tmp_path / "ti" / "o" / "ocikit-t")) == (FileKind.BINARY, "terminfo")


def test_bytecode_cache_is_binary(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('ROOT = "/opt/view"\n')
    assert classify(_read(py_compile.compile(str(module), doraise=True))) == (FileKind.BINARY, "pyc")


@pytest.mark.parametrize("tool, label", [("gzip", "gzip"), ("xz", "xz"), ("zstd", "zstd"), ("bzip2", "bzip2")])
def test_compressed_files_are_opaque(tmp_path, tool, label):
    plain = tmp_path / "page.1"
    plain.write_text("/opt/view/share/man\n" * 10)
    compressed = subprocess.run([_tool(tool), "-c", str(plain)], check=True, capture_output=True).stdout
    assert classify(compressed) == (FileKind.OPAQUE, label)


def test_elf_is_elf():
    assert classify(_read("/bin/sh")).kind is FileKind.ELF


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"#!/bin/sh\necho /opt/view\n", (FileKind.TEXT, "utf-8")),
        ("prefix=/opt/vi\u00e9w\n".encode("utf-8"), (FileKind.TEXT, "utf-8")),
        ("caf\u00e9 /opt/view\n".encode("latin-1"), (FileKind.TEXT, "iso-8859-1")),
        ("\ufeff/opt/view\n".encode("utf-16-le"), (FileKind.TEXT, "utf-16")),
        (b"/opt/view\x00\x01\x02", (FileKind.BINARY, "data")),
        (b"no nul but C1 controls \x85\x90\x9f /opt/view", (FileKind.BINARY, "data")),
        (b"no nul but C0 controls \x01\x02\x03\x04 \xff", (FileKind.BINARY, "data")),
        (b"\x89PNG\r\n\x1a\n....", (FileKind.OPAQUE, "PNG image")),
    ],
)
def test_content_rules(data, expected):
    assert classify(data) == expected


def test_opaque_files_are_reported_and_left_alone(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    stored = gzip.compress(b"MANPATH=/opt/view/share/man\n", compresslevel=0)  # a stored block keeps the bytes
    assert b"/opt/view" in stored
    (root / "page.gz").write_bytes(stored)
    report = relocate_tree(str(root), "/opt/view", "/x")
    assert _read(root / "page.gz") == stored
    assert report.files_changed == [] and report.kinds == {"opaque": 1}
    assert any("page.gz" in w and "gzip" in w for w in report.warnings)
    assert gzip.decompress(_read(root / "page.gz")) == b"MANPATH=/opt/view/share/man\n"
