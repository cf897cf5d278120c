"""The zTOC model and its two serializations.

A :class:`Ztoc` is a layer's table of contents (:class:`~.toc.FileMetadata` per tar
entry) plus what is needed to start reading at span boundaries and to verify what is
read (one sha256 digest per compressed span). Two encodings exist:

* gzip and uncompressed tar layers: SOCI's FlatBuffers ``Ztoc`` (``ztoc/fbs/ztoc.fbs``,
  version ``0.9``), written in the exact call order of soci-snapshotter's
  ``ztoc_marshaler.go`` so the bytes — and the digest — equal what SOCI produces;
* zstd layers: ocikit's JSON document ``application/vnd.ocikit.ztoc.zstd.v1+json``
  (``schemas/ocikit.ztoc.zstd.v1.schema.json``), whose spans are the layer's zstd frames.

:func:`parse_ztoc` reads either and validates the span bookkeeping, so a corrupted zTOC
fails here with :class:`~ocikit.errors.InvalidContentError` rather than during a read.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InvalidContentError
from ..formats.zstd_seekable import Frame
from .flatbuf import INT64, OFFSET, UINT32, Builder, Table, string_at_target, table_rows, tables_at
from .toc import FileMetadata

VERSION_09 = "0.9"
ZSTD_ZTOC_VERSION = "1"
ZSTD_ZTOC_MEDIA_TYPE = "application/vnd.ocikit.ztoc.zstd.v1+json"
GZIP, UNCOMPRESSED, ZSTD = "gzip", "uncompressed", "zstd"
_ALGORITHMS = {GZIP: 1, UNCOMPRESSED: 2}
_ALGORITHM_NAMES = {v: k for k, v in _ALGORITHMS.items()}
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# FileMetadata's slots in ztoc.fbs: name type offset size linkname mode uid gid uname gname modTime devmajor devminor xattrs
_METADATA = (OFFSET, OFFSET, INT64, INT64, OFFSET, INT64, UINT32, UINT32, OFFSET, OFFSET, OFFSET, INT64, INT64, OFFSET)
_NAME, _TYPE, _LINK, _UNAME, _GNAME, _MOD_TIME, _XATTRS = 0, 1, 4, 8, 9, 10, 13


class SpanIndex(Protocol):
    """Where spans start and end, and how to decode them (gzip, tar or zstd)."""

    span_size: int
    compressed_size: int
    uncompressed_size: int

    @property
    def span_count(self) -> int: ...

    def span_of(self, offset: int) -> int: ...

    def compressed_range(self, span: int) -> tuple[int, int]: ...

    def uncompressed_start(self, span: int) -> int: ...

    def decoder(self, span: int) -> "SpanDecoder": ...


class SpanDecoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...

    def close(self) -> None: ...


@dataclass
class Ztoc:
    """A layer's zTOC. ``checkpoints`` (gzip/tar) or ``frames`` (zstd) locate the spans."""

    entries: list[FileMetadata]
    compression: str
    compressed_archive_size: int
    uncompressed_archive_size: int
    span_digests: list[str]
    span_size: int
    checkpoints: bytes = b""
    frames: list[Frame] = field(default_factory=list)
    version: str = VERSION_09
    build_tool_identifier: str = ""

    @property
    def max_span_id(self) -> int:
        return len(self.span_digests) - 1

    @property
    def media_type(self) -> str:
        """The media type of the serialized blob (SOCI uses application/octet-stream)."""
        return ZSTD_ZTOC_MEDIA_TYPE if self.compression == ZSTD else "application/octet-stream"

    def to_bytes(self) -> bytes:
        return _zstd_to_json(self) if self.compression == ZSTD else _to_flatbuffer(self)

    def spans(self) -> SpanIndex:
        """The span geometry of the layer this zTOC describes."""
        if self.compression == GZIP:
            from .gzip_index import GzipSpans

            return GzipSpans(self.checkpoints, self.compressed_archive_size, self.uncompressed_archive_size)
        if self.compression == UNCOMPRESSED:
            from .tar_zinfo import TarSpans

            return TarSpans(self.checkpoints, self.compressed_archive_size, self.uncompressed_archive_size)
        from ..formats.zstd_seekable import FrameSpans

        return FrameSpans(self.frames, self.compressed_archive_size, self.uncompressed_archive_size, self.span_size)


