"""The one tar reader, fuzzed: against Python's ``tarfile`` and GNU tar, through the zTOC, and on broken input.

ocikit reads every tar header with :mod:`ocikit.formats.tar.reader` (Go's rules); extraction,
zTOC building and zTOC reads all depend on it. Generated archives are read by ocikit and by an
independent reader and must give the same entries; damaged archives must fail with one of
ocikit's typed errors, never hang and never write outside the destination.

Known, intended differences from ``tarfile`` (ocikit follows Go's ``archive/tar``): numbers beyond
int64 are errors, PAX global headers apply to nothing, sparse files are flagged and refused.
The generators stay inside what both readers agree on; the rest has tests of its own.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from decimal import Decimal

import pytest
from environment import require_binary
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pull_support import TarBuilder, push_layers, push_tar

import ocikit
from ocikit.content.base import ensure_empty_blob, push_manifest
from ocikit.content.memory import MemoryStore
from ocikit.digest import digest_bytes
from ocikit.errors import LocalIOError, OcikitError, UnsafeContentError
from ocikit.extract.decompress import LayerStream
from ocikit.extract.layers import ExtractStats, finish_tree, refuse_deferred_links
from ocikit.extract.safe_tar import ExtractPolicy, SafeExtractor
from ocikit.extract.whiteout import remove_tree
from ocikit.extract.writer import WriterPool
from ocikit.formats.tar.reader import (
    BLOCKDEV,
    CHARDEV,
    DIRECTORY,
    FIFO,
    FILE,
    GLOBAL,
    HARDLINK,
    SYMLINK,
    TarEntry,
    TarScanner,
    TarStream,
)
from ocikit.pull.policy import PullPolicy
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor
from ocikit.spec.manifest import build_manifest, canonical_json
from ocikit.ztoc.build import build_ztoc
from ocikit.ztoc.extract import extract_matching
from ocikit.ztoc.fetch import LayerReader, Want
from ocikit.ztoc.gotime import unix_to_rfc3339
from ocikit.ztoc.ztoc import parse_ztoc

FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=40)
INT64 = (1 << 63) - 1
HANG_SECONDS = 20  # one example of a few KiB takes milliseconds; this only catches a loop

FORMATS = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}
_TARFILE_KINDS = {
    tarfile.REGTYPE: FILE, tarfile.AREGTYPE: FILE, tarfile.CONTTYPE: FILE, tarfile.DIRTYPE: DIRECTORY,
    tarfile.SYMTYPE: SYMLINK, tarfile.LNKTYPE: HARDLINK, tarfile.CHRTYPE: CHARDEV, tarfile.BLKTYPE: BLOCKDEV,
    tarfile.FIFOTYPE: FIFO,
}
_KIND_TYPES = {FILE: tarfile.REGTYPE, DIRECTORY: tarfile.DIRTYPE, SYMLINK: tarfile.SYMTYPE,
               HARDLINK: tarfile.LNKTYPE, CHARDEV: tarfile.CHRTYPE, BLOCKDEV: tarfile.BLKTYPE, FIFO: tarfile.FIFOTYPE}


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    """Fail (instead of blocking the suite) when one example runs away."""

    def expire(signum, frame):
        raise AssertionError(f"no result after {seconds} s: the reader loops")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- what a reader saw -------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One member as a reader reports it, in terms both readers share."""

    name: str
    kind: str
    size: int
    linkname: str
    mode: int
    mtime_ns: int
    uid: int
    gid: int
    uname: str
    gname: str
    devmajor: int
    devminor: int
    offset: int
    data: bytes


def _chunks(data: bytes, size: int):
    pieces = iter([data[i : i + size] for i in range(0, len(data), size)])
    return lambda: next(pieces, b"")


def _seen(entry: TarEntry, data: bytes) -> Seen:
    name = entry.name.rstrip("/") if entry.kind == DIRECTORY else entry.name
    return Seen(name, entry.kind, entry.size, entry.linkname, entry.mode, entry.mtime_ns, entry.uid, entry.gid,
                entry.uname, entry.gname, entry.devmajor, entry.devminor, entry.offset, data)


def ocikit_read(archive: bytes, chunk: int) -> list[Seen]:
    """Every member through :class:`TarStream` (data read as the extractor reads it), fed in ``chunk``-byte pieces."""
    stream = TarStream(_chunks(archive, chunk))
    out = []
    while (entry := stream.next_entry()) is not None:
        if entry.kind == GLOBAL:
            continue
        pieces = stream.read_data(entry) if len(out) % 2 else list(stream.iter_data(entry))
        out.append(_seen(entry, b"".join(bytes(p) for p in pieces)))
    stream.drain(1 << 20)
    return out


