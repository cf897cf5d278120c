"""One CLI convention: --platform wherever a reference may be an index, one spelling per option
(old spellings still accepted), digest references written repo@sha256:…, and the flags table of
docs/cli.md true to the commands."""

import dataclasses
import json
import os
import subprocess
import sys

from cli_table import flags_table

from ocikit.content.base import push_manifest
from ocikit.content.open import open_store
from ocikit.spec.descriptor import Platform
from ocikit.spec.manifest import build_index
from ocikit.testing.images import make_image

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd=None):
    return subprocess.run([OCIKIT, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_docs_cli_md_lists_every_commands_flags():
    text = open(os.path.join(REPO, "docs", "cli.md"), encoding="utf-8").read()
    expected = flags_table()
    assert expected in text, f"docs/cli.md is out of date; paste `python tests/cli_table.py`:\n{expected}"


def two_platform_index(registry: str) -> str:
    store, _ = open_store(f"{registry}/conventions/multi")
    entries = []
    for arch in ("amd64", "arm64"):
        desc = make_image(store, [{"etc/arch": arch.encode()}], architecture=arch)
        entries.append(dataclasses.replace(desc, platform=Platform("linux", arch)))
    push_manifest(store, build_index(entries), tag="v1")
    return f"{registry}/conventions/multi:v1"


def test_platform_picks_the_manifest_of_an_index_for_ztoc_and_get_file(registry, tmp_path):
    index = two_platform_index(registry)
    built = run("ztoc", "build", index, "--platform", "linux/arm64", "--min-layer-size", "0", "--json")
    assert built.returncode == 0, built.stderr
    listed = json.loads(run("ztoc", "ls", index, "--platform", "linux/arm64", "--json").stdout)
    assert len(listed) == 1
    assert json.loads(run("ztoc", "ls", index, "--platform", "linux/amd64", "--json").stdout) == []
    got = run("get-file", index, "etc/arch", "-o", "-", "--platform", "linux/arm64")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "arm64"
    info = json.loads(run("ztoc", "info", index, "--platform", "linux/arm64", "--json").stdout)
    assert info["layer"] == listed[0]["layer"]


def test_old_spellings_still_work_but_are_not_shown(tmp_path):
    view = tmp_path / "view"
    view.mkdir()
    (view / "file").write_text("x")
    pushed = run("push-view", str(view), f"oci:{tmp_path / 'layout'}:v1", "--label", "team=hpc", "--no-compat",
                 "--no-cache")
    assert pushed.returncode == 0, pushed.stderr
    manifest = json.loads(run("manifest", f"oci:{tmp_path / 'layout'}:v1").stdout)
    assert manifest["annotations"]["team"] == "hpc"
    listed = run("cache", "ls", "--cache", str(tmp_path / "node"), "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["cache"] == str(tmp_path / "node")
    for command, old in (("push-view", "--label"), ("cache ls", "--cache "), ("pull", "--cache ")):
        assert old not in run(*command.split(), "--help").stdout


def test_digest_references_are_written_with_an_at_sign(registry):
    missing = f"{registry}/conventions/none@sha256:" + "0" * 64
    result = run("manifest", missing)
    assert result.returncode != 0
    assert "@sha256:" + "0" * 64 in result.stderr and ":sha256:" not in result.stderr.replace("@sha256:", "")


def test_a_copied_views_symlink_error_suggests_root_not_allow_external(tmp_path):
    from environment import SPACK_VIEW_ARCHIVE

    subprocess.run(["tar", "--zstd", "-xf", SPACK_VIEW_ARCHIVE, "-C", str(tmp_path)], check=True)
    real_root = "/opt/._view/m5vlrdleywqmp3aiv3sv2s54dysxhz6m"
    copied = run("push-view", f"{tmp_path}{real_root}", f"oci:{tmp_path / 'l'}:v1", "--no-compat", "--no-cache")
    assert copied.returncode == 6
    assert f"pass --root {real_root}" in copied.stderr and "--allow-external-symlinks" not in copied.stderr
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink("/usr/share", outside / "share")
    really_external = run("push-view", str(outside), f"oci:{tmp_path / 'l'}:v2", "--no-compat", "--no-cache")
    assert really_external.returncode == 6 and "--allow-external-symlinks" in really_external.stderr


def test_pull_json_counts_every_directory_of_the_tree(tmp_path):
    """Directories the layers do not list (parents made on the way) are directories of the tree too."""
    from environment import SPACK_VIEW_ARCHIVE

    subprocess.run(["tar", "--zstd", "-xf", SPACK_VIEW_ARCHIVE, "-C", str(tmp_path)], check=True)
    real_root = "/opt/._view/m5vlrdleywqmp3aiv3sv2s54dysxhz6m"
    layout = f"oci:{tmp_path / 'l'}:v1"
    pushed = run("push-view", f"{tmp_path}{real_root}", layout, "--root", real_root, "--no-compat", "--no-cache")
    assert pushed.returncode == 0, pushed.stderr
    pulled = run("pull", layout, str(tmp_path / "view"), "--json")
    assert pulled.returncode == 0, pulled.stderr
    counts = json.loads(pulled.stdout)
    directories = files = 0
    for folder, dirs, names in os.walk(tmp_path / "view"):
        dirs[:] = [d for d in dirs if d != ".ocikit" and not os.path.islink(os.path.join(folder, d))]
        directories += len(dirs)
        files += sum(1 for n in names if not os.path.islink(os.path.join(folder, n)))
    assert (counts["directories"], counts["files"]) == (directories, files) == (78, 169)


def test_get_file_of_a_view_gives_the_files_bytes_as_pushed(tmp_path):
    """get-file of a view file that names the view's root says which root its paths name, and
    gives the bytes of the view that was pushed, to a file or to stdout."""
    from environment import SPACK_VIEW_ARCHIVE

    subprocess.run(["tar", "--zstd", "-xf", SPACK_VIEW_ARCHIVE, "-C", str(tmp_path)], check=True)
    real_root = "/opt/._view/m5vlrdleywqmp3aiv3sv2s54dysxhz6m"
    source = f"{tmp_path}{real_root}"
    layout = f"oci:{tmp_path / 'l'}:v1"
    pushed = run("push-view", source, layout, "--root", real_root, "--absolute-rpaths", "--no-compat", "--no-cache")
    assert pushed.returncode == 0, pushed.stderr
    for path in ("lib/pkgconfig/zlib.pc", "bin/xz"):
        original = open(os.path.join(source, path), "rb").read()
        got = run("get-file", layout, path, "-o", str(tmp_path / "out"), cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        assert f"its paths name {real_root}" in got.stdout
        assert open(tmp_path / "out", "rb").read() == original, path
        streamed = subprocess.run([OCIKIT, "get-file", layout, path, "-o", "-"], capture_output=True, timeout=120)
        assert streamed.returncode == 0 and streamed.stdout == original, path
    document = json.loads(run("get-file", layout, "bin/xz", "-o", str(tmp_path / "out"), "--json").stdout)
    assert document["pathsRoot"] == real_root


def test_the_stream_swap_finds_placeholders_split_across_chunks():
    from ocikit.ztoc.api import _SwappingWriter

    old, new = b"/__ocikit_root_pl", b"/opt/view/abcdefg"
    data = b"x" * 5 + old + b"y" + old + old + b"z" * 3
    for size in (1, 2, 7, len(old), 100):
        out = []
        writer = _SwappingWriter(out.append, old, new)
        for start in range(0, len(data), size):
            writer(data[start:start + size])
        writer.flush()
        assert b"".join(out) == data.replace(old, new), size


def test_get_file_of_a_version_1_view_swaps_its_placeholder_back(tmp_path):
    """A 0.1 view (config application/vnd.ocikit.view.config.v1+json) stored the root as a
    same-length placeholder; get-file gives the file with the root, to a file and to stdout."""
    from pull_support import TarBuilder, push_view

    root = "/opt/views/app"
    placeholder = "/__ocikit_root_placeholder__"[: len(root)]
    tar = TarBuilder().file("etc/app.conf", f"home={placeholder}/share\n".encode()).bytes()
    config = {"relocation": {"root": root, "placeholder": placeholder, "files": ["etc/app.conf"]}}
    layout = str(tmp_path / "layout")
    push_view(layout, [tar], config, kind="gzip")
    got = run("get-file", f"oci:{layout}:v1", "etc/app.conf", "-o", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr
    assert open(tmp_path / "out").read() == f"home={root}/share\n" and f"its paths name {root}" in got.stdout
    streamed = run("get-file", f"oci:{layout}:v1", "etc/app.conf", "-o", "-")
    assert streamed.stdout == f"home={root}/share\n"
