"""Framed compression: the cut rule, the zstd seek table, gzip members, streaming relocation."""

import gzip
import io
import os
import struct
import subprocess
import tarfile

import pytest
import zstandard

from ocikit.content.memory import MemoryStore
from ocikit.formats.zstd_seekable import read_seek_table
from ocikit.push.compress import Compression, FrameCompressor
from ocikit.push.pipeline import Pools, compress_and_push
from ocikit.push.stream import FRAME_TARGET, LayerReader, Relocation
from ocikit.spack.layering import plan_layers
from ocikit.spack.view import scan_view

ROOT = "/opt/._view/" + "q" * 32
PLACEHOLDER = "/" + "P" * (len(ROOT) - 1)
MIB = 1 << 20


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    top = tmp_path_factory.mktemp("frames") / "tree"
    top.mkdir()
    for i in range(40):
        (top / f"small{i:02d}").write_bytes(os.urandom(100_000 + i))
    big = bytearray(os.urandom(9 * MIB + 123))
    for offset in (0, 4 * MIB - 10, 8 * MIB - 1, len(big) - len(ROOT)):  # the second and third straddle cuts
        big[offset : offset + len(ROOT)] = ROOT.encode()
    (top / "big").write_bytes(big)
    (top / "exactly4m").write_bytes(os.urandom(4 * MIB))
    (top / "empty").write_bytes(b"")
    (top / "mid").write_bytes(b"prefix " + ROOT.encode() + b"/lib suffix")
    os.symlink("mid", top / "link")
    return str(top)


def push(tree, algorithm):
    view = scan_view(tree)
    [plan] = plan_layers(view, "packages")
    reader = LayerReader(view.source, plan, Relocation(ROOT, PLACEHOLDER))
    store = MemoryStore()
    pools = Pools.for_cores(2)
    try:
        outcome = compress_and_push(reader, FrameCompressor(Compression.parse(algorithm)), pools, store, lambda n: None)
    finally:
        pools.close()
    blob = store.fetch(outcome.descriptor).readall()
    return plan, outcome, blob


def seek_table_entries(blob: bytes) -> list[tuple[int, int, bytes]]:
    """(compressed, decompressed, checksum) per entry, read straight from the format's bytes."""
    count, descriptor, magic = struct.unpack("<IBI", blob[-9:])
    assert magic == 0x8F92EAB1 and descriptor == 0x80  # seekable footer, checksums present
    start = len(blob) - 9 - 12 * count
    assert struct.unpack("<II", blob[start - 8 : start]) == (0x184D2A5E, 12 * count + 9)
    return [(*struct.unpack("<II", blob[start + 12 * i : start + 12 * i + 8]),
             blob[start + 12 * i + 8 : start + 12 * i + 12]) for i in range(count)]


def expected_frame_sizes(tar: bytes) -> list[int]:
    """The cut rule computed independently from tarfile's member offsets."""
    cuts = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            data_end = member.offset_data + (member.size if member.isreg() else 0)
            if member.isreg():
                cuts += list(range(member.offset_data + FRAME_TARGET, data_end, FRAME_TARGET))
            cuts.append(data_end + (-data_end % 512))
    sizes, start = [], 0
    for cut in cuts:
        if cut - start >= FRAME_TARGET:
            sizes.append(cut - start)
            start = cut
    sizes.append(len(tar) - start)
    return sizes


def test_zstd_frames_follow_the_cut_rule_and_the_seek_table_indexes_them(tree):
    plan, outcome, blob = push(tree, "zstd")
    tar = subprocess.run(["zstd", "-dc"], input=blob, capture_output=True, check=True).stdout
    assert len(tar) == plan.tar_size == outcome.tar.tar_size
    table = seek_table_entries(blob)
    frames = read_seek_table(lambda offset, length: blob[offset : offset + length], len(blob))  # the zTOC reader
    assert [(f.compressed_size, f.uncompressed_size) for f in frames] == [(c, d) for c, d, _ in table]
    assert [d for _, d, _ in table] == expected_frame_sizes(tar)
    assert max(d for _, d, _ in table) < 2 * FRAME_TARGET + 4096
    offset, pieces = 0, []
    for compressed, decompressed, checksum in table:
        frame = blob[offset : offset + compressed]
        # each frame is a standalone zstd frame whose content checksum the table repeats
        out = zstandard.ZstdDecompressor().decompress(frame)
        assert len(out) == decompressed and frame[-4:] == checksum
        pieces.append(out)
        offset += compressed
    assert b"".join(pieces) == tar
    assert len(blob) - offset == 8 + 12 * len(table) + 9  # only the seek table follows


def test_gzip_layer_is_a_deterministic_multi_member_stream(tree):
    plan, outcome, blob = push(tree, "gzip")
    tar = gzip.decompress(blob)
    assert len(tar) == plan.tar_size
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no FNAME, mtime 0
    assert subprocess.run(["gzip", "-dc"], input=blob, capture_output=True, check=True).stdout == tar
    assert blob.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff") >= len(expected_frame_sizes(tar))


def test_relocation_across_frame_boundaries_matches_bytes_replace(tree):
    plan, outcome, blob = push(tree, "zstd")
    tar = subprocess.run(["zstd", "-dc"], input=blob, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        stored = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isreg()}
    for name in ("big", "mid", "small00", "exactly4m"):
        original = open(os.path.join(tree, name), "rb").read()
        assert stored[name] == original.replace(ROOT.encode(), PLACEHOLDER.encode()), name
    assert sorted(outcome.tar.relocated) == ["big", "mid"]
    assert ROOT.encode() not in tar


def test_same_tree_same_layer_digest(tree):
    assert push(tree, "zstd")[1].descriptor.digest == push(tree, "zstd")[1].descriptor.digest


@pytest.mark.parametrize("size", [1000, 6 * MIB])
def test_a_file_holding_root_and_placeholder_is_refused(tmp_path, size):
    from ocikit.errors import InvalidContentError

    top = tmp_path / "clash"
    top.mkdir()
    data = bytearray(size)
    data[10 : 10 + len(PLACEHOLDER)] = PLACEHOLDER.encode()  # far apart: different chunks when large
    data[size - 100 : size - 100 + len(ROOT)] = ROOT.encode()
    (top / "f").write_bytes(data)
    with pytest.raises(InvalidContentError, match="relocation placeholder"):
        push(str(top), "zstd")


def test_large_non_elf_files_stream_even_with_the_rpath_hook(tmp_path):
    """The relative-RPATH hook needs whole ELF files; a large archive (libpython.a) must still
    stream, so push memory is bounded by the largest ELF file, not the largest file."""
    import tracemalloc

    top = tmp_path / "tree"
    top.mkdir()
    archive = bytearray(b"!<arch>\n" + os.urandom(40 * MIB))
    archive[20 * MIB : 20 * MIB + len(ROOT)] = ROOT.encode()
    (top / "libbig.a").write_bytes(archive)
    view = scan_view(str(top))
    [plan] = plan_layers(view, "packages")
    calls: list[str] = []

    def hook(data: bytes, rel: str, root: str) -> bytes:  # FAKE: records what it was given
        calls.append(rel)
        return data

    reader = LayerReader(view.source, plan, Relocation(ROOT, PLACEHOLDER, rpath_hook=hook))
    tracemalloc.start()
    try:
        for _frame in reader.frames():
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert calls == []
    assert reader.relocated == ["libbig.a"]  # the root inside the archive was still found and replaced
    assert peak < 32 * MIB, f"{peak / MIB:.0f} MiB held at once for a 40 MiB file (whole: 80)"
