"""Plan the relocation of one file: classify it, then let the matching rewriter propose edits.

A plan is small (edits and problems, never the new bytes), so a whole tree can be planned —
and every misfit found — before the first byte is written. :func:`relocate_bytes` is the same
logic for one in-memory file, for callers that stream files (push-view).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import RelocationError
from .binary import SUFFIX_SAFETY, plan_binary_edits
from .edits import Edit, StringProblem, apply_edits
from .elf import parse_elf, plan_dynamic_edits
from .filekind import FileKind, classify
from .prefixes import PrefixMap
from .shebang import LongShebang, check_shebang
from .text import plan_text_edits, utf16_contains


@dataclass
class FilePlan:
    path: str  # relative to the tree top
    kind: FileKind
    detail: str
    edits: list[Edit] = field(default_factory=list)
    problems: list[StringProblem] = field(default_factory=list)  # misfits that block the relocation
    warnings: list[str] = field(default_factory=list)
    shebang: LongShebang | None = None
    max_new_length: int | None = None
    size: int = 0  # the file's size and mtime when planned, checked again before writing
    mtime_ns: int = 0


def mentions(data: bytes, prefixes: PrefixMap) -> bool:
    """Whether ``data`` contains an old prefix (UTF-8 bytes, or UTF-16 after a byte-order mark)."""
    if prefixes.occurs_in(data):
        return True
    return data[:2] in (b"\xff\xfe", b"\xfe\xff") and utf16_contains(data, prefixes)


def plan_bytes(data: bytes, relpath: str, prefixes: PrefixMap, *, relative_rpaths: bool = True) -> FilePlan:
    """The edits that relocate ``data`` (the content of ``relpath``) and what does not fit."""
    found = classify(data)
    plan = FilePlan(relpath, found.kind, found.detail)
    if found.kind is FileKind.TEXT:
        plan.edits = plan_text_edits(data, prefixes, found.detail)
        plan.shebang = check_shebang(_first_line_after(data, plan.edits), relpath)
    elif found.kind is FileKind.ELF:
        _plan_elf(data, relpath, prefixes, relative_rpaths, plan)
    elif found.kind is FileKind.BINARY:
        soft = (lambda _offset: "bytecode cache") if found.detail == "pyc" else None
        _plan_binary(data, prefixes, plan, soft_at=soft)
    elif mentions(data, prefixes):
        plan.warnings.append(
            f"{relpath}: old prefix inside {found.detail} data (compressed or checksummed); left unchanged"
        )
    return plan


def _plan_elf(data: bytes, relpath: str, prefixes: PrefixMap, relative: bool, plan: FilePlan) -> None:
    image = parse_elf(data)
    if image is None:
        plan.warnings.append(f"{relpath}: ELF headers unreadable; only same-length string replacement applied")
        _plan_binary(data, prefixes, plan)
        return
    dynamic = plan_dynamic_edits(image, relpath, prefixes, relative)
    plan.edits.extend(dynamic.edits)
    plan.problems.extend(dynamic.problems)
    plan.warnings.extend(f"{relpath}: {note}" for note in dynamic.notes)
    plan.max_new_length = dynamic.max_new_length
    _plan_binary(data, prefixes, plan, skip=dynamic.handled, soft_at=image.unloaded_section_at)


def _plan_binary(data: bytes, prefixes: PrefixMap, plan: FilePlan, *, skip=(), soft_at=None) -> None:
    edits, problems, cap = plan_binary_edits(data, prefixes, skip=skip, soft_at=soft_at)
    plan.edits.extend(edits)
    for problem in problems:
        if problem.soft:
            plan.warnings.append(f"{plan.path}: {problem.describe()}; left unchanged (not read at run time)")
        else:
            plan.problems.append(problem)
    if cap is not None:
        plan.max_new_length = cap if plan.max_new_length is None else min(plan.max_new_length, cap)


def _first_line_after(data: bytes, edits: list[Edit]) -> bytes:
    if not data.startswith(b"#!"):
        return b""
    newline = data.find(b"\n")
    end = newline if newline >= 0 else len(data)
    return apply_edits(data[:end], [e for e in edits if e.end <= end])


def smallest(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def relocation_error(prefixes: PrefixMap, plans: list[FilePlan], original_root: str | None = None) -> RelocationError:
    """One error naming the files that do not fit, the room they have, and the fixes.

    ``original_root`` is where the tree was built, when ``old`` is a placeholder standing in for it.
    """
    failing = [plan for plan in plans if plan.problems]
    problems = [(plan.path, problem) for plan in failing for problem in plan.problems]
    shown = "; ".join(f"{path}: {problem.describe()}" for path, problem in problems[:3])
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    cap = smallest(plan.max_new_length for plan in plans)
    old, new = prefixes.old_root, prefixes.new_root
    if all(problem.reason == "shrink" for _, problem in problems):
        fix = (
            f"choose a destination at least {SUFFIX_SAFETY + 1} characters shorter than the {len(old)} of {old}, "
            f"or one ending in the same {SUFFIX_SAFETY} characters"
        )
    else:
        limit = f"at most {cap} characters (this one has {len(new)})" if cap is not None else "shorter"
        fix = (
            f"use a destination of {limit}, or mount the tree at {original_root or old} so nothing needs relocating, "
            "or rebuild with spack's config:install_tree:padded_length to leave room"
        )
    message = (
        f"cannot relocate {original_root or old} to {new}: {len(problems)} string(s) in {len(failing)} file(s) "
        "do not fit "
        f"({shown}{more}). Nothing was changed. Fix: {fix}."
    )
    details = tuple(
        {"path": path, "offset": p.offset, "room": p.room, "needed": p.needed, "reason": p.reason, "where": p.where}
        for path, p in problems
    )
    return RelocationError(message, problems=details, max_new_length=cap)


def relocate_bytes(
    data: bytes,
    relpath: str,
    old: str,
    new: str,
    *,
    extra_prefixes: Mapping[str, str] | None = None,
    relative_rpaths: bool = True,
) -> bytes:
    """Relocate one file's content in memory; raises :class:`RelocationError` on a misfit.

    ``relpath`` is the file's path relative to the tree top (it anchors ``$ORIGIN``).
    Returns ``data`` unchanged when it does not mention an old prefix.
    """
    prefixes = PrefixMap.build(old, new, extra_prefixes)
    if prefixes.is_noop or not mentions(data, prefixes):
        return data
    plan = plan_bytes(data, relpath, prefixes, relative_rpaths=relative_rpaths)
    if plan.problems:
        raise relocation_error(prefixes, [plan])
    return apply_edits(data, plan.edits) if plan.edits else data
