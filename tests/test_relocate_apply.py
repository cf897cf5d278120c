"""Writing a relocation: metadata kept, all-or-nothing when a file fails mid-way, symlinks."""

from __future__ import annotations

import os

import pytest

from ocikit.errors import LocalIOError
from ocikit.progress import Progress
from ocikit.relocate import relocate_tree


def test_relocated_files_keep_mode_and_mtime(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\nexec /opt/view/bin/x\n")
    os.chmod(script, 0o750)
    os.utime(script, ns=(1_000_000_000, 2_000_000_000))
    relocate_tree(str(tmp_path), "/opt/view", "/x")
    info = os.stat(script)
    assert script.read_text() == "#!/bin/sh\nexec /x/bin/x\n"
    assert (info.st_mode & 0o7777, info.st_mtime_ns) == (0o750, 2_000_000_000)
    assert [p for p in os.listdir(tmp_path) if "ocikit" in p] == []  # no temporary left behind


class ChangeAFileWhenWritingStarts(Progress):
    """A progress sink that edits a file between planning and writing, like a concurrent user."""

    def __init__(self, path) -> None:
        self.path = path

    def start(self, task: str, label: str, total: int | None = None, unit: str = "B") -> None:
        if task == "relocate-write":
            with open(self.path, "a") as f:
                f.write("# edited meanwhile\n")


def test_a_failure_while_writing_leaves_every_file_as_it_was(tmp_path):
    first, second = tmp_path / "a.sh", tmp_path / "b.sh"
    first.write_text("X=/opt/view/a\n")
    second.write_text("X=/opt/view/b\n")
    with pytest.raises(LocalIOError, match="b.sh changed while it was being relocated"):
        relocate_tree(str(tmp_path), "/opt/view", "/x", progress=ChangeAFileWhenWritingStarts(second))
    assert first.read_text() == "X=/opt/view/a\n"  # staged, then rolled back
    assert sorted(os.listdir(tmp_path)) == ["a.sh", "b.sh"]


def test_absolute_symlinks_become_relative_inside_the_tree_and_absolute_outside(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("")
    os.symlink("/opt/view/bin/tool", tmp_path / "bin" / "alias")
    os.symlink("/opt/software/pkg/bin/tool", tmp_path / "bin" / "store-link")
    os.symlink("/usr/bin/env", tmp_path / "bin" / "elsewhere")
    report = relocate_tree(str(tmp_path), "/opt/view", "/mnt/v", extra_prefixes={"/opt/software": "/mnt/store"})
    assert os.readlink(tmp_path / "bin" / "alias") == "tool"
    assert os.readlink(tmp_path / "bin" / "store-link") == "/mnt/store/pkg/bin/tool"
    assert os.readlink(tmp_path / "bin" / "elsewhere") == "/usr/bin/env"
    assert report.symlinks_changed == ["bin/alias", "bin/store-link"]


def test_same_old_and_new_does_nothing(tmp_path):
    (tmp_path / "f").write_text("/opt/view\n")
    report = relocate_tree(str(tmp_path), "/opt/view/", "/opt/view")
    assert report.files_examined == 0 and (tmp_path / "f").read_text() == "/opt/view\n"
