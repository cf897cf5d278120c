"""`ocikit pull` from the command line: one-line errors with exit codes, --json, human text."""

from __future__ import annotations

import json
import subprocess
import sys

from pull_support import TarBuilder, push_tar

OCIKIT = [sys.executable, "-m", "ocikit_cli.main"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*OCIKIT, *args], capture_output=True, text=True, timeout=120)


def test_json_then_text_then_noop(tmp_path):
    layout, dest = str(tmp_path / "layout"), str(tmp_path / "dest")
    desc = push_tar(layout, TarBuilder().file("a", b"abc").bytes())
    first = _run("pull", f"oci:{layout}:v1", dest, "--json")
    assert first.returncode == 0, first.stderr
    document = json.loads(first.stdout)
    assert (document["digest"], document["kind"], document["files"], document["unchanged"]) == (desc.digest, "image", 1, False)
    again = _run("pull", f"oci:{layout}:v1", dest)
    assert again.returncode == 0 and again.stdout.strip() == f"{dest} already holds {desc.digest}"
    ready = _run("wait", dest, "--timeout", "1")
    assert ready.returncode == 0 and ready.stdout.strip() == f"{dest} is ready ({desc.digest})"


def test_unsafe_layer_is_one_line_and_exit_6(tmp_path):
    layout = str(tmp_path / "layout")
    push_tar(layout, TarBuilder().file("../escape", b"x").bytes())
    result = _run("pull", f"oci:{layout}:v1", str(tmp_path / "dest"))
    assert result.returncode == 6
    assert result.stderr == "ocikit: error: unsafe entry '../escape': path traversal\n"


def test_bad_inputs(tmp_path):
    missing = _run("pull", f"oci:{tmp_path / 'nothing'}:v1", str(tmp_path / "dest"))
    assert missing.returncode == 3 and missing.stderr.startswith("ocikit: error:") and missing.stderr.count("\n") == 1
    bad_ref = _run("pull", "UPPER/case:v1", str(tmp_path / "dest"))
    assert bad_ref.returncode == 2
    bad_size = _run("pull", "oci:x:v1", str(tmp_path / "dest"), "--max-size", "huge")
    assert bad_size.returncode == 2 and "is not a size" in bad_size.stderr
    bad_platform = _run("pull", f"oci:{tmp_path}:v1", str(tmp_path / "dest"), "--platform", "linux")
    assert bad_platform.returncode == 2 and "invalid platform" in bad_platform.stderr
