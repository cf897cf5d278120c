"""Relocate a directory tree: find what mentions the old prefix, plan everything, then write.

``relocate_tree`` is what ``ocikit pull`` runs on a pulled view and what ``ocikit relocate``
runs on a tree already on disk. With a list of files (recorded at push time) only those are
read, so the work follows the number of files that embed the prefix, not the size of the view;
without one, every regular file and symlink under the tree is examined.
"""

from __future__ import annotations

import mmap
import os
import posixpath
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ..errors import LocalIOError, NotFoundError, UnsafeContentError
from ..progress import NULL_PROGRESS, Progress
from .apply import SymlinkPlan, apply_plans
from .plan import FilePlan, mentions, plan_bytes, relocation_error, smallest
from .prefixes import PrefixMap, relative_link
from .shebang import LongShebang

_MMAP_THRESHOLD = 16 << 20  # search big files through a mapping instead of reading them


@dataclass
class RelocationReport:
    """What a relocation did (or, with ``dry_run``, would do)."""

    root: str
    old: str
    new: str
    dry_run: bool
    files_examined: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # kind -> files mentioning an old prefix
    files_changed: list[str] = field(default_factory=list)
    replacements: int = 0
    symlinks_changed: list[str] = field(default_factory=list)
    long_shebangs: list[LongShebang] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    max_new_length: int | None = None  # longest destination the binary strings allow

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "old": self.old,
            "new": self.new,
            "dryRun": self.dry_run,
            "filesExamined": self.files_examined,
            "kinds": dict(self.kinds),
            "filesChanged": list(self.files_changed),
            "replacements": self.replacements,
            "symlinksChanged": list(self.symlinks_changed),
            "longShebangs": [s.to_dict() for s in self.long_shebangs],
            "warnings": list(self.warnings),
            "maxNewLength": self.max_new_length,
        }


def relocate_tree(
    root_dir: str,
    old: str,
    new: str,
    files: Iterable[str] | None = None,
    *,
    extra_prefixes: Mapping[str, str] | None = None,
    relative_rpaths: bool = True,
    dry_run: bool = False,
    progress: Progress | None = None,
    original_root: str | None = None,
) -> RelocationReport:
    """Rewrite the tree at ``root_dir`` so that what referred to ``old`` refers to ``new``.

    ``new`` is where the tree's top directory will be when it runs (usually ``root_dir``
    itself). ``files``: paths relative to ``root_dir`` known to mention ``old`` (regular files
    or symlinks); ``None`` scans the whole tree. ``extra_prefixes`` maps further old prefixes
    to new ones. ``relative_rpaths`` rewrites search-path entries inside the tree as
    ``$ORIGIN``-relative. Raises :class:`~ocikit.errors.RelocationError` before writing
    anything when a binary string cannot take the new prefix. ``original_root``: the path the
    tree was built at when ``old`` is a placeholder (used in that error's advice only).
    """
    progress = progress or NULL_PROGRESS
    prefixes = PrefixMap.build(old, new, extra_prefixes)
    root = os.path.abspath(root_dir)
    if not os.path.isdir(root):
        raise NotFoundError(f"{root_dir} is not a directory")
    report = RelocationReport(root=root, old=prefixes.old_root, new=prefixes.new_root, dry_run=dry_run)
    if prefixes.is_noop:
        return report
    listed = None if files is None else list(files)
    entries = _listed_entries(root, listed, report) if listed is not None else _walk(root)
    total = len(listed) if listed is not None else None
    plans, links = _plan_tree(root, entries, prefixes, relative_rpaths, report, progress, total)
    if any(plan.problems for plan in plans):
        raise relocation_error(prefixes, plans, original_root)
    _summarize(plans, links, report)
    if not dry_run:
        apply_plans(root, [p for p in plans if p.edits], links, progress)
    return report


def _plan_tree(
    root: str,
    entries: Iterable[tuple[str, bool]],
    prefixes: PrefixMap,
    relative_rpaths: bool,
    report: RelocationReport,
    progress: Progress,
    total: int | None,
) -> tuple[list[FilePlan], list[SymlinkPlan]]:
    plans: list[FilePlan] = []
    links: list[SymlinkPlan] = []
    progress.start("relocate-plan", "planning relocation", total=total, unit="files")
    for relpath, is_link in entries:
        report.files_examined += 1
        progress.advance("relocate-plan", 1)
        if is_link:
            link = _plan_symlink(root, relpath, prefixes)
            if link is not None:
                links.append(link)
            continue
        loaded = _read_if_mentions(os.path.join(root, relpath), prefixes)
        if loaded is None:
            continue
        data, info = loaded
        plan = plan_bytes(data, relpath, prefixes, relative_rpaths=relative_rpaths)
        plan.size, plan.mtime_ns = info.st_size, info.st_mtime_ns
        plans.append(plan)
    progress.finish("relocate-plan")
    return plans, links


