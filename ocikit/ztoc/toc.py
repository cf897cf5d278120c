"""The zTOC's table of contents: one :class:`FileMetadata` per tar member.

The entries must equal what SOCI's ``toc_builder.go`` records through Go's ``archive/tar``
reader. ocikit's one tar reader (:mod:`ocikit.formats.tar.reader`) reads by Go's rules, so
an entry here is a :class:`~ocikit.formats.tar.reader.TarEntry` in the zTOC's field names:
the data offset is the position right after the member's last header block, the time is
Go's RFC 3339 text, and every PAX record is kept. Members SOCI cannot represent are
refused as SOCI refuses them (sparse files, unknown types); PAX global headers, which Go
applies to nothing, are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnsupportedError
from ..formats.tar.reader import GLOBAL, TarEntry
from .gotime import unix_to_rfc3339

_TIMES: dict[tuple[int, int], str] = {}


def _mod_time(seconds: int, nanos: int) -> str:
    # Files of one install share a handful of times: formatting each once saves most of the work.
    key = (seconds, nanos)
    text = _TIMES.get(key)
    if text is None:
        if len(_TIMES) > 100_000:
            _TIMES.clear()
        text = _TIMES[key] = unix_to_rfc3339(seconds, nanos)
    return text

@dataclass(slots=True)
class FileMetadata:
    """One TOC entry (the fields of SOCI's ``FileMetadata`` table)."""

    name: str
    type: str
    offset: int  # uncompressed offset of the file data
    size: int
    linkname: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mod_time: str = ""  # RFC 3339 text exactly as stored
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.offset + self.size

    def xattrs(self) -> dict[str, str]:
        """Extended attributes (the ``SCHILY.xattr.`` PAX records, prefix removed)."""
        prefix = "SCHILY.xattr."
        return {k[len(prefix) :]: v for k, v in self.pax.items() if k.startswith(prefix)}


def toc_entry(entry: TarEntry) -> FileMetadata | None:
    """The zTOC entry of a tar member (None for a PAX global header, which describes no file)."""
    if entry.kind == GLOBAL:
        return None
    if entry.sparse:
        raise UnsupportedError(f"sparse tar entries are not supported ({entry.name!r})")
    if not entry.kind:
        raise UnsupportedError(f"unsupported tar entry type {entry.raw_type!r} for {entry.name!r}")
    return FileMetadata(
        name=entry.name,
        type=entry.kind,
        offset=entry.offset,
        size=entry.size,
        linkname=entry.linkname,
        mode=entry.mode,
        uid=entry.uid & 0xFFFFFFFF,
        gid=entry.gid & 0xFFFFFFFF,
        uname=entry.uname,
        gname=entry.gname,
        mod_time=_mod_time(entry.mtime, entry.mtime_nanos),
        devmajor=entry.devmajor,
        devminor=entry.devminor,
        pax=entry.pax or {},
    )


class TocCollector:
    """Collects the zTOC entries of a :class:`~ocikit.formats.tar.reader.TarScanner`'s members."""

    def __init__(self) -> None:
        self.entries: list[FileMetadata] = []

    def __call__(self, entry: TarEntry) -> None:
        metadata = toc_entry(entry)
        if metadata is not None:
            self.entries.append(metadata)