def ocikit_scan(archive: bytes, chunk: int) -> list[TarEntry]:
    """Every member through :class:`TarScanner`, the zTOC builder's driver."""
    entries: list[TarEntry] = []
    scanner = TarScanner(entries.append)
    for i in range(0, len(archive), chunk):
        scanner.feed(memoryview(archive)[i : i + chunk])
    scanner.close()
    return [e for e in entries if e.kind != GLOBAL]


def _tarfile_mtime_ns(info: tarfile.TarInfo) -> int:
    # A PAX mtime is text; tarfile keeps it as a float, ocikit as exact seconds + nanoseconds
    # (Go's parsePAXTime: the fraction cut to 9 digits). Compare against the exact text.
    text = info.pax_headers.get("mtime")
    if text is not None:
        return int(Decimal(text) * 10**9)
    return int(info.mtime) * 10**9


def tarfile_read(archive: bytes) -> list[Seen]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for info in tar:
            data = tar.extractfile(info).read() if info.isreg() else b""  # type: ignore[union-attr]
            out.append(Seen(
                info.name, _TARFILE_KINDS.get(info.type, "?"), info.size, info.linkname, info.mode,
                _tarfile_mtime_ns(info), info.uid, info.gid, info.uname, info.gname, info.devmajor, info.devminor,
                info.offset_data, data,
            ))
    return out


# -- generated archives ------------------------------------------------------------------------

# Name parts: any text but '/' and NUL, or raw bytes that are not UTF-8 (kept as surrogates).
_text_part = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1, max_size=10)
_byte_part = st.binary(min_size=1, max_size=6).filter(lambda b: b"/" not in b and b"\0" not in b).map(
    lambda b: b.decode("utf-8", "surrogateescape"))
_long_part = st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "日"]), st.integers(50, 140))
_part = st.one_of(_text_part, _text_part, _byte_part, _long_part)
names = st.lists(_part, min_size=1, max_size=4).map("/".join)

mtimes = st.one_of(
    st.integers(0, 8**11 - 1),  # octal
    st.integers(-(1 << 63), INT64),  # base-256 (GNU) or a PAX record
    st.sampled_from([0, -1, 8**11, 2**33, INT64, -(1 << 63), 253402300799, 253402300800]),
    st.builds(lambda s, f: s + f / 1000, st.integers(-(10**11), 10**11), st.integers(1, 999)),  # PAX fraction
)
ids = st.one_of(st.integers(0, 8**7 - 1), st.integers(0, (1 << 56) - 1), st.sampled_from([2**21, 2**32, 2**32 + 1]))
users = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40)


@st.composite
def members(draw, kinds=(FILE, FILE, FILE, DIRECTORY, SYMLINK, HARDLINK, CHARDEV, BLOCKDEV, FIFO)):
    kind = draw(st.sampled_from(kinds))
    info = tarfile.TarInfo(draw(names) + ("/" if kind == DIRECTORY and draw(st.booleans()) else ""))
    info.type = _KIND_TYPES[kind]
    info.mode = draw(st.integers(0, 0o7777) | st.sampled_from([0o4755, 0o2755, 0o1777, 0o644]))
    info.mtime = draw(mtimes)
    info.uid, info.gid = draw(ids), draw(ids)
    info.uname, info.gname = draw(users), draw(users)
    data = b""
    if kind == FILE:
        data = draw(st.binary(max_size=1500) | st.just(b""))
        info.size = len(data)
    elif kind in (SYMLINK, HARDLINK):
        info.linkname = draw(names | st.sampled_from(["..", "../x", "/etc/passwd", "a/../../b"]))
    elif kind in (CHARDEV, BLOCKDEV):
        info.devmajor, info.devminor = draw(ids), draw(ids)
    info.pax_headers = draw(pax_records(kind))  # written by the PAX format only
    return info, data


_pax_times = st.sampled_from(["-1.5", "-0.25", "0.000000001", "1.1234567891", "1700000000.5", "253402300800", "0"])
_pax_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1, max_size=30)


def pax_records(kind: str):
    """Records a writer may add (values Go and tarfile read alike: non-empty, no trailing '/')."""
    records = {"mtime": _pax_times, "atime": _pax_times, "comment": _pax_text, "SCHILY.xattr.user.é": _pax_text,
               "path": names, "uname": _pax_text, "gid": st.integers(0, INT64).map(str)}
    if kind in (SYMLINK, HARDLINK):
        records["linkpath"] = names
    return st.fixed_dictionaries({}, optional=records)