def _summarize(plans: list[FilePlan], links: list[SymlinkPlan], report: RelocationReport) -> None:
    report.kinds = dict(Counter(plan.kind.value for plan in plans))
    report.files_changed = sorted(plan.path for plan in plans if plan.edits)
    report.replacements = sum(len(plan.edits) for plan in plans)
    report.symlinks_changed = sorted(link.path for link in links)
    report.long_shebangs = [plan.shebang for plan in plans if plan.shebang is not None]
    report.warnings.extend(warning for plan in plans for warning in plan.warnings)
    report.max_new_length = smallest(plan.max_new_length for plan in plans)


def _read_if_mentions(path: str, prefixes: PrefixMap) -> tuple[bytes, os.stat_result] | None:
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_size == 0:
                return None
            if info.st_size > _MMAP_THRESHOLD:
                with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    head = mapped[:2]
                    if not any(mapped.find(p) >= 0 for p in prefixes.old_prefixes) and head not in (
                        b"\xff\xfe",
                        b"\xfe\xff",
                    ):
                        return None
            data = handle.read()
    except OSError as exc:
        raise LocalIOError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return (data, info) if mentions(data, prefixes) else None


def _plan_symlink(root: str, relpath: str, prefixes: PrefixMap) -> SymlinkPlan | None:
    """Absolute targets under an old prefix point to the new place; relative when inside the tree."""
    try:
        target = os.readlink(os.path.join(root, relpath))
    except OSError as exc:
        raise LocalIOError(f"cannot read the symlink {relpath}: {exc.strerror or exc}") from exc
    mapped = relocated_link_target(relpath, target, prefixes)
    return SymlinkPlan(relpath, target, mapped) if mapped is not None else None


def relocated_link_target(relpath: str, target: str, prefixes: PrefixMap) -> str | None:
    """The new target of the symlink at ``relpath`` (None: unchanged). Absolute targets under an
    old prefix point to the new place, relative to the link when inside the tree."""
    if not target.startswith("/"):
        return None
    mapped = prefixes.map_path(target)
    if mapped is None:
        return None
    if prefixes.inside_new_root(mapped):
        mapped = relative_link(mapped, posixpath.dirname(prefixes.new_location(relpath)))
    return mapped if mapped != target else None


def _walk(root: str) -> Iterator[tuple[str, bool]]:
    """Every regular file and symlink under ``root`` as ``(relative path, is_symlink)``; no link is followed."""
    pending = [""]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(os.path.join(root, directory)) as listing:
                children = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            raise LocalIOError(f"cannot list {os.path.join(root, directory)}: {exc.strerror or exc}") from exc
        for entry in children:
            relpath = posixpath.join(directory, entry.name) if directory else entry.name
            if entry.is_symlink():
                yield relpath, True
            elif entry.is_dir(follow_symlinks=False):
                pending.append(relpath)
            elif entry.is_file(follow_symlinks=False):
                yield relpath, False


def _listed_entries(root: str, listed: list[str], report: RelocationReport) -> Iterator[tuple[str, bool]]:
    """The listed paths that exist, checked to stay inside ``root`` (no ``..``, no symlinked parent)."""
    safe_dirs: set[str] = {""}
    for raw in listed:
        relpath = posixpath.normpath(raw)
        if raw.startswith("/") or relpath == ".." or relpath.startswith("../"):
            raise UnsafeContentError(raw, "relocation list entries must be relative paths inside the tree")
        if not _parent_is_real_directory(root, posixpath.dirname(relpath), safe_dirs):
            raise UnsafeContentError(raw, "a directory on its path is a symlink or not a directory")
        full = os.path.join(root, relpath)
        try:
            info = os.lstat(full)
        except FileNotFoundError:
            report.warnings.append(f"{relpath}: listed for relocation but absent; skipped")
            continue
        if stat.S_ISLNK(info.st_mode):
            yield relpath, True
        elif stat.S_ISREG(info.st_mode):
            yield relpath, False
        else:
            report.warnings.append(f"{relpath}: listed for relocation but not a regular file or symlink; skipped")


def _parent_is_real_directory(root: str, rel_dir: str, safe: set[str]) -> bool:
    """Whether every component of ``rel_dir`` is a directory, not a symlink (one lstat per directory)."""
    if rel_dir in safe:
        return True
    if not _parent_is_real_directory(root, posixpath.dirname(rel_dir), safe):
        return False
    try:
        mode = os.lstat(os.path.join(root, rel_dir)).st_mode
    except FileNotFoundError:
        return True  # nothing there to follow; the entry itself will be reported absent
    if not stat.S_ISDIR(mode):
        return False
    safe.add(rel_dir)
    return True
