"""Shared helpers for the push-view tests: the real spack view fixture and tree comparisons.

The fixture (fixtures/spack-views/spack-view-a.tar.zst) is unpacked with GNU tar
into a temporary directory; its files name the real root /opt/._view/<hash>, which is what
the tests pass as ``root``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile

from environment import SPACK_VIEW_ARCHIVE

VIEW_HASH = "m5vlrdleywqmp3aiv3sv2s54dysxhz6m"
REAL_ROOT = f"/opt/._view/{VIEW_HASH}"
VIEW_PATH = "/opt/view"


def unpack_fixture(target: str, old_style_target: str = "") -> str:
    """Unpack the spack view archive under ``target``; return the view directory.

    (Branches written before the fixture moved into the repository call
    ``unpack_fixture(shared_fixtures, target)``; that still works.)"""
    target = old_style_target or target
    os.makedirs(target, exist_ok=True)
    subprocess.run(["tar", "--zstd", "-xf", SPACK_VIEW_ARCHIVE, "-C", target], check=True)
    return os.path.join(target, "opt", "._view", VIEW_HASH)


def make_other_environment(view_dir: str, target: str, new_hash: str, drop: str = "", touch: int = 0) -> str:
    """A copy of the view as another spack environment would hold it.

    The real root is changed to ``/opt/._view/<new_hash>`` inside every file (same length,
    as spack's relocation of a copy view would produce), optionally one package (``drop``)
    is removed with its metadata, and with ``touch`` every path gets that mtime (a view
    created at another time).
    """
    assert len(new_hash) == len(VIEW_HASH)
    shutil.copytree(view_dir, target, symlinks=True)
    old, new = REAL_ROOT.encode(), f"/opt/._view/{new_hash}".encode()
    if drop:
        manifest = json.load(open(os.path.join(target, ".spack", drop, "install_manifest.json")))
        prefix = next(p for p in manifest if p.endswith("/.spack"))[: -len("/.spack")]
        for path in manifest:
            rel = os.path.relpath(path, prefix)
            full = os.path.join(target, rel)
            if not rel.startswith(".spack") and os.path.lexists(full) and not os.path.isdir(full):
                os.unlink(full)
        shutil.rmtree(os.path.join(target, ".spack", drop))
    for folder, dirs, files in os.walk(target):
        for name in files + dirs:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                link = os.readlink(path)
                if link.startswith(REAL_ROOT):
                    os.unlink(path)
                    os.symlink(f"/opt/._view/{new_hash}" + link[len(REAL_ROOT):], path)
            elif stat.S_ISREG(st.st_mode):
                data = open(path, "rb").read()
                if old in data:
                    with open(path, "r+b") as fh:
                        fh.write(data.replace(old, new))
    if touch:
        for folder, dirs, files in os.walk(target):
            for name in files + dirs:
                os.utime(os.path.join(folder, name), (touch, touch), follow_symlinks=False)
        os.utime(target, (touch, touch))
    return target


def tree_listing(root: str, follow_content: bool = True) -> dict[str, tuple]:
    """path → (kind, mode bits, mtime, content digest or link target) for every entry below root."""
    out: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                digest = hashlib.sha256(open(path, "rb").read()).hexdigest() if follow_content else ""
                out[rel] = ("file", stat.S_IMODE(st.st_mode), int(st.st_mtime), digest)
    return out


def resolved_link(root: str, rel: str) -> str:
    """Where a symlink inside ``root`` points, as a path relative to ``root`` (absolute ones mapped via REAL_ROOT)."""
    link = os.readlink(os.path.join(root, rel))
    if link.startswith(REAL_ROOT + "/"):
        return link[len(REAL_ROOT) + 1 :]
    return os.path.normpath(os.path.join(os.path.dirname(rel), link))


def layout_manifest(layout: str, tag: str) -> dict:
    with open(os.path.join(layout, "index.json")) as fh:
        index = json.load(fh)
    names = [m.get("annotations", {}).get("org.opencontainers.image.ref.name") for m in index["manifests"]]
    entry = index["manifests"][names.index(tag)]
    return json.loads(layout_blob(layout, entry["digest"]))


def layout_blob(layout: str, digest: str) -> bytes:
    return open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb").read()


def decompress(blob: bytes, media_type: str) -> bytes:
    """Decompress with the command-line tools (zstd, gzip), independent of ocikit."""
    tool = ["zstd", "-dc"] if media_type.endswith("+zstd") else ["gzip", "-dc"]
    return subprocess.run(tool, input=blob, capture_output=True, check=True).stdout


def extract_layers(layout: str, manifest: dict, target: str) -> None:
    """Apply every layer in order with GNU tar, as a container runtime would."""
    os.makedirs(target, exist_ok=True)
    for layer in manifest["layers"]:
        tar = decompress(layout_blob(layout, layer["digest"]), layer["mediaType"])
        subprocess.run(["tar", "-x", "-C", target, "--no-same-owner"], input=tar, check=True)


def tar_members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getmembers()