def member(name: str, kind: str = FILE, data: bytes = b"", linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = _KIND_TYPES[kind], len(data), linkname
    return info, data


def write_tar(fmt: int, entries, end_marker: bool = True) -> bytes:
    """The archive tarfile writes; members a format cannot hold (a name too long for USTAR) are left out."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            with contextlib.suppress(ValueError):  # raised before anything is written
                tar.addfile(info, io.BytesIO(data))
        members_end = tar.offset
    return buf.getvalue() if end_marker else buf.getvalue()[:members_end]


archives = st.builds(
    write_tar,
    st.sampled_from(list(FORMATS.values())),
    st.lists(members(), max_size=8),
)
chunk_sizes = st.sampled_from([3, 7, 511, 512, 513, 4096, 1 << 20])


# -- 1. ocikit and tarfile read generated archives alike -----------------------------------------


@FUZZ
@given(archive=archives, chunk=chunk_sizes)
def test_reader_matches_tarfile(archive, chunk):
    expected = tarfile_read(archive)
    with no_hang():
        seen = ocikit_read(archive, chunk)
        scanned = ocikit_scan(archive, chunk)
    assert seen == expected
    # the zTOC's driver sees the same members at the same offsets (data located by offset)
    assert [_seen(e, archive[e.offset : e.offset + e.data_size]) for e in scanned] == seen


@FEW
@given(fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]), entries=st.lists(members(), max_size=3),
       size=st.integers(8**11, INT64 >> 1) | st.sampled_from([8**11, 8 << 30, 1 << 40]), chunk=chunk_sizes)
def test_huge_sizes_in_headers(fmt, entries, size, chunk):
    """A last member of more than 8 GiB (a PAX ``size`` record or GNU base-256) whose data is
    absent: both readers see the same header; ocikit then reports the truncation."""
    huge = tarfile.TarInfo("huge-é")
    huge.size = size
    head = write_tar(fmt, entries, end_marker=False) + huge.tobuf(fmt, "utf-8", "surrogateescape")
    expected = []
    with tarfile.open(fileobj=io.BytesIO(head), mode="r:") as tar:
        with contextlib.suppress(tarfile.ReadError):
            while (info := tar.next()) is not None:
                expected.append((info.name, info.size, info.offset_data))
    assert expected[-1] == ("huge-é", size, len(head))
    stream = TarStream(_chunks(head, chunk))
    seen = []
    with pytest.raises(OcikitError, match="truncated"):
        while (entry := stream.next_entry()) is not None:
            seen.append((entry.name.rstrip("/") if entry.kind == DIRECTORY else entry.name, entry.size, entry.offset))
    assert seen == expected
    with pytest.raises(OcikitError, match="truncated"):
        ocikit_scan(head, chunk)




# -- 2. ocikit, tarfile and GNU tar agree on archives GNU tar writes ----------------------------------

_gnu_part = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0\n"), min_size=1, max_size=10),
    st.binary(min_size=1, max_size=6).map(lambda b: os.fsdecode(bytes(c for c in b if c not in b"\0\n/") or b"q")),
    st.builds(lambda c, n: c * n, st.sampled_from(["y", "ö"]), st.integers(60, 120)),
).filter(lambda p: p not in (".", ".."))


@st.composite
def trees(draw):
    """A directory tree to archive: (kind, path parts, content or link target, mode, mtime)."""
    nodes = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["file", "file", "dir", "symlink", "hardlink", "sparse"]))
        parts = draw(st.lists(_gnu_part, min_size=1, max_size=3))
        if kind == "symlink":
            extra = draw(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n"),
                                 min_size=1, max_size=40) | st.just("t" * 150))
        else:
            extra = draw(st.binary(max_size=3000))
        mode = draw(st.sampled_from([0o644, 0o755, 0o600, 0o4755, 0o2750, 0o1777, 0o444]))
        mtime = draw(st.integers(0, (1 << 33) - 1) | st.integers(0, 2_000_000_000).map(lambda s: s + 0.25))
        nodes.append((kind, parts, extra, mode, mtime))
    return nodes


def make_tree(root: str, nodes) -> None:
    files: list[str] = []
    for kind, parts, extra, mode, mtime in nodes:
        path = os.path.join(root, *parts)
        with contextlib.suppress(OSError):  # a part collides with an earlier file, a name is too long
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path):
                continue
            if kind == "dir":
                os.mkdir(path)
            elif kind == "symlink":
                os.symlink(extra, path)
            elif kind == "hardlink" and files:
                os.link(files[len(extra) % len(files)], path)
            else:
                with open(path, "wb") as fh:
                    if kind == "sparse":  # a hole, then data: GNU tar --sparse stores only the data
                        fh.seek(64 << 10)
                    fh.write(extra or b"z")
                files.append(path)
            if kind != "symlink":
                os.chmod(path, mode)
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def gnu_tar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tar", *args], capture_output=True, env={**os.environ, "LC_ALL": "C"}, check=False)


def gnu_listing(archive: str) -> list[tuple[str, str, int]]:
    """``tar -tv``: (name, kind, size) per member, names as raw bytes decoded like ocikit decodes them."""
    listed = gnu_tar("--list", "-v", "--numeric-owner", "--quoting-style=literal", "-f", archive)
    assert listed.returncode == 0, listed.stderr
    kinds = {ord("-"): FILE, ord("d"): DIRECTORY, ord("l"): SYMLINK, ord("h"): HARDLINK}
    out = []
    for line in listed.stdout.split(b"\n")[:-1]:  # no name or target holds a newline
        perms, _owner, size, _date, _time, rest = line.split(None, 5)
        kind = kinds[perms[0]]
        if kind == SYMLINK:
            rest = rest.split(b" -> ", 1)[0]
        elif kind == HARDLINK:
            rest = rest.split(b" link to ", 1)[0]
        name = rest.decode("utf-8", "surrogateescape")
        out.append((name.rstrip("/") if kind == DIRECTORY else name, kind, int(size)))
    return out


@FEW
@given(nodes=trees(), fmt=st.sampled_from(["gnu", "pax", "posix", "ustar", "oldgnu"]), sparse=st.booleans(),
       owner=st.sampled_from(["0:0", "ü-user:12345", "big:4294967295", "huge:3000000000"]))
def test_reader_matches_gnu_tar(nodes, fmt, sparse, owner):
    require_binary("tar")
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "tree")
        os.mkdir(root)
        make_tree(root, nodes)
        path = os.path.join(tmp, "out.tar")
        name, uid = owner.split(":")
        made = gnu_tar(f"--format={fmt}", *(["--sparse"] if sparse and fmt != "ustar" else []), "--sort=name", f"--owner={name}:{uid}",
                       f"--group={name}:{uid}", "-C", root, "-cf", path, ".")
        # USTAR cannot hold long names, long link targets or big ids: GNU tar leaves those out (exit 2)
        assert made.returncode == 0 or (fmt == "ustar" and made.returncode == 2), made.stderr
        listing = gnu_listing(path)
        with open(path, "rb") as fh:
            archive = fh.read()
    with no_hang():
        entries = ocikit_read(archive, 4096)
        sparse = [e.sparse for e in ocikit_scan(archive, 4096)]
    expected = tarfile_read(archive)
    assert len(entries) == len(expected) == len(listing) == len(sparse)
    for seen, theirs, listed, is_sparse in zip(entries, expected, listing, sparse):
        if is_sparse:  # flagged, and refused by every consumer (GNU tar lists the expanded file)
            assert listed[1] == FILE
            continue
        assert seen == theirs
        assert (seen.name, seen.kind, seen.size) == listed

# -- 3. the zTOC lists what the reader reads, and serves each file's bytes ---------------------------


def _toc_view(entry: TarEntry) -> tuple:
    return (entry.name, entry.kind, entry.offset, entry.size, entry.linkname, entry.mode, entry.uid & 0xFFFFFFFF,
            entry.gid & 0xFFFFFFFF, entry.uname, entry.gname, unix_to_rfc3339(entry.mtime, entry.mtime_nanos),
            entry.devmajor, entry.devminor, entry.pax or {})


@FUZZ
@given(archive=archives, span=st.sampled_from([512, 1000, 4096, 1 << 20]), level=st.sampled_from([0, 1, 9]))
def test_ztoc_lists_and_serves_what_the_reader_reads(archive, span, level):
    blob = gzip.compress(archive, compresslevel=level, mtime=0)
    with no_hang():
        ztoc = parse_ztoc(build_ztoc(io.BytesIO(blob), span).to_bytes())  # through SOCI's flatbuffer and back
    scanned = ocikit_scan(archive, 4096)
    listed = [(e.name, e.type, e.offset, e.size, e.linkname, e.mode, e.uid, e.gid, e.uname, e.gname, e.mod_time,
               e.devmajor, e.devminor, e.pax) for e in ztoc.entries]
    assert listed == [_toc_view(e) for e in scanned]
    store = MemoryStore()
    layer = Descriptor.from_bytes("application/vnd.oci.image.layer.v1.tar+gzip", blob)
    store.push(layer, blob)
    got: dict[int, bytearray] = {}
    wants = [Want(e.offset, e.size, got.setdefault(i, bytearray()).extend)
             for i, e in enumerate(ztoc.entries) if e.type == FILE]
    LayerReader(store, layer, ztoc).read(wants)
    files = [e for e in tarfile_read(archive) if e.kind == FILE]
    assert [bytes(got[i]) for i, e in enumerate(ztoc.entries) if e.type == FILE] == [e.data for e in files]


# -- 4. damaged archives: typed errors only, no hang, nothing written outside DEST ------------------

# Few, colliding names and link targets, so entries land on, in and through each other.
# Mostly plain names (an archive stops at its first refused entry), sometimes one that must be refused.
_hostile_part = st.tuples(st.integers(0, 7), st.sampled_from(["a", "b", "c", "é"]),
                          st.sampled_from([".", "..", ".ocikit", "x" * 300])).map(lambda t: t[2] if t[0] == 3 else t[1])
_DEEP = "/".join(["d" * 200] * 25)  # longer than PATH_MAX
_plain_names = st.lists(_hostile_part, min_size=1, max_size=4).map("/".join).map(lambda n: n if n.strip("/") else "a")
# (hypothesis favours the ends of a range and the last branches of one_of: a middle value is rare)
hostile_names = st.tuples(st.integers(0, 15), _plain_names, st.sampled_from(["/a", "/etc/x", "./a/b", "a/", "./", _DEEP, _DEEP + "/a"])).map(
    lambda t: t[2] if t[0] == 7 else t[1])
hostile_targets = hostile_names | st.sampled_from(
    [".", "..", "../..", "/", "/etc", "a/../..", "b/../../x", "", "../" * 1500, _DEEP + "/../" * 26])


@st.composite
def hostile_members(draw):
    kind = draw(st.sampled_from([FILE, FILE, DIRECTORY, DIRECTORY, SYMLINK, SYMLINK, HARDLINK, HARDLINK, FIFO]))
    info = tarfile.TarInfo(draw(hostile_names))
    info.type = _KIND_TYPES[kind]
    info.mode = draw(st.sampled_from([0o644, 0o755, 0o000, 0o500, 0o4755, 0o1777]))
    info.mtime = draw(st.sampled_from([0, 1_700_000_000, -1, 1 << 40]))
    data = b""
    if kind == FILE:
        data = draw(st.sampled_from([b"", b"data", bytes(600)]))
        info.size = len(data)
    elif kind in (SYMLINK, HARDLINK):
        info.linkname = draw(hostile_targets)
    return info, data


hostile_archives = st.builds(write_tar, st.sampled_from(list(FORMATS.values())),
                             st.lists(hostile_members(), min_size=1, max_size=8))

# Values worth planting in a header field (the checksum is then recomputed, so the reader goes on).
_FIELDS = {"name": (0, 100), "mode": (100, 8), "size": (124, 12), "mtime": (136, 12), "type": (156, 1),
           "linkname": (157, 100), "magic": (257, 8), "prefix": (345, 155)}
_PLANTS = st.sampled_from([
    b"", b"\0", b"0", b"7", b"x", b"g", b"L", b"K", b"S", b"D", b"V", b"5", b"2", b"1", b"3", b"6",
    b"ustar\x0000", b"ustar  \0", b"77777777777", b"-1", b"\x80\0\0\0\0\0\0\0\0\0\x10\0", b"\xff" * 12,
    b"\x80" + b"\xff" * 11, b"00000001000", b"00004000000", b"../../../x", b"/abs", b".ocikit/ready.json",
    b"a/" * 50, b"30 path=\xff\xfe\n", b"1000 path=x\n",
]) | st.binary(min_size=1, max_size=12)


def extended_header(kind: bytes, payload: bytes) -> bytes:
    """A PAX (``x``, ``g``) or GNU long-name (``L``) header with its payload and padding."""
    info = tarfile.TarInfo("h")
    info.type, info.size = kind, len(payload)
    return info.tobuf(tarfile.USTAR_FORMAT) + payload + bytes(-len(payload) % 512)


def _fix_checksum(data: bytearray, at: int) -> None:
    block = data[at : at + 512]
    if len(block) < 512:
        return
    block[148:156] = b" " * 8
    data[at + 148 : at + 156] = b"%06o\0 " % sum(block)


@st.composite
def mutated(draw, base=hostile_archives):
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        blocks = max(1, len(data) // 512)
        action = draw(st.sampled_from(["field", "field", "field", "flip", "truncate", "insert", "pax"]))
        if action == "field":
            at = 512 * draw(st.integers(0, blocks - 1))
            start, width = _FIELDS[draw(st.sampled_from(sorted(_FIELDS)))]
            value = draw(_PLANTS)[:width]
            data[at + start : at + start + len(value)] = value
            _fix_checksum(data, at)
        elif action == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif action == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif action == "insert":
            i = 512 * draw(st.integers(0, blocks))
            data[i:i] = draw(st.binary(max_size=600) | st.just(bytes(512)))
        elif action == "pax":  # a PAX header with records of any shape before a member
            kind = draw(st.sampled_from([tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME]))
            payload = draw(st.binary(max_size=80) | st.sampled_from(
                [b"16 path=a/../b\n", b"13 size=-1\n", b"20 mtime=1e9999999\n", b"9 path=\n", b"12 uid=9e9\n"]))
            i = 512 * draw(st.integers(0, blocks))
            data[i:i] = extended_header(kind, payload)
    return bytes(data)


policies = st.sampled_from([
    ExtractPolicy(),
    ExtractPolicy(rootfs=True),
    ExtractPolicy(allow_devices=True, preserve_special_modes=True),
    ExtractPolicy(max_size=100),
    ExtractPolicy(required_prefix="a", strip_prefix=True),
    ExtractPolicy(symlink_roots=("/etc",)),
])


def _outside(root: str, skip: str) -> list[tuple]:
    """Everything under ``root`` but ``skip``: paths, types, sizes, link counts and targets."""
    seen = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(directory, d) != skip]
        for name in dirs + files:
            path = os.path.join(directory, name)
            st_ = os.lstat(path)
            target = os.readlink(path) if os.path.islink(path) else ""
            seen.append((path, st_.st_mode, st_.st_size, st_.st_nlink, st_.st_mtime_ns, target))
    return sorted(seen)


def _links_stay_inside(dest: str, roots: tuple[str, ...] = ()) -> None:
    """Every symlink of an accepted tree resolves inside it, or to nothing (ENOTDIR, ELOOP).

    A link to a view's own root (``roots``) names where the tree is meant to live: relocation
    rewrites it to DEST, so it is checked as relocation would leave it.
    """
    real = os.path.realpath(dest)
    for directory, dirs, files in os.walk(dest):
        for name in dirs + files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                continue
            target = os.readlink(path)
            root = next((r for r in roots if target == r or target.startswith(r.rstrip("/") + "/")), None)
            if root is not None:
                os.unlink(path)
                os.symlink(dest + target[len(root.rstrip("/")):], path)
            try:
                resolved = os.path.realpath(path, strict=True)
            except FileNotFoundError:
                resolved = os.path.realpath(path)
            except OSError:
                continue  # ENOTDIR, ELOOP: the kernel resolves it to nothing
            assert resolved == real or resolved.startswith(real + "/"), f"{path} -> {os.readlink(path)} escapes"


def pull_stream(feed, policy: ExtractPolicy, threads: int):
    """Extract as a full pull does: tar stream, safe extractor, then the finished-tree checks."""

    def run(dest: str) -> None:
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with WriterPool(threads) as pool:
                outcome = SafeExtractor(fd, policy, pool, "fuzz").extract(TarStream(feed))
        finally:
            os.close(fd)
        refuse_deferred_links(outcome)  # one layer: nothing below it to link to
        stats = ExtractStats()
        stats.take(outcome)
        finish_tree(dest, stats, policy)

    return run


def pull_gzip_layer(blob: bytes, policy: ExtractPolicy):
    """Extract a gzip blob as a pull does: decompressed by a producer thread, then as above."""

    def run(dest: str) -> None:
        with LayerStream(io.BytesIO(blob), "fuzz", chunk_size=700) as stream:
            pull_stream(stream.next_chunk, policy, 0)(dest)

    return run


def pull_include(blob: bytes, policy: ExtractPolicy, patterns: list[str]):
    """``pull --include``: the layer's zTOC built in memory, the matching entries read through it."""
    store = MemoryStore()
    ensure_empty_blob(store)
    layer = Descriptor.from_bytes("application/vnd.oci.image.layer.v1.tar+gzip", blob)
    store.push(layer, blob)
    image = push_manifest(store, build_manifest([layer], artifact_type="application/vnd.fuzz"))

    def run(dest: str) -> None:
        extract_matching(store, image, patterns, dest, rules=policy)

    return run


def check_extraction(run, policy: ExtractPolicy) -> None:
    """``run(dest)`` fails only with a typed error, never hangs, leaves everything beside ``dest``
    as it was, and when it succeeds every symlink of the tree resolves inside it."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        dest = os.path.join(tmp, "dest")
        os.mkdir(dest)
        os.mkdir(os.path.join(tmp, "sibling"))
        with open(os.path.join(tmp, "sibling", "keep"), "w") as fh:
            fh.write("user data")
        before = _outside(tmp, dest)
        accepted = False
        try:
            with no_hang():
                run(dest)
            accepted = True
        except LocalIOError as exc:
            # the archive is at fault, not the local disk (exit codes and messages say so); creating
            # a device node unprivileged is the one local limit an archive can run into
            assert policy.allow_devices and "needs privileges" in str(exc), exc
        except OcikitError:
            pass
        try:
            assert _outside(tmp, dest) == before
            if accepted and not policy.rootfs:  # a rootfs's absolute links resolve under a chroot
                _links_stay_inside(dest, policy.symlink_roots)
        finally:
            remove_tree(dest)


@FUZZ
@given(archive=mutated())
# the data ends in the padding of a PAX header: the end of the archive for Go and both drivers
@example(archive=extended_header(tarfile.XHDTYPE, b"11 path=\xc3\xa9\n")[: 512 + 11])
@example(archive=extended_header(tarfile.XGLTYPE, b"11 path=\xc3\xa9\n")[: 512 + 12])
def test_damaged_archives_give_typed_errors_when_read(archive):
    """Both drivers of the one reader fail with a typed error, and on the same archives; what
    they accept, they read alike (extraction and the zTOC never see different trees)."""
    outcomes = []
    with no_hang():
        for read, chunk in ((ocikit_read, 700), (ocikit_scan, 700), (ocikit_scan, 3)):
            try:
                entries = read(archive, chunk)
                outcomes.append([_seen(e, archive[e.offset : e.offset + e.data_size]) if isinstance(e, TarEntry)
                                 else e for e in entries])
            except OcikitError as exc:
                outcomes.append(type(exc))
        with contextlib.suppress(OcikitError):
            build_ztoc(io.BytesIO(gzip.compress(archive, mtime=0)), 1024)
    assert outcomes[0] == outcomes[1] == outcomes[2]


@FUZZ
@given(archive=mutated() | hostile_archives, policy=policies, threads=st.sampled_from([0, 2]))
# a directory name longer than NAME_MAX is the archive's fault, not a local I/O error
@example(archive=write_tar(tarfile.GNU_FORMAT, [member("x" * 300 + "/f")]), policy=ExtractPolicy(), threads=0)
def test_damaged_archives_never_escape_the_destination(archive, policy, threads):
    check_extraction(pull_stream(_chunks(archive, 1000), policy, threads), policy)


@FEW
@given(archive=mutated() | hostile_archives, policy=policies,
       patterns=st.sampled_from([["*"], ["a"], ["/a/b", "c"], ["é/*"]]))
def test_damaged_archives_never_escape_through_the_ztoc(archive, policy, patterns):
    """The same through ``pull --include``: zTOC built in memory, entries read span by span."""
    check_extraction(pull_include(gzip.compress(archive, mtime=0), policy, patterns), policy)


@FEW
@given(archive=hostile_archives, damage=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), min_size=1,
                                                max_size=3), cut=st.integers(0, 1 << 16) | st.none())
def test_damaged_gzip_layers_give_typed_errors(archive, damage, cut):
    blob = bytearray(gzip.compress(archive, mtime=0))
    for where, xor in damage:
        blob[where % len(blob)] ^= xor
    if cut is not None:
        del blob[cut % len(blob) :]
    with no_hang(), contextlib.suppress(OcikitError):
        build_ztoc(io.BytesIO(bytes(blob)), 1024)
    check_extraction(pull_gzip_layer(bytes(blob), ExtractPolicy()), ExtractPolicy())


# -- a full pull and pull --include write the same tree ---------------------------------------------


@st.composite
def benign_archives(draw):
    """Archives every path accepts: unique names, parents listed first, links that stay inside."""
    used: dict[str, str] = {}
    entries = []
    files: list[str] = []
    for _ in range(draw(st.integers(1, 10))):
        parts = draw(st.lists(st.sampled_from(["a", "b", "c", "é", "d" * 120]), min_size=1, max_size=3))
        path = "/".join(parts)
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if path in used or any(used.get(p, DIRECTORY) != DIRECTORY for p in parents):
            continue
        for parent in parents:
            if parent not in used:
                used[parent] = DIRECTORY
                entries.append(_benign(draw, parent, DIRECTORY))
        kind = draw(st.sampled_from([FILE, FILE, DIRECTORY, SYMLINK, HARDLINK] if files else [FILE, DIRECTORY, SYMLINK]))
        used[path] = kind
        link = draw(st.sampled_from(files)) if kind == HARDLINK else "../" * len(parents) + draw(
            st.sampled_from(["a", "b/c", "é", "missing"]))
        entries.append(_benign(draw, path, kind, link))
        if kind == FILE:
            files.append(path)
    return write_tar(draw(st.sampled_from(list(FORMATS.values()))), entries)


def _benign(draw, path: str, kind: str, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info, data = member(path, kind, draw(st.binary(max_size=3000)) if kind == FILE else b"",
                        link if kind in (SYMLINK, HARDLINK) else "")
    info.mode = draw(st.sampled_from([0o644, 0o755, 0o600, 0o700, 0o4755, 0o1777]))
    info.mtime = draw(st.integers(0, 1 << 33) | st.just(1_700_000_000))
    return info, data


def _tree(root: str) -> dict[str, tuple]:
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st_ = os.lstat(path)
            if os.path.islink(path):
                content: object = os.readlink(path)
            elif os.path.isdir(path):
                content = None
            else:
                with open(path, "rb") as fh:
                    content = fh.read()
            out[os.path.relpath(path, root)] = (st_.st_mode, st_.st_mtime_ns, st_.st_nlink, content)
    return out


@FEW
@given(archive=benign_archives(), rootfs=st.booleans())
def test_pull_and_include_write_the_same_tree(archive, rootfs):
    """Both paths write the same tree, or both refuse the archive for the same reason."""
    policy = ExtractPolicy(rootfs=rootfs)
    outcomes: list = []
    for run in (pull_stream(_chunks(archive, 1000), policy, 2), pull_include(gzip.compress(archive), policy, ["*"])):
        with tempfile.TemporaryDirectory() as dest:
            try:
                with no_hang():
                    run(dest)
            except UnsafeContentError as exc:  # e.g. a hard link to a name a later entry replaced
                outcomes.append(exc.rule.split(" (")[0])
                continue
            outcomes.append(_tree(dest))
            remove_tree(dest)
    if all(isinstance(outcome, str) for outcome in outcomes):
        assert outcomes[0] == outcomes[1]
        return
    listed = {e.name.rstrip("/") for e in ocikit_scan(archive, 512)}
    # A parent the archive only implies is made when it is needed: its time is the clock's.
    for tree in outcomes:
        assert isinstance(tree, dict), f"only one path refused the archive: {outcomes}"
        for name, (mode, _mtime, links, content) in list(tree.items()):
            if name not in listed:
                tree[name] = (mode, None, links, content)
    assert outcomes[0] == outcomes[1]
    assert listed <= set(outcomes[0])


@pytest.mark.parametrize("include", [(), ("*",)])
def test_a_hardlink_to_nothing_is_refused_by_a_pull_and_by_include(tmp_path, include):
    """Found by the fuzzer: a single-layer image's hard link to a missing file vanished from a full
    pull (exit 0, the file missing) and was a 'not found' (exit 3) under --include. Both refuse it now."""
    layout = str(tmp_path / "l")
    push_tar(layout, TarBuilder().file("a").hardlink("h", "missing").bytes(), kind="gzip")
    with pytest.raises(UnsafeContentError, match="hardlink target missing"):
        ocikit.pull(f"oci:{layout}:v1", str(tmp_path / "d"), PullPolicy(include=include))
    assert not os.path.lexists(tmp_path / "d")


@pytest.mark.parametrize("include", [(), ("*",)])
def test_a_file_replacing_an_implied_directory_of_a_lower_layer(tmp_path, include):
    """Found by comparing full pulls with --include on generated images: layer 1 lists only ``c/a/``
    (so ``c`` is implied), layer 2 puts a file at ``c``. A merge leaves the file; the zTOC tree kept
    ``c/a`` too, and --include failed with 'provided by more than one layer'."""
    layers = [write_tar(tarfile.PAX_FORMAT, [member("c/a/", DIRECTORY)]),
              write_tar(tarfile.PAX_FORMAT, [member("c", FILE, b"file")])]
    layout = str(tmp_path / "l")
    config = {"rootfs": {"type": "layers", "diff_ids": [digest_bytes(t) for t in layers]}}
    push_layers(layout, [(t, "gzip", {}) for t in layers], config=(mt.OCI_CONFIG, canonical_json(config)))
    dest = tmp_path / "d"
    ocikit.pull(f"oci:{layout}:v1", str(dest), PullPolicy(include=include))
    assert sorted(os.listdir(dest)) == [".ocikit", "c"] and (dest / "c").read_bytes() == b"file"
