"""Layer merging, fuzzed: a full pull and ``pull --include '*'`` of the same image give the same tree.

A full pull extracts each layer with the safe extractor and merges them on disk
(``extract/whiteout.py``); ``--include`` merges the layers' zTOCs in memory
(``ztoc/view.py``) and extracts the chosen entries through the same extractor. The two must
agree on every image: the same files, modes, link targets and hard-link groups, or both refuse.
The generated images collide names on purpose (files over directories, whiteouts of parents,
opaque directories, hard links to lower layers, symlinked parents), since that is where two
merges can disagree.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pull_support import push_layers, push_view, tree_snapshot

import ocikit
from ocikit.digest import digest_bytes
from ocikit.errors import OcikitError
from ocikit.pull.policy import PullPolicy
from ocikit.spec import mediatypes as mt
from ocikit.ztoc.api import get_file

MERGE = settings(max_examples=int(os.environ.get("OCIKIT_FUZZ_EXAMPLES", "60")), deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PATHS = ["a", "a/b", "a/b/c", "a/d", "e", "e/f"]
NAMES = st.sampled_from(PATHS)
CONTENT = st.sampled_from([b"", b"one", b"two", b"three" * 100])


@st.composite
def entry(draw) -> tuple:
    kind = draw(st.sampled_from(["file", "file", "dir", "dir", "symlink", "hardlink", "whiteout", "opaque"]))
    path = draw(NAMES)
    if kind == "file":
        return (kind, path, draw(CONTENT), draw(st.sampled_from([0o644, 0o755, 0o600])))
    if kind == "symlink":
        return (kind, path, draw(st.sampled_from(["b", "../e", "/a", "f", "c"])), 0)
    if kind == "hardlink":
        return (kind, path, draw(NAMES), 0)
    return (kind, path, b"", draw(st.sampled_from([0o755, 0o700])))


LAYERS = st.lists(st.lists(entry(), min_size=1, max_size=6), min_size=1, max_size=3)


def layer_tar(entries: list[tuple]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, path, value, mode in entries:
            parent, _, base = path.rpartition("/")
            if kind == "whiteout":
                info = tarfile.TarInfo(f"{parent}/.wh.{base}".lstrip("/"))
            elif kind == "opaque":
                info = tarfile.TarInfo(f"{path}/.wh..wh..opq")
            else:
                info = tarfile.TarInfo(path)
            info.mtime, info.mode = 1_700_000_000, mode or 0o644
            data = None
            if kind == "file":
                info.size, data = len(value), io.BytesIO(value)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, value, 0o777
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, value
            tar.addfile(info, data)
    return buffer.getvalue()


def snapshot(root: str) -> dict[str, tuple]:
    """Path → what a reader sees (mtimes aside), hard-link groups included; ocikit's marker left out."""
    tree = tree_snapshot(root, mtimes=False, link_groups=True)
    return {k: v for k, v in tree.items() if k != ".ocikit" and not k.startswith(".ocikit/")}


def outcome(layout: str, dest: str, rootfs: bool = True, **policy) -> dict[str, tuple] | str:
    """The tree a pull writes (an image's layers stacked with ``rootfs``), or why it was refused."""
    try:
        ocikit.pull(f"oci:{layout}:v1", dest, PullPolicy(rootfs=rootfs, check_compat=False, **policy))
    except OcikitError as exc:
        assert not os.path.exists(dest), "a refused pull left its destination"
        return f"refused: {type(exc).__name__}"
    return snapshot(dest)


def view_outcome(layout: str, dest: str, **policy) -> dict[str, tuple] | str:
    return outcome(layout, dest, rootfs=False, **policy)


def push_artifact(layout: str, layers: list[list[tuple]], view: bool = False) -> str:
    """An image (stacked layers, gzip) or an ocikit view (side by side) of the generated layers."""
    tars = [layer_tar(entries) for entries in layers]
    if view:
        push_view(layout, tars, kind="gzip")
    else:
        push_layers(layout, [(tar, "gzip", {}) for tar in tars],
                    config=(mt.OCI_CONFIG, b'{"rootfs": {"type": "layers", "diff_ids": []}}'))
    return layout


