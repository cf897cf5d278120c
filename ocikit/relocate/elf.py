"""ELF: rewrite DT_RPATH / DT_RUNPATH and PT_INTERP in place, without patchelf.

The dynamic loader finds a view's libraries through the RPATH/RUNPATH strings in ``.dynstr``.
Each search-path entry under an old prefix is rewritten to ``$ORIGIN/<relative path>`` (the
loader expands ``$ORIGIN`` to the directory of the object, so the tree can move again), or to
the new absolute path; entries elsewhere are kept, duplicates dropped. The new list is written
over the old string and NUL-filled, so no offset in the file changes. When even the shortest
form does not fit the old string's bytes, planning reports the misfit and nothing is written.

``.dynstr`` may share tails between strings (GNU ld merges suffixes), so before rewriting a
search path the strings that other dynamic entries, symbols and version records reference are
collected; if one of them starts inside the search path, the structural rewrite is skipped and
the bytes get the tail-preserving same-length treatment of :mod:`.binary` instead.

``PT_INTERP`` is rewritten only when it points into an old prefix (a view that ships its own
loader); ``$ORIGIN`` means nothing there, so the new absolute path must fit.

The parser reads just what it needs with :mod:`struct` (headers, program headers, section
headers, the dynamic array): fast on large libraries, and no third-party import.
"""

from __future__ import annotations

import posixpath
import struct
from dataclasses import dataclass, field

from .edits import Edit, StringProblem, apply_edits
from .prefixes import PrefixMap, normalize_path

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_STRTAB, DT_STRSZ, DT_RPATH, DT_RUNPATH = 0, 5, 10, 15, 29
# Dynamic tags whose value is an offset into the dynamic string table.
_STRING_TAGS = frozenset({1, 14, 15, 29, 0x6FFFFEFA, 0x6FFFFEFB, 0x6FFFFEFC, 0x7FFFFFFD, 0x7FFFFFFF})
SHT_NOBITS, SHT_DYNSYM = 8, 11
SHT_GNU_VERDEF, SHT_GNU_VERNEED = 0x6FFFFFFD, 0x6FFFFFFE
SHF_ALLOC = 0x2
_SEARCH_PATH_TAGS = {DT_RPATH: "RPATH", DT_RUNPATH: "RUNPATH"}


@dataclass(frozen=True)
class Segment:
    type: int
    offset: int
    vaddr: int
    filesz: int


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass
class ElfImage:
    data: bytes
    is64: bool
    endian: str  # struct byte-order character
    segments: list[Segment]
    sections: list[Section]
    dynamic: list[tuple[int, int]] = field(default_factory=list)

    def unpack(self, fmt: str, offset: int) -> tuple:
        return struct.unpack_from(self.endian + fmt, self.data, offset)

    def vaddr_to_offset(self, vaddr: int) -> int | None:
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                return seg.offset + (vaddr - seg.vaddr)
        return None

    def dynamic_value(self, tag: int) -> int | None:
        return next((value for t, value in self.dynamic if t == tag), None)

    def unloaded_section_at(self, offset: int) -> str | None:
        """The name of the section holding ``offset`` if the loader never maps it (debug info)."""
        if any(seg.type == PT_LOAD and seg.offset <= offset < seg.offset + seg.filesz for seg in self.segments):
            return None
        for sec in self.sections:
            if sec.type != SHT_NOBITS and sec.offset <= offset < sec.offset + sec.size:
                return None if sec.flags & SHF_ALLOC else (sec.name or "unloaded section")
        return None


