"""Helpers for the pull tests: build tar layers (GNU tar or hand-crafted with tarfile),
compress them with the real zstd/gzip, and store artifacts in OCI layouts."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterable, Mapping

from ocikit.content.base import push_bytes, push_manifest
from ocikit.content.layout import LayoutStore
from ocikit.digest import digest_bytes
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import EMPTY_DESCRIPTOR, Descriptor
from ocikit.spec.manifest import build_manifest, canonical_json

MTIME = 1_700_000_000


def gnu_tar(directory: str, *members: str) -> bytes:
    """The uncompressed tar GNU tar makes of ``directory`` (members relative to it)."""
    return subprocess.run(
        ["tar", "-C", directory, "--sort=name", "-cf", "-", *(members or ["."])], check=True, capture_output=True
    ).stdout


def compress(data: bytes, kind: str) -> bytes:
    if kind == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, check=True, capture_output=True).stdout
    if kind == "gzip":
        return subprocess.run(["gzip", "-n", "-c"], input=data, check=True, capture_output=True).stdout
    return data


def media_type(kind: str) -> str:
    return {"zstd": mt.OCI_LAYER_ZSTD, "gzip": mt.OCI_LAYER_GZIP, "none": mt.OCI_LAYER_TAR}[kind]


class TarBuilder:
    """Hand-craft a tar (the malicious ones too) with Python's tarfile."""

    def __init__(self, format: int = tarfile.PAX_FORMAT) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=format)

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = MTIME
        return info

    def file(self, name: str, data: bytes = b"x", mode: int = 0o644) -> "TarBuilder":
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def dir(self, name: str, mode: int = 0o755) -> "TarBuilder":
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, mode))
        return self

    def symlink(self, name: str, target: str) -> "TarBuilder":
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str) -> "TarBuilder":
        info = self._info(name, tarfile.LNKTYPE, 0o644)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def device(self, name: str, kind: bytes = tarfile.CHRTYPE, major: int = 1, minor: int = 3) -> "TarBuilder":
        info = self._info(name, kind, 0o666)
        info.devmajor, info.devminor = major, minor
        self._tar.addfile(info)
        return self

    def raw(self, data: bytes) -> "TarBuilder":
        """Append raw bytes to the archive (for lying headers)."""
        self._tar.fileobj.write(data)  # type: ignore[union-attr]
        self._tar.offset += len(data)
        return self

    def bytes(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()


def push_layers(
    layout: str,
    layers: Iterable[tuple[bytes, str, Mapping[str, str]]],
    *,
    tag: str = "v1",
    artifact_type: str = "",
    config: tuple[str, bytes] | None = None,
    annotate_diff_id: bool = True,
) -> Descriptor:
    """Store an artifact in an OCI layout; each layer is (uncompressed tar or file bytes, compression, annotations)."""
    store = LayoutStore(layout)
    descs = []
    for raw, kind, layer_annotations in layers:
        blob = compress(raw, kind)
        notes = dict(layer_annotations)
        if annotate_diff_id and kind != "file":
            notes.setdefault(mt.ORAS_ANNOTATION_DIGEST, digest_bytes(raw))
        desc = Descriptor(media_type(kind) if kind != "file" else "application/octet-stream", digest_bytes(blob), len(blob), notes)
        store.push(desc, blob)
        descs.append(desc)
    config_desc = EMPTY_DESCRIPTOR
    if config is not None:
        config_desc = push_bytes(store, config[0], config[1])
    else:
        push_bytes(store, mt.OCI_EMPTY, mt.EMPTY_JSON)
    raw_manifest = build_manifest(descs, config=config_desc, artifact_type=artifact_type or ("" if config else mt.ORAS_UNKNOWN_ARTIFACT))
    return push_manifest(store, raw_manifest, tag=tag)


def push_tar(layout: str, tar: bytes, kind: str = "zstd", tag: str = "v1", **annotations: str) -> Descriptor:
    """One tar layer in an ORAS-style directory artifact whose entries are merged at the top (rootfs)."""
    return push_layers(layout, [(tar, kind, annotations)], tag=tag, config=(mt.OCI_CONFIG, canonical_json({"rootfs": {"type": "layers", "diff_ids": [digest_bytes(tar)]}})))


def tree_snapshot(root: str, mtimes: bool = True, link_groups: bool = False) -> dict[str, tuple]:
    """Relative path → (kind, mode, target or content digest[, mtime][, hard-link group]) of every
    entry under root; a file's hard-link group is the sorted paths sharing its inode."""
    out: dict[str, tuple] = {}
    groups: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
            else:
                with open(path, "rb") as fh:
                    out[rel] = ("file", oct(st.st_mode & 0o7777), digest_bytes(fh.read()))
                if mtimes:
                    out[rel] += (int(st.st_mtime),)
                groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
    if link_groups:
        for members in groups.values():
            for member in members:
                out[member] += (tuple(sorted(members)),)
    return out


def push_view(layout: str, tars: list[bytes], config: dict | None = None, kind: str = "zstd", tag: str = "v1") -> Descriptor:
    """An ocikit view artifact: view config (push-view's shape) and one layer per tar."""
    return push_layers(
        layout,
        [(tar, kind, {mt.ANNOTATION_TITLE: f"layer{i}"}) for i, tar in enumerate(tars)],
        tag=tag,
        artifact_type=mt.OCIKIT_VIEW_ARTIFACT,
        config=(mt.OCIKIT_VIEW_CONFIG, canonical_json(config or {"schemaVersion": 1})),
    )


def leftovers(parent: str, name: str) -> list[str]:
    """Staging directories of a pull into parent/name that were not cleaned up."""
    return [n for n in os.listdir(parent) if n.startswith(f".{name}.ocikit-staging-")]


class ThrottledProxy:
    """A TCP proxy in front of a real registry that slows responses down and counts blob GETs.

    Stands in for a slow network (so a pull can be killed half-way, or two pulls overlap);
    the registry behind it is the real docker-registry.
    """

    def __init__(self, target: str, bytes_per_second: int = 2 << 20) -> None:
        import re
        import socket
        import threading

        self._re = re.compile(rb"GET /v2/[^ ]*/blobs/(sha256:[0-9a-f]{64})")
        self.target_host, target_port = target.rsplit(":", 1)
        self.target_port = int(target_port)
        self.rate = bytes_per_second
        self.blob_gets: list[str] = []
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(32)
        self.host = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.target_host, self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src, dst, slow: bool) -> None:
        import time

        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                if not slow:
                    with self._lock:
                        self.blob_gets += [m.decode() for m in self._re.findall(data)]
                dst.sendall(data)
                if slow:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(2)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._server.close()