# -- SOCI FlatBuffers --------------------------------------------------------------------


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _to_flatbuffer(ztoc: Ztoc, max_span_id: int | None = None) -> bytes:
    """Serialize in ``ztoc_marshaler.go``'s order: strings, TOC (last entry first), zinfo, root.

    ``max_span_id`` overrides the count derived from the digests (SOCI's own unit test
    writes a zTOC with no digests and ``MaxSpanID`` 3).
    """
    b = Builder()
    version = b.create_string(ztoc.version)
    build_tool = b.create_string(ztoc.build_tool_identifier)
    offsets = [0] * len(ztoc.entries)
    for i in range(len(ztoc.entries) - 1, -1, -1):
        offsets[i] = _metadata(b, ztoc.entries[i])
    metadata = b.create_offset_vector(offsets)
    b.start_table(1)
    b.add_offset(0, metadata)
    toc = b.end_table()
    checkpoints = b.create_byte_vector(ztoc.checkpoints)
    digests = b.create_offset_vector([b.create_string(d) for d in ztoc.span_digests])
    b.start_table(4)
    b.add_int32(1, ztoc.max_span_id if max_span_id is None else max_span_id)
    b.add_offset(2, digests)
    b.add_offset(3, checkpoints)
    b.add_int8(0, _ALGORITHMS[ztoc.compression], default=1)
    info = b.end_table()
    b.start_table(6)
    b.add_offset(0, version)
    b.add_offset(1, build_tool)
    b.add_offset(4, toc)
    b.add_int64(2, ztoc.compressed_archive_size)
    b.add_int64(3, ztoc.uncompressed_archive_size)
    b.add_offset(5, info)
    return b.finish(b.end_table())


def _metadata(b: Builder, e: FileMetadata) -> int:
    name, kind, link, uname, gname, mod_time = b.create_strings(
        [_encode(e.name), e.type.encode(), _encode(e.linkname), _encode(e.uname), _encode(e.gname), e.mod_time.encode()]
    )
    xattrs = []
    for key in sorted(e.pax, key=_encode):
        k, v = b.create_strings([_encode(key), _encode(e.pax[key])])
        xattrs.append(b.table(2, ((0, OFFSET, k), (1, OFFSET, v))))
    xattr_vector = b.create_offset_vector(xattrs)
    return b.table(
        14,
        (
            (0, OFFSET, name),
            (1, OFFSET, kind),
            (2, INT64, e.offset),
            (3, INT64, e.size),
            (4, OFFSET, link),
            (5, INT64, e.mode),
            (6, UINT32, e.uid),
            (7, UINT32, e.gid),
            (8, OFFSET, uname),
            (9, OFFSET, gname),
            (10, OFFSET, mod_time),
            (11, INT64, e.devmajor),
            (12, INT64, e.devminor),
            (13, OFFSET, xattr_vector),
        ),
    )


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _from_flatbuffer(data: bytes) -> Ztoc:
    root = Table.root(bytes(data))
    toc, info = root.table(4), root.table(5)
    if toc is None or info is None:
        raise InvalidContentError("zTOC has no TOC or no compression info")
    algorithm = info.int8(0, 1)
    if algorithm not in _ALGORITHM_NAMES:
        raise InvalidContentError(f"zTOC compression algorithm {algorithm} is unknown")
    entries = _entries(toc)
    ztoc = Ztoc(
        entries=entries,
        compression=_ALGORITHM_NAMES[algorithm],
        compressed_archive_size=root.int64(2),
        uncompressed_archive_size=root.int64(3),
        span_digests=info.strings(2),
        span_size=0,
        checkpoints=info.bytes_(3),
        version=root.string(0),
        build_tool_identifier=root.string(1),
    )
    if info.int32(1) != ztoc.max_span_id:
        raise InvalidContentError("zTOC max_span_id does not match the number of span digests")
    return ztoc


def _entries(toc: Table) -> list[FileMetadata]:
    """The TOC's entries, read row by row (the hot loop of mounting or extracting from a zTOC).

    Names are decoded per entry; the few distinct types, owners and times are decoded once
    and shared, which also keeps 60 000 entries small in memory.
    """
    buf = toc.buf
    assert isinstance(buf, bytes)  # _from_flatbuffer reads bytes, never a view
    shared: dict[bytes, str] = {}

    def text(target: int) -> str:
        return _decode(string_at_target(buf, target)) if target else ""

    def common(target: int) -> str:
        raw = string_at_target(buf, target) if target else b""
        known = shared.get(raw)
        if known is None:
            known = shared[raw] = _decode(raw)
        return known

    entries = []
    for pos, v, f in table_rows(toc, 0, _METADATA):
        pax = _pax(tables_at(buf, pos + f[_XATTRS] + v[_XATTRS])) if v[_XATTRS] else {}
        entries.append(FileMetadata(
            text(pos + f[_NAME] + v[_NAME] if v[_NAME] else 0),
            common(pos + f[_TYPE] + v[_TYPE] if v[_TYPE] else 0),
            v[2], v[3],
            text(pos + f[_LINK] + v[_LINK] if v[_LINK] else 0),
            v[5], v[6], v[7],
            common(pos + f[_UNAME] + v[_UNAME] if v[_UNAME] else 0),
            common(pos + f[_GNAME] + v[_GNAME] if v[_GNAME] else 0),
            common(pos + f[_MOD_TIME] + v[_MOD_TIME] if v[_MOD_TIME] else 0),
            v[11], v[12], pax,
        ))
    return entries


def _pax(xattrs: list[Table]) -> dict[str, str]:
    """An entry's xattrs (``Xattr`` tables: key, value): the PAX records SOCI keeps."""
    return {_decode(x.bytes_(0)): _decode(x.bytes_(1)) for x in xattrs}


# -- ocikit's zstd JSON document ---------------------------------------------------------