@contextlib.contextmanager
def scratch():
    """A directory for one generated example (hypothesis runs many in one test: no tmp_path)."""
    work = tempfile.mkdtemp(prefix="merge-fuzz-")
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def assert_alike(one: dict[str, tuple] | str, other: dict[str, tuple] | str) -> None:
    """The same tree, or both refused (the class of the refusal may differ with the path taken)."""
    if isinstance(one, str) or isinstance(other, str):
        assert isinstance(one, str) == isinstance(other, str), (one, other)
    else:
        assert other == one


@MERGE
@given(layers=LAYERS)
def test_a_full_pull_and_an_include_pull_merge_layers_alike(layers):
    with scratch() as work:
        layout = push_artifact(os.path.join(work, "layout"), layers)
        full = outcome(layout, os.path.join(work, "full"))
        assert_alike(full, outcome(layout, os.path.join(work, "include"), include=("*",)))
        for path, entry in full.items() if not isinstance(full, str) else ():
            if entry[0] == "file":  # get-file serves each file's bytes from the same merge
                get_file(f"oci:{layout}:v1", path, os.path.join(work, "got"))
                with open(os.path.join(work, "got"), "rb") as fh:
                    assert digest_bytes(fh.read()) == entry[2], path


@pytest.mark.parametrize("layers", [
    # a file replaces a directory of a lower layer, whose children go with it
    [[("dir", "a", b"", 0o755), ("file", "a/b", b"one", 0o644)], [("file", "a", b"two", 0o644)]],
    # a whiteout of a parent, then the layer recreates a child
    [[("file", "a/b", b"one", 0o644)], [("whiteout", "a", b"", 0), ("file", "a/d", b"two", 0o644)]],
    # an opaque directory hides the lower children but keeps the directory
    [[("file", "a/b", b"one", 0o644), ("file", "a/d", b"two", 0o644)], [("opaque", "a", b"", 0o755)]],
    # a hard link to a lower layer's file that a later layer replaces
    [[("file", "e", b"one", 0o644)], [("hardlink", "a", b"e", 0)], [("file", "e", b"two", 0o644)]],
])
def test_known_collisions_merge_alike(tmp_path, layers):
    layers = [[(k, p, v.decode() if k == "hardlink" else v, m) for k, p, v, m in entries] for entries in layers]
    layout = push_artifact(str(tmp_path / "layout"), layers)
    full = outcome(layout, str(tmp_path / "full"))
    assert not isinstance(full, str), full
    assert outcome(layout, str(tmp_path / "include"), include=("*",)) == full


@MERGE
@given(layers=LAYERS)
def test_a_view_pulls_alike_in_full_and_through_include(layers):
    """A view's layers are merged side by side (no whiteouts, no overlaps): both paths agree."""
    with scratch() as work:
        layout = push_artifact(os.path.join(work, "layout"), layers, view=True)
        full = view_outcome(layout, os.path.join(work, "full"))
        assert_alike(full, view_outcome(layout, os.path.join(work, "include"), include=("*",)))


MOUNTED = settings(MERGE, max_examples=int(os.environ.get("OCIKIT_FUZZ_EXAMPLES", "25")))


def mounted_outcome(layout: str, mountpoint: str, cache: str, rootfs: bool) -> dict[str, tuple] | str:
    os.makedirs(mountpoint, exist_ok=True)
    try:
        handle = ocikit.mount(f"oci:{layout}:v1", mountpoint, PullPolicy(rootfs=rootfs, check_compat=False), cache=cache)
    except OcikitError as exc:
        return f"refused: {type(exc).__name__}"
    with handle:
        return snapshot(mountpoint)


def _without_link_groups(tree: dict[str, tuple] | str) -> dict[str, tuple] | str:
    """FUSE gives every path its own inode number: compare contents, not hard-link identity."""
    if isinstance(tree, str):
        return tree
    return {path: entry[:3] for path, entry in tree.items()}


