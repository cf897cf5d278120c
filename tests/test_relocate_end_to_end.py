"""Issue 5's proof through the real path: a gcc-built tree pushed with push-view, pulled elsewhere.

The tree (tests/relocate_build.py) has a shared library and programs linked to it with an
RPATH and a RUNPATH into its prefix, a shell script with a shebang into the prefix, a .pc
file, absolute symlinks and a python script. It is pushed to an OCI layout and pulled to
destinations shorter than, as long as, and longer than the prefix it was built at; then
every program runs with an empty environment from the pulled tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from relocate_build import (  # noqa: F401 (built_tree_fixture is a fixture)
    DATA_TEXT,
    GROWTH_BLOCKERS,
    built_tree_fixture,
    clean_env_run,
    copy_tree,
)

import ocikit
from ocikit.errors import RelocationError
from ocikit.pull.ready import read_marker


@pytest.fixture
def short_base(request) -> str:
    base = tempfile.mkdtemp(prefix="e2e", dir="/tmp")  # short, so every target length is reachable
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    return base


def _dest(base: str, length: int) -> str:
    head = f"{base}/d-"
    assert len(head) < length
    return head + "x" * (length - len(head))


def _push(built, tmp_path, relative_rpaths: bool, drop: tuple[str, ...] = ()) -> str:
    source = copy_tree(built.pristine, str(tmp_path / "source"), drop=drop)
    layout = f"oci:{tmp_path / 'layout'}:v1"
    ocikit.push_view(source, layout, root=built.prefix, relative_rpaths=relative_rpaths, compat=False, cache_dir="")
    return layout


def _assert_runs(dest: str, with_blockers: bool) -> None:
    for program in ("prog-rpath", "prog-runpath", "prog-link"):
        result = clean_env_run(f"{dest}/bin/{program}")
        assert (result.returncode, result.stdout) == (0, "hello from libgreet\n"), (program, result.stderr)
    script = clean_env_run(f"{dest}/bin/hello.sh")
    assert (script.returncode, script.stdout) == (0, "script running\nhello from libgreet\n"), script.stderr
    tool = clean_env_run(sys.executable, f"{dest}/bin/tool.py")
    assert (tool.returncode, tool.stdout) == (0, DATA_TEXT), tool.stderr
    prefix = subprocess.run(["pkg-config", "--variable=prefix", f"{dest}/lib/pkgconfig/greet.pc"],
                            capture_output=True, text=True, check=False).stdout.strip()
    assert prefix == dest
    if with_blockers:  # strings compiled into programs were rewritten in place
        datadir = clean_env_run(f"{dest}/bin/with-datadir")
        assert (datadir.returncode, datadir.stdout) == (0, DATA_TEXT), datadir.stderr
        interp = clean_env_run(f"{dest}/bin/prog-interp")
        assert interp.returncode == 0, interp.stderr
    assert read_marker(dest)["relocatedTo"] == dest


@pytest.mark.parametrize("delta", [-9, 0])
@pytest.mark.parametrize("relative_rpaths", [True, False])
def test_shorter_and_equal_destinations_run(built, tmp_path, short_base, delta, relative_rpaths):
    layout = _push(built, tmp_path, relative_rpaths)
    dest = _dest(short_base, len(built.prefix) + delta)
    ocikit.pull(layout, dest)
    _assert_runs(dest, with_blockers=True)


def test_longer_destination_runs_with_relative_rpaths(built, tmp_path, short_base):
    # Strings compiled into binaries can never grow; without them a longer path works.
    layout = _push(built, tmp_path, relative_rpaths=True, drop=GROWTH_BLOCKERS)
    dest = _dest(short_base, len(built.prefix) + 20)
    ocikit.pull(layout, dest)
    _assert_runs(dest, with_blockers=False)


def test_longer_destination_fails_clearly_without_relative_rpaths(built, tmp_path, short_base):
    layout = _push(built, tmp_path, relative_rpaths=False, drop=GROWTH_BLOCKERS)
    dest = _dest(short_base, len(built.prefix) + 20)
    with pytest.raises(RelocationError) as info:
        ocikit.pull(layout, dest)
    message = str(info.value)
    assert "bin/prog-rpath" in message and "\n" not in message
    assert not os.path.exists(dest)  # nothing half-written is left, and nothing looks ready


def test_the_cli_reports_the_misfit_in_one_line(built, tmp_path, short_base):
    layout = _push(built, tmp_path, relative_rpaths=False, drop=GROWTH_BLOCKERS)
    dest = _dest(short_base, len(built.prefix) + 20)
    ocikit_cli = os.path.join(os.path.dirname(sys.executable), "ocikit")
    result = subprocess.run([ocikit_cli, "pull", layout, dest], capture_output=True, text=True)
    assert result.returncode == 10
    assert result.stderr.startswith("ocikit: error:") and result.stderr.count("\n") == 1
    assert "bin/prog-rpath" in result.stderr and "at most" in result.stderr  # names the file and the fix