_ENTRY_KEYS = ("linkname", "mode", "uid", "gid", "uname", "gname", "modTime", "devmajor", "devminor")


def _zstd_to_json(ztoc: Ztoc) -> bytes:
    frames = [
        {
            "compressedOffset": f.compressed_offset,
            "compressedSize": f.compressed_size,
            "uncompressedOffset": f.uncompressed_offset,
            "uncompressedSize": f.uncompressed_size,
            "digest": d,
        }
        for f, d in zip(ztoc.frames, ztoc.span_digests)
    ]
    document = {
        "mediaType": ZSTD_ZTOC_MEDIA_TYPE,
        "version": ZSTD_ZTOC_VERSION,
        "buildToolIdentifier": ztoc.build_tool_identifier,
        "compressedArchiveSize": ztoc.compressed_archive_size,
        "uncompressedArchiveSize": ztoc.uncompressed_archive_size,
        "spanSize": ztoc.span_size,
        "frames": frames,
        "toc": [_entry_json(e) for e in ztoc.entries],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode()


def _entry_json(e: FileMetadata) -> dict[str, Any]:
    out: dict[str, Any] = {"name": e.name, "type": e.type, "offset": e.offset, "size": e.size}
    values = (e.linkname, e.mode, e.uid, e.gid, e.uname, e.gname, e.mod_time, e.devmajor, e.devminor)
    out.update((k, v) for k, v in zip(_ENTRY_KEYS, values) if v)
    if e.pax:
        out["pax"] = dict(sorted(e.pax.items()))
    return out


def _zstd_from_json(data: bytes) -> Ztoc:
    try:
        doc = json.loads(data.decode("utf-8", "surrogateescape"))
        if doc.get("mediaType") != ZSTD_ZTOC_MEDIA_TYPE or doc.get("version") != ZSTD_ZTOC_VERSION:
            raise InvalidContentError("not an ocikit zstd zTOC (mediaType/version)")
        frames, digests = [], []
        for f in doc["frames"]:
            frames.append(
                Frame(
                    int(f["compressedOffset"]),
                    int(f["compressedSize"]),
                    int(f["uncompressedOffset"]),
                    int(f["uncompressedSize"]),
                )
            )
            digests.append(str(f["digest"]))
        entries = [_entry_from_json(e) for e in doc["toc"]]
        return Ztoc(
            entries=entries,
            compression=ZSTD,
            compressed_archive_size=int(doc["compressedArchiveSize"]),
            uncompressed_archive_size=int(doc["uncompressedArchiveSize"]),
            span_digests=digests,
            span_size=int(doc["spanSize"]),
            frames=frames,
            version=ZSTD_ZTOC_VERSION,
            build_tool_identifier=str(doc.get("buildToolIdentifier", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidContentError(f"corrupted zstd zTOC: {exc}") from None


def _entry_from_json(e: dict[str, Any]) -> FileMetadata:
    return FileMetadata(
        name=str(e["name"]),
        type=str(e["type"]),
        offset=int(e["offset"]),
        size=int(e["size"]),
        linkname=str(e.get("linkname", "")),
        mode=int(e.get("mode", 0)),
        uid=int(e.get("uid", 0)),
        gid=int(e.get("gid", 0)),
        uname=str(e.get("uname", "")),
        gname=str(e.get("gname", "")),
        mod_time=str(e.get("modTime", "")),
        devmajor=int(e.get("devmajor", 0)),
        devminor=int(e.get("devminor", 0)),
        pax={str(k): str(v) for k, v in (e.get("pax") or {}).items()},
    )


# -- parsing and validation --------------------------------------------------------------


def parse_ztoc(data: bytes) -> Ztoc:
    """Parse a SOCI or ocikit-zstd zTOC and check its internal consistency."""
    if data[:1] == b"{":
        ztoc = _zstd_from_json(data)
    else:
        try:
            ztoc = _from_flatbuffer(data)
        except (struct.error, IndexError, ValueError) as exc:
            if isinstance(exc, InvalidContentError):
                raise
            raise InvalidContentError(f"corrupted zTOC: {exc}") from None
    validate(ztoc)
    return ztoc


def validate(ztoc: Ztoc) -> None:
    """Span count, digests and entry offsets must agree; raise InvalidContentError if not."""
    if ztoc.compressed_archive_size < 0 or ztoc.uncompressed_archive_size < 0:
        raise InvalidContentError("zTOC archive sizes are negative")
    for digest in ztoc.span_digests:
        if not _DIGEST.fullmatch(digest):
            raise InvalidContentError(f"zTOC span digest {digest[:80]!r} is malformed")
    spans = ztoc.spans()
    ztoc.span_size = spans.span_size
    if spans.span_count != len(ztoc.span_digests):
        raise InvalidContentError(
            f"zTOC has {len(ztoc.span_digests)} span digests for {spans.span_count} spans"
        )
    for e in ztoc.entries:
        if e.offset < 0 or e.size < 0 or (e.type == "reg" and e.end > ztoc.uncompressed_archive_size):
            raise InvalidContentError(f"zTOC entry {e.name!r} lies outside the archive")