@MOUNTED
@given(layers=LAYERS, view=st.booleans())
def test_a_mount_shows_what_a_full_pull_writes(layers, view):
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        pytest.fail("FUSE is not available") if os.environ.get("CI") else pytest.skip("FUSE is not available")
    with scratch() as work:
        layout = push_artifact(os.path.join(work, "layout"), layers, view=view)
        full = outcome(layout, os.path.join(work, "full"), rootfs=not view)
        mounted = mounted_outcome(layout, os.path.join(work, "mnt"), os.path.join(work, "cache"), rootfs=not view)
        assert_alike(_without_link_groups(full), _without_link_groups(mounted))


@pytest.mark.parametrize("policy", [{}, {"include": ("*",)}], ids=["full", "include"])
def test_defects_the_fuzz_found_stay_fixed(tmp_path, policy):
    """Each case was a wrong result of the full pull (or of the zTOC merge) before both shared rules."""
    def pull(name, layers):
        return outcome(push_artifact(str(tmp_path / name / "layout"), layers), str(tmp_path / name / "dest"), **policy)

    # a hard link to a lower file, replaced later in its own layer, must not overwrite the replacement
    tree = pull("deferred", [[("file", "e", b"lower", 0o644)], [("hardlink", "a", "e", 0), ("file", "a", b"newer", 0o644)]])
    assert tree["a"][2] == digest_bytes(b"newer") and tree["a"][3] == ("a",)
    # a whiteout removes a lower directory: its mode does not come back with the upper one
    tree = pull("mode", [[("dir", "a", b"", 0o700)], [("file", "a/b", b"", 0o644), ("whiteout", "a", b"", 0)]])
    assert tree["a"] == ("dir", "0o755")
    # a hard link to a name its own layer provides only later is refused, with or without layers below
    assert pull("forward", [[("file", "x", b"", 0o644)], [("hardlink", "e", "a", 0), ("file", "a", b"", 0o644)]]).startswith("refused")
    # a directory a layer lists replaces a lower symlink (nothing is written through it)
    tree = pull("listed", [[("dir", "e", b"", 0o755), ("symlink", "a", "e", 0)], [("dir", "a", b"", 0o755), ("file", "a/b", b"x", 0o644)]])
    assert tree["a"] == ("dir", "0o755") and "a/b" in tree and "e/b" not in tree
    # ... one it only implies does not
    assert pull("implied", [[("dir", "e", b"", 0o755), ("symlink", "a", "e", 0)], [("file", "a/b", b"x", 0o644)]]).startswith("refused")
    # a directory that only holds whiteouts is a directory of the layer
    assert pull("hiding", [[("whiteout", "a/b", b"", 0)]]) == {"a": ("dir", "0o755")}
    # a lower symlink overwritten later is still an unsafe entry of the image
    assert pull("shadowed", [[("symlink", "a", "../../etc", 0)], [("file", "a", b"", 0o644)]]).startswith("refused")


def test_a_view_whose_layer_turns_a_file_into_a_directory_is_refused_every_time(tmp_path):
    """Side-by-side layers are extracted at the same time: the answer used to depend on which came first."""
    layout = push_artifact(str(tmp_path / "layout"), [[("file", "a", b"", 0o644), ("dir", "a", b"", 0o755)],
                                                      [("dir", "a", b"", 0o755)]], view=True)
    results = {view_outcome(layout, str(tmp_path / f"d{i}"), **policy)
               for i in range(4) for policy in ({}, {"include": ("*",)})}
    assert results == {"refused: InvalidContentError"}


def test_get_file_reads_a_view_side_by_side(tmp_path):
    """In a view ``.wh.`` names are files, as a pull of the view writes them, and get-file serves them."""
    layout = push_artifact(str(tmp_path / "layout"), [[("file", "a/.wh.b", b"kept", 0o644)],
                                                      [("file", "a/b", b"also", 0o644)]], view=True)
    pulled = view_outcome(layout, str(tmp_path / "full"))
    assert pulled["a/.wh.b"][2] == digest_bytes(b"kept") and "a/b" in pulled
    get_file(f"oci:{layout}:v1", "a/.wh.b", str(tmp_path / "got"))
    assert (tmp_path / "got").read_bytes() == b"kept"
    get_file(f"oci:{layout}:v1", "a/b", str(tmp_path / "got2"))  # not hidden by the other layer's .wh.b
    assert (tmp_path / "got2").read_bytes() == b"also"