def parse_elf(data: bytes) -> ElfImage | None:
    """Parse the parts of an ELF file relocation needs; ``None`` if it is truncated or malformed."""
    if len(data) < 52 or not data.startswith(b"\x7fELF") or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    is64, endian = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        header = struct.unpack_from(endian + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"), data, 16)
        _, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx = header
        image = ElfImage(data, is64, endian, [], [])
        image.sections = _read_sections(image, shoff, shentsize, shnum, shstrndx)
        if phnum == 0xFFFF and image.sections:  # PN_XNUM: the count lives in section 0
            phnum = image.sections[0].info
        image.segments = _read_segments(image, phoff, phentsize, phnum)
        image.dynamic = _read_dynamic(image)
    except (struct.error, IndexError, ValueError):
        return None
    return image


def _read_segments(image: ElfImage, phoff: int, phentsize: int, phnum: int) -> list[Segment]:
    segments = []
    for i in range(phnum if phoff else 0):
        at = phoff + i * phentsize
        if image.is64:
            p_type, _, offset, vaddr, _, filesz, _, _ = image.unpack("IIQQQQQQ", at)
        else:
            p_type, offset, vaddr, _, filesz, _, _, _ = image.unpack("IIIIIIII", at)
        if offset + filesz > len(image.data):
            raise ValueError("segment beyond end of file")
        segments.append(Segment(p_type, offset, vaddr, filesz))
    return segments


def _read_sections(image: ElfImage, shoff: int, shentsize: int, shnum: int, shstrndx: int) -> list[Section]:
    if not shoff:
        return []
    raw = []
    fmt = "IIQQQQIIQQ" if image.is64 else "IIIIIIIIII"
    first = image.unpack(fmt, shoff)
    count = shnum or first[5]  # SHN_UNDEF count: the real one is section 0's sh_size
    if shstrndx == 0xFFFF:  # SHN_XINDEX
        shstrndx = first[6]
    for i in range(count):
        name, s_type, flags, _, offset, size, link, info, _, entsize = image.unpack(fmt, shoff + i * shentsize)
        raw.append((name, s_type, flags, offset, size, link, info, entsize))
    names_at = raw[shstrndx][3] if shstrndx < len(raw) else None
    sections = []
    for name, s_type, flags, offset, size, link, info, entsize in raw:
        label = _c_string(image.data, names_at + name) if names_at is not None else ""
        sections.append(Section(label, s_type, flags, offset, size, link, info, entsize))
    return sections


def _read_dynamic(image: ElfImage) -> list[tuple[int, int]]:
    segment = next((s for s in image.segments if s.type == PT_DYNAMIC), None)
    if segment is None:
        return []
    fmt, size = ("qQ", 16) if image.is64 else ("iI", 8)
    entries = []
    for at in range(segment.offset, segment.offset + segment.filesz - size + 1, size):
        tag, value = image.unpack(fmt, at)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    return entries


def _c_string(data: bytes, offset: int) -> str:
    end = data.find(b"\x00", offset)
    return data[offset : end if end >= 0 else len(data)].decode("utf-8", "replace")


@dataclass(frozen=True)
class DynamicString:
    where: str  # "RPATH", "RUNPATH" or "PT_INTERP"
    offset: int  # file offset of its first byte
    value: bytes
    room: int  # bytes a replacement may use, NUL excluded


def dynamic_strings(image: ElfImage) -> list[DynamicString]:
    """The search-path strings and the interpreter path, with where they sit in the file."""
    found: list[DynamicString] = []
    strtab_vaddr = image.dynamic_value(DT_STRTAB)
    strtab = image.vaddr_to_offset(strtab_vaddr) if strtab_vaddr is not None else None
    strsz = image.dynamic_value(DT_STRSZ) or 0
    seen: set[int] = set()
    for tag, value in image.dynamic:
        if tag not in _SEARCH_PATH_TAGS or strtab is None or value >= strsz or value in seen:
            continue
        seen.add(value)
        start = strtab + value
        end = image.data.find(b"\x00", start, strtab + strsz)
        if end < 0:
            continue
        found.append(DynamicString(_SEARCH_PATH_TAGS[tag], start, image.data[start:end], end - start))
    for seg in image.segments:
        if seg.type == PT_INTERP and seg.filesz > 1:
            region = image.data[seg.offset : seg.offset + seg.filesz]
            interp = region.split(b"\x00", 1)[0]
            found.append(DynamicString("PT_INTERP", seg.offset, interp, seg.filesz - 1))
    return found


def dynstr_references(image: ElfImage) -> set[int] | None:
    """File offsets of every string other ELF structures point at in ``.dynstr``.

    ``None`` when the section headers needed to find symbols and version records are missing.
    """
    strtab_vaddr = image.dynamic_value(DT_STRTAB)
    strtab = image.vaddr_to_offset(strtab_vaddr) if strtab_vaddr is not None else None
    if strtab is None or not image.sections:
        return None
    refs = {strtab + value for tag, value in image.dynamic if tag in _STRING_TAGS}
    for sec in image.sections:
        linked = image.sections[sec.link] if sec.link < len(image.sections) else None
        if linked is None or linked.offset != strtab:
            continue
        if sec.type == SHT_DYNSYM:
            step = sec.entsize or (24 if image.is64 else 16)
            refs.update(strtab + image.unpack("I", at)[0] for at in range(sec.offset, sec.offset + sec.size, step))
        elif sec.type == SHT_GNU_VERNEED:
            refs.update(strtab + name for name in _verneed_names(image, sec))
        elif sec.type == SHT_GNU_VERDEF:
            refs.update(strtab + name for name in _verdef_names(image, sec))
    return refs


def _verneed_names(image: ElfImage, sec: Section) -> list[int]:
    names, at = [], sec.offset
    for _ in range(sec.info):
        _, count, file_name, aux, following = image.unpack("HHIII", at)
        names.append(file_name)
        aux_at = at + aux
        for _ in range(count):
            _, _, _, name, aux_next = image.unpack("IHHII", aux_at)
            names.append(name)
            aux_at += aux_next
        if not following:
            break
        at += following
    return names


def _verdef_names(image: ElfImage, sec: Section) -> list[int]:
    names, at = [], sec.offset
    for _ in range(sec.info):
        _, _, _, count, _, aux, following = image.unpack("HHHHIII", at)
        aux_at = at + aux
        for _ in range(count):
            name, aux_next = image.unpack("II", aux_at)
            names.append(name)
            aux_at += aux_next
        if not following:
            break
        at += following
    return names


@dataclass
class DynamicPlan:
    edits: list[Edit] = field(default_factory=list)
    handled: list[tuple[int, int]] = field(default_factory=list)  # byte ranges the binary pass must skip
    problems: list[StringProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_new_length: int | None = None

    def cap(self, value: int) -> None:
        self.max_new_length = value if self.max_new_length is None else min(self.max_new_length, value)


def plan_dynamic_edits(image: ElfImage, relpath: str, prefixes: PrefixMap, relative: bool) -> DynamicPlan:
    """Plan the rewrite of RPATH/RUNPATH entries and PT_INTERP under the old prefixes."""
    plan = DynamicPlan()
    references: list[set[int] | None] = []  # computed on first need: it walks every symbol
    origin_dir = posixpath.dirname(prefixes.new_location(relpath))
    for string in dynamic_strings(image):
        if string.where == "PT_INTERP":
            _plan_interp(image, string, prefixes, plan)
            continue
        entries = _map_entries(string.value, prefixes, origin_dir if relative else None)
        if entries is None:
            continue
        if not references:
            references.append(dynstr_references(image))
        refs = references[0]
        if refs is None or any(string.offset < r < string.offset + string.room for r in refs):
            plan.notes.append(f"{string.where} shares bytes with other dynamic strings; rewritten in place instead")
            continue
        _plan_search_path(string, entries, prefixes, plan)
    return plan


# One search-path entry: its candidate spellings in order of preference (kept entries have one).
_Entry = tuple[bytes, ...]


def _map_entries(value: bytes, prefixes: PrefixMap, origin_dir: str | None) -> list[_Entry] | None:
    """Candidates per entry, or ``None`` when no entry lies under an old prefix."""
    entries: list[_Entry] = []
    mapped_any = False
    for raw in value.split(b":"):
        text = raw.decode("utf-8", "surrogateescape")
        target = prefixes.map_path(text) if text.startswith("/") else None
        if target is None:
            entries.append((raw,))
            continue
        mapped_any = True
        absolute = target.encode("utf-8", "surrogateescape")
        if origin_dir is not None and prefixes.inside_new_root(target):
            entries.append((origin_relative(target, origin_dir), absolute))
        else:
            entries.append((absolute,))
    return entries if mapped_any else None


def origin_relative(target: str, origin_dir: str) -> bytes:
    """``$ORIGIN`` followed by the path from ``origin_dir`` to ``target``."""
    rel = posixpath.relpath(normalize_path(target), origin_dir)
    return ("$ORIGIN" if rel == "." else f"$ORIGIN/{rel}").encode("utf-8", "surrogateescape")


def _compose(choices: list[bytes]) -> bytes:
    unique: list[bytes] = []
    for entry in choices:
        if entry not in unique:  # the loader searches in order; a repeat adds nothing
            unique.append(entry)
    return b":".join(unique)


def _plan_search_path(string: DynamicString, entries: list[_Entry], prefixes: PrefixMap, plan: DynamicPlan) -> None:
    preferred = _compose([candidates[0] for candidates in entries])
    shortest = _compose([min(candidates, key=len) for candidates in entries])
    chosen = preferred if len(preferred) <= string.room else shortest
    _cap_by_absolute_entries(chosen, string.room, prefixes, plan)
    plan.handled.append((string.offset, string.offset + string.room + 1))
    if len(chosen) > string.room:
        plan.problems.append(
            StringProblem(string.offset, string.value, string.room, len(chosen), "rpath", string.where)
        )
        return
    padded = _keep_room(chosen, string.room, prefixes.new_root.encode())
    if padded != string.value:
        plan.edits.append(Edit(string.offset, string.room, padded))


def _keep_room(chosen: bytes, room: int, new_root: bytes) -> bytes:
    """``chosen`` grown to ``room`` bytes: the first entry under the new root left-padded with ``/``
    (as spack pads binary strings; the loader reads ``///opt/v`` as ``/opt/v``), so relocating the
    tree again may use the room; NULs after the string when no entry lies under the new root."""
    spare = room - len(chosen)
    entries = chosen.split(b":")
    for i, entry in enumerate(entries):
        if spare and (entry == new_root or entry.startswith(new_root + b"/")):
            entries[i] = b"/" * spare + entry
            return b":".join(entries)
    return chosen + b"\x00" * spare


def _cap_by_absolute_entries(chosen: bytes, room: int, prefixes: PrefixMap, plan: DynamicPlan) -> None:
    """Record the longest new root that lets absolute entries under it still fit."""
    new_root = prefixes.new_root.encode()
    absolute = [e for e in chosen.split(b":") if e == new_root or e.startswith(new_root + b"/")]
    if absolute:
        fixed = len(chosen) - len(absolute) * len(new_root)
        plan.cap((room - fixed) // len(absolute))


def _plan_interp(image: ElfImage, string: DynamicString, prefixes: PrefixMap, plan: DynamicPlan) -> None:
    text = string.value.decode("utf-8", "surrogateescape")
    target = prefixes.map_path(text) if text.startswith("/") else None
    if target is None:
        return
    new = target.encode("utf-8", "surrogateescape")
    _cap_by_absolute_entries(new, string.room, prefixes, plan)
    plan.handled.append((string.offset, string.offset + string.room + 1))
    if len(new) > string.room:
        plan.problems.append(StringProblem(string.offset, string.value, string.room, len(new), "interp", "PT_INTERP"))
        return
    replacement = new + b"\x00" * (string.room - len(new))
    if replacement != image.data[string.offset : string.offset + string.room]:
        plan.edits.append(Edit(string.offset, string.room, replacement))


def make_rpaths_relative(data: bytes, relpath: str, root: str) -> bytes:
    """Push-time rewrite: RPATH/RUNPATH entries under ``root`` become ``$ORIGIN``-relative.

    ``relpath`` is the file's path relative to ``root``. Entries elsewhere stay; an entry whose
    relative form would not fit keeps its absolute form. Returns ``data`` itself when nothing
    changes (not an ELF file, no search path under ``root``).
    """
    image = parse_elf(data)
    if image is None:
        return data
    plan = plan_dynamic_edits(image, relpath, PrefixMap.identity(root), relative=True)
    return apply_edits(data, plan.edits) if plan.edits else data
