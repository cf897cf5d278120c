"""The fast gzip inflate (zlib-ng) and the standard library's fallback behind the one
decompression seam: same bytes out of real gzip streams, same refusals, and pulls that
verify both digests whichever inflates."""

from __future__ import annotations

import gzip
import os
import subprocess
import zlib

import pytest
from pull_support import push_tar, tree_snapshot

import ocikit
from ocikit.digest import digest_bytes
from ocikit.errors import CorruptDataError, DigestMismatchError, VerificationError
from ocikit.formats.compression import (
    FAST_INFLATE,
    GZIP,
    STDLIB_INFLATE,
    Prefixed,
    decompressed_chunks,
    inflate_module,
)

INFLATERS = [FAST_INFLATE, STDLIB_INFLATE]
PACKAGE_DIR = os.path.dirname(ocikit.__file__)


@pytest.fixture(scope="module")
def real_tar(tmp_path_factory) -> bytes:
    """GNU tar of this package's sources plus an incompressible file (a few MB, real tar framing)."""
    extra = tmp_path_factory.mktemp("extra")
    (extra / "random.bin").write_bytes(os.urandom(3 << 20))
    command = ["tar", "--sort=name", "-cf", "-", "-C", PACKAGE_DIR, ".", "-C", str(extra), "random.bin"]
    return subprocess.run(command, check=True, capture_output=True).stdout


def _gzip_cli(data: bytes, *flags: str) -> bytes:
    return subprocess.run(["gzip", "-c", "-n", *flags], input=data, check=True, capture_output=True).stdout


def _inflated(blob: bytes, inflate: str, chunk_size: int = 1 << 16) -> bytes:
    import io

    return b"".join(decompressed_chunks(GZIP, Prefixed(b"", io.BytesIO(blob)), chunk_size, "layer", inflate))


def test_the_fast_inflate_is_installed_and_the_fallback_is_the_standard_library():
    assert inflate_module(FAST_INFLATE) is not zlib
    assert inflate_module(STDLIB_INFLATE) is zlib


def test_environment_forces_the_standard_library(monkeypatch):
    monkeypatch.setenv("OCIKIT_INFLATE", STDLIB_INFLATE)
    assert inflate_module() is zlib
    monkeypatch.delenv("OCIKIT_INFLATE")
    assert inflate_module() is inflate_module(FAST_INFLATE)


@pytest.mark.parametrize("shape", ["gzip -1", "gzip -9", "two members", "padded", "empty member first"])
def test_fast_and_stdlib_inflate_give_identical_bytes(real_tar, shape):
    half = len(real_tar) // 2
    blob = {
        "gzip -1": lambda: _gzip_cli(real_tar, "-1"),
        "gzip -9": lambda: _gzip_cli(real_tar, "-9"),
        "two members": lambda: _gzip_cli(real_tar[:half]) + _gzip_cli(real_tar[half:]),
        "padded": lambda: _gzip_cli(real_tar) + b"\0" * 1024,  # zero padding after the stream is tolerated
        "empty member first": lambda: gzip.compress(b"", mtime=0) + _gzip_cli(real_tar),
    }[shape]()
    fast, stdlib = _inflated(blob, FAST_INFLATE), _inflated(blob, STDLIB_INFLATE, chunk_size=3 << 20)
    assert digest_bytes(fast) == digest_bytes(stdlib) == digest_bytes(real_tar)


@pytest.mark.parametrize("inflate", INFLATERS)
@pytest.mark.parametrize("damage", ["crc", "length", "truncated", "trailing garbage", "bad deflate"])
def test_both_inflaters_refuse_damaged_streams(real_tar, inflate, damage):
    good = _gzip_cli(real_tar[: 1 << 20])
    blob = {
        "crc": good[:-8] + bytes([good[-8] ^ 1]) + good[-7:],
        "length": good[:-1] + bytes([good[-1] ^ 1]),
        "truncated": good[:-100],
        "trailing garbage": good + b"not gzip",
        "bad deflate": good[:10] + b"\xff" * 64 + good[74:],
    }[damage]
    with pytest.raises(CorruptDataError):
        _inflated(blob, inflate)


@pytest.mark.parametrize("inflate", INFLATERS)
def test_pull_verifies_both_digests_with_either_inflate(tmp_path, monkeypatch, real_tar, inflate):
    monkeypatch.setenv("OCIKIT_INFLATE", inflate)
    layout = str(tmp_path / "layout")
    push_tar(layout, real_tar, kind="gzip")
    ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "dest"))
    snapshot = tree_snapshot(str(tmp_path / "dest"))
    assert snapshot["formats/compression.py"][2] == digest_bytes(open(os.path.join(PACKAGE_DIR, "formats/compression.py"), "rb").read())

    wrong = str(tmp_path / "wrong-diff-id")
    push_tar(wrong, real_tar, kind="gzip", **{"io.deis.oras.content.digest": "sha256:" + "0" * 64})
    with pytest.raises(DigestMismatchError, match="uncompressed"):
        ocikit.pull(f"oci:{wrong}:v1", str(tmp_path / "dest2"))
    assert not os.path.exists(tmp_path / "dest2")

    tampered = str(tmp_path / "tampered")
    push_tar(tampered, real_tar, kind="gzip")
    blobs = os.path.join(tampered, "blobs", "sha256")
    path = max((os.path.join(blobs, n) for n in os.listdir(blobs)), key=os.path.getsize)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 1
    open(path, "wb").write(bytes(data))
    with pytest.raises(VerificationError):
        ocikit.pull(f"oci:{tampered}:v1", str(tmp_path / "dest3"))
    assert not os.path.exists(tmp_path / "dest3")
