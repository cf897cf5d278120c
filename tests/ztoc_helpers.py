"""Real layers for the zTOC tests: a small software tree archived by GNU tar, compressed by
GNU gzip, pigz, concatenated gzip members, the zstd CLI or python-zstandard frames."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess

import zstandard
from environment import SOCI_VECTORS, require_binary

from ocikit.content.base import Store, push_bytes, push_manifest
from ocikit.digest import digest_file
from ocikit.formats.zstd_seekable import SeekTableWriter
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor
from ocikit.spec.manifest import build_manifest, canonical_json

SPAN = 64 << 10  # small spans: many of them even in a few-MiB layer
LONG_NAME = "share/" + "deep-directory-name/" * 6 + "file-with-a-long-name.txt"


def soci_vectors_dir() -> str:
    """The SOCI golden vectors, copied into the repository (fixtures/soci-vectors)."""
    return SOCI_VECTORS


def require(binary: str) -> None:
    require_binary(binary)


def make_tree(root: str) -> None:
    """A small installation: text, incompressible libraries, links, modes, a long name."""
    rnd = random.Random(7)
    words = [("".join(rnd.choice("abcdefghij") for _ in range(rnd.randint(2, 9)))) for _ in range(500)]
    for sub in ("bin", "lib", "share/doc", "etc", "many", os.path.dirname(LONG_NAME)):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    with open(os.path.join(root, "bin/tool"), "w") as fh:
        fh.write(" ".join(rnd.choice(words) for _ in range(200_000)))  # ~1.1 MiB of text
    with open(os.path.join(root, "lib/libbig.so.1"), "wb") as fh:
        fh.write(rnd.randbytes(3 << 20))  # incompressible: spans are ~64 KiB of compressed bytes too
    os.symlink("libbig.so.1", os.path.join(root, "lib/libbig.so"))
    os.symlink("lib", os.path.join(root, "lib64"))
    with open(os.path.join(root, "share/doc/README"), "w") as fh:
        fh.write("read me\n" * 100)
    os.link(os.path.join(root, "share/doc/README"), os.path.join(root, "share/doc/README.hard"))
    with open(os.path.join(root, "etc/secret.conf"), "w") as fh:
        fh.write("secret=1\n")
    os.chmod(os.path.join(root, "etc/secret.conf"), 0o600)
    os.chmod(os.path.join(root, "bin/tool"), 0o755)
    for i in range(200):
        with open(os.path.join(root, f"many/f{i:03d}.txt"), "w") as fh:
            fh.write(f"file {i}\n" * (i % 7 + 1))
    with open(os.path.join(root, LONG_NAME), "w") as fh:
        fh.write("long\n")


def gnu_tar(root: str, out: str, fmt: str = "gnu") -> str:
    require("tar")
    subprocess.run(
        ["tar", f"--format={fmt}", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-C", root,
         "-cf", out, "."],
        check=True,
    )
    return out


def gzip_file(tar: str, out: str, tool: str = "gzip", level: int = 6) -> str:
    require(tool)
    with open(tar, "rb") as src, open(out, "wb") as dst:
        subprocess.run([tool, f"-{level}", "-c"], stdin=src, stdout=dst, check=True)
    return out


def multi_member_gzip(tar: str, out: str, parts: int = 3) -> str:
    """Several gzip members concatenated (what pigz --independent pipelines and mgzip produce)."""
    require("gzip")
    data = open(tar, "rb").read()
    step = -(-len(data) // parts)
    with open(out, "wb") as dst:
        for i in range(parts):
            subprocess.run(["gzip", "-6", "-c"], input=data[i * step : (i + 1) * step], stdout=dst, check=True)
    return out


def zstd_cli(tar: str, out: str) -> str:
    require("zstd")
    subprocess.run(["zstd", "-q", "-3", "-f", tar, "-o", out], check=True)
    return out


def zstd_frames(tar: str, out: str, frame_input: int = SPAN, seek_table: bool = True) -> tuple[str, list[bytes]]:
    """Independent frames of ``frame_input`` bytes each (+ a seek table), as ocikit's push writes them."""
    data = open(tar, "rb").read()
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=True)
    frames = [cctx.compress(data[i : i + frame_input]) for i in range(0, len(data), frame_input)]
    table = SeekTableWriter()
    with open(out, "wb") as fh:
        for i, frame in enumerate(frames):
            fh.write(frame)
            table.add_frame(len(frame), len(data[i * frame_input : (i + 1) * frame_input]))
        if seek_table:
            fh.write(table.to_bytes())
    return out, frames


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(store: Store, layers: list[tuple[str, str]], tag: str = "v1") -> Descriptor:
    """An image whose layers are the given files (path, media type)."""
    descs = []
    for path, media_type in layers:
        digest, size = digest_file(path)
        desc = Descriptor(media_type, digest, size)
        with open(path, "rb") as fh:
            store.push(desc, fh)
        descs.append(desc)
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    config_desc = push_bytes(store, mt.OCI_CONFIG, canonical_json(config))
    return push_manifest(store, build_manifest(descs, config=config_desc), tag=tag)


def tar_with(entries: list[tuple[str, bytes | None, dict]]) -> bytes:
    """A hand-made tar (Python's tarfile) for names GNU tar refuses to write (``../x``, …)."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content, attrs in entries:
            info = tarfile.TarInfo(name)
            for key, value in attrs.items():
                setattr(info, key, value)
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def json_dump(obj: object) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
