"""A gcc-built tree relocated to shorter, equal and longer paths still runs (issue 5's proof)."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys

import pytest
from relocate_build import (  # noqa: F401 (built_tree_fixture is a fixture)
    DATA_REL,
    DATA_TEXT,
    GROWTH_BLOCKERS,
    built_tree_fixture,
    clean_env_run,
    copy_tree,
    snapshot,
    system_interpreter,
)

from ocikit.errors import RelocationError, UnsafeContentError
from ocikit.relocate import relocate_tree
from ocikit.relocate.prefixes import normalize_path

LONGER = 140  # longer than the built prefix, and long enough to push the script's shebang past 127 bytes


@pytest.fixture
def dest_base(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("d"))


def _dest(base: str, length: int) -> str:
    head = f"{base}/dest-"
    assert len(head) < length, "temporary directory too long for this test"
    return head + "x" * (length - len(head))


def _readelf(flag: str, path: str) -> str:
    return subprocess.run(["readelf", flag, path], check=True, capture_output=True, text=True).stdout


def _assert_programs_run(dest: str) -> None:
    for program in ("prog-rpath", "prog-runpath", "prog-link"):
        result = clean_env_run(f"{dest}/bin/{program}")
        assert result.returncode == 0, (program, result.stderr)
        assert result.stdout == "hello from libgreet\n"
    script = clean_env_run(f"{dest}/bin/hello.sh")
    assert script.returncode == 0, script.stderr
    assert script.stdout == "script running\nhello from libgreet\n"
    tool = clean_env_run(sys.executable, f"{dest}/bin/tool.py")
    assert tool.returncode == 0, tool.stderr
    assert tool.stdout == DATA_TEXT
    pc_prefix = subprocess.run(
        ["pkg-config", "--variable=prefix", f"{dest}/lib/pkgconfig/greet.pc"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pc_prefix.stdout.strip() == dest
    assert os.readlink(f"{dest}/lib/libgreet-alias.so") == "libgreet.so"
    assert os.readlink(f"{dest}/bin/prog-relative-link") == "prog-runpath"
    assert "Library rpath: [$ORIGIN/../lib]" in _readelf("-d", f"{dest}/bin/prog-rpath")
    assert "Library runpath: [$ORIGIN/../lib]" in _readelf("-d", f"{dest}/bin/prog-runpath")


def _no_file_mentions(root: str, text: str) -> list[str]:
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                with open(path, "rb") as f:
                    if text.encode() in f.read():
                        found.append(os.path.relpath(path, root))
    return found


def test_the_copy_does_not_run_without_relocation(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, len(built.prefix)))
    result = clean_env_run(f"{dest}/bin/prog-rpath")
    assert result.returncode != 0
    assert "libgreet.so" in result.stderr


@pytest.mark.parametrize("shorter_by", [30, 0], ids=["shorter", "equal"])
def test_shorter_and_equal_destinations_run_everything(built, dest_base, shorter_by):
    dest = copy_tree(built.pristine, _dest(dest_base, len(built.prefix) - shorter_by))
    sizes = {rel: os.path.getsize(f"{dest}/{rel}") for rel in GROWTH_BLOCKERS}

    report = relocate_tree(dest, built.prefix, dest)

    _assert_programs_run(dest)
    assert clean_env_run(f"{dest}/bin/prog-interp").stdout == "hello from libgreet\n"
    interp = f"{dest}/lib/{os.path.basename(system_interpreter())}"
    assert f"[Requesting program interpreter: {interp}]" in _readelf("-l", f"{dest}/bin/prog-interp")
    assert clean_env_run(f"{dest}/bin/with-datadir").stdout == DATA_TEXT
    for rel, size in sizes.items():
        assert os.path.getsize(f"{dest}/{rel}") == size, f"{rel} changed length"
    assert _no_file_mentions(dest, built.prefix) == []
    assert sorted(report.symlinks_changed) == ["bin/prog-link", "lib/libgreet-alias.so"]
    assert {"bin/with-datadir", "lib/libdata.a", "share/terminfo/o/ocikit-test"} <= set(report.files_changed)
    assert report.kinds["binary"] >= 3 and report.kinds["elf"] >= 4 and report.kinds["text"] >= 4


def test_static_archive_keeps_its_length_and_links(built, dest_base, tmp_path):
    """Spack 1.1 shortens .a files as if they were text ("malformed archive"); ocikit must not."""
    dest = copy_tree(built.pristine, _dest(dest_base, len(built.prefix) - 30))
    archive = f"{dest}/lib/libdata.a"
    before = os.path.getsize(archive)
    relocate_tree(dest, built.prefix, dest)
    assert os.path.getsize(archive) == before
    listing = subprocess.run(["ar", "t", archive], capture_output=True, text=True, check=False)
    assert listing.returncode == 0 and listing.stdout.split() == ["data.o"], listing.stderr
    main = os.path.join(os.path.dirname(built.pristine), "src", "archive_main.c")
    subprocess.run(["gcc", "-o", f"{tmp_path}/uses-archive", main, archive], check=True, capture_output=True)
    printed = clean_env_run(f"{tmp_path}/uses-archive").stdout.strip()
    assert printed != f"{dest}/{DATA_REL}" and normalize_path(printed) == f"{dest}/{DATA_REL}"  # slash-padded


def test_terminfo_and_bytecode_are_rewritten_at_the_same_length(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, len(built.prefix) - 30))
    entry = f"{dest}/share/terminfo/o/ocikit-test"
    pyc = next(os.scandir(f"{dest}/lib/python/__pycache__")).path
    sizes = (os.path.getsize(entry), os.path.getsize(pyc))
    relocate_tree(dest, built.prefix, dest)
    assert (os.path.getsize(entry), os.path.getsize(pyc)) == sizes
    shown = subprocess.run(
        ["infocmp", "-A", f"{dest}/share/terminfo", "ocikit-test"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    iprog = next(part for part in shown.stdout.replace(",", " ").split() if part.startswith("iprog="))
    assert normalize_path(iprog[len("iprog=") :]) == f"{dest}/bin/init-prog"
    with open(pyc, "rb") as f:
        code = marshal.loads(f.read()[16:])
    assert normalize_path(next(c for c in code.co_consts if isinstance(c, str) and c.startswith("/"))) == dest


def test_longer_destination_fails_and_writes_nothing(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, LONGER))
    before = snapshot(dest)
    with pytest.raises(RelocationError) as caught:
        relocate_tree(dest, built.prefix, dest)
    message = str(caught.value)
    for blocker in GROWTH_BLOCKERS:
        assert blocker in message or any(p["path"] == blocker for p in caught.value.problems), blocker
    assert {p["path"] for p in caught.value.problems} == set(GROWTH_BLOCKERS)
    assert "Nothing was changed" in message and "padded_length" in message
    assert caught.value.max_new_length == len(built.prefix)
    assert f"at most {len(built.prefix)} characters" in message
    assert snapshot(dest) == before


def test_longer_destination_works_with_relative_rpaths(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, LONGER), drop=GROWTH_BLOCKERS)
    report = relocate_tree(dest, built.prefix, dest)
    _assert_programs_run(dest)
    assert [(s.path, s.limit) for s in report.long_shebangs] == [("bin/hello.sh", 127)]
    assert report.long_shebangs[0].length == len(f"#!{dest}/bin/sh")
    # The bytecode cache cannot hold the longer path: reported, left alone, and Python ignores
    # it because its source changed size.
    assert any("__pycache__" in w and "not read at run time" in w for w in report.warnings)
    imported = clean_env_run(sys.executable, "-c", "import greetmod; print(greetmod.PREFIX)", cwd=f"{dest}/lib/python")
    assert imported.stdout.strip() == dest


def test_longer_destination_fails_clearly_without_relative_rpaths(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, LONGER), drop=GROWTH_BLOCKERS)
    before = snapshot(dest)
    with pytest.raises(RelocationError) as caught:
        relocate_tree(dest, built.prefix, dest, relative_rpaths=False)
    reasons = {(p["path"], p["where"]) for p in caught.value.problems}
    assert reasons == {("bin/prog-rpath", "RPATH"), ("bin/prog-runpath", "RUNPATH")}
    assert snapshot(dest) == before


def test_dry_run_reports_and_changes_nothing(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, len(built.prefix) - 30))
    before = snapshot(dest)
    report = relocate_tree(dest, built.prefix, dest, dry_run=True)
    assert snapshot(dest) == before
    assert report.dry_run and "bin/prog-rpath" in report.files_changed
    assert report.max_new_length == len(built.prefix)


def test_a_file_list_limits_the_work_to_those_files(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, len(built.prefix) - 30))
    before = snapshot(dest)
    listed = ["lib/pkgconfig/greet.pc", "bin/prog-rpath", "lib/libgreet-alias.so", "lib/missing.txt"]
    report = relocate_tree(dest, built.prefix, dest, files=listed)
    after = snapshot(dest)
    changed = {os.path.relpath(p, dest) for p in before if before[p] != after.get(p)}
    assert changed == {"lib/pkgconfig/greet.pc", "bin/prog-rpath", "lib/libgreet-alias.so"}
    assert report.files_examined == 3
    assert any("lib/missing.txt" in w and "absent" in w for w in report.warnings)
    assert clean_env_run(f"{dest}/bin/prog-rpath").returncode == 0


def test_a_file_list_cannot_escape_the_tree(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, len(built.prefix) - 30))
    os.symlink("/etc", f"{dest}/etc-link")
    for bad in ("../outside", "/etc/passwd", "etc-link/passwd"):
        with pytest.raises(UnsafeContentError):
            relocate_tree(dest, built.prefix, dest, files=[bad])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocikit_cli.main", *args], capture_output=True, text=True, check=False)


def test_cli_relocates_and_reports_json(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, len(built.prefix) - 30))
    result = _cli("relocate", dest, "--from", built.prefix, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["new"] == dest and "bin/prog-rpath" in doc["filesChanged"]
    assert clean_env_run(f"{dest}/bin/prog-runpath").stdout == "hello from libgreet\n"


def test_cli_failure_is_one_line_with_exit_code_10(built, dest_base):
    dest = copy_tree(built.pristine, _dest(dest_base, LONGER))
    before = snapshot(dest)
    result = _cli("relocate", dest, "--from", built.prefix, "--to", dest)
    assert result.returncode == 10
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ocikit: error: cannot relocate")
    assert snapshot(dest) == before
