"""Understand a spack copy view (or any directory) before it is packed.

A spack environment view at ``/opt/view`` is, in spack v0.17 through v1.1, a symlink to
the real root ``/opt/._view/<hash>``, and the relocated files inside name the real root,
never ``/opt/view``. So the scan records both: ``view_path`` (what users see) and
``real_root`` (what the files contain). ``root=`` overrides the real root for a view that
was copied elsewhere (a fixture unpacked in a temporary directory).

Every file is mapped to the package that owns it from the metadata spack copies into the
view: ``<base>/.spack/<pkg>/spec.json`` (name, version, hash; read by :mod:`.specfile`) and
``install_manifest.json`` (the package's files under its original install prefix; ``<base>``
is the projection directory, ``""`` without projections). Files no package owns, files two
packages claim, and all directories belong to the view itself. A directory without spack metadata is one
package that owns everything.

The scan also enforces the input rules: regular files, directories and symlinks only;
UTF-8 names; readable files; symlinks that stay inside the view (absolute ones are
rewritten relative) unless ``allow_external_symlinks``.
"""

from __future__ import annotations

import json
import operator
import os
import posixpath
import stat as stat_module
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidContentError, LocalIOError, NotFoundError, UnsafeContentError, UnsupportedError
from ..formats.tar.writer import DIRECTORY, FILE, SYMLINK
from .specfile import METADATA_DIR, read_spec_file, spec_file_in

# What the scan saw of a path: an ``os.stat_result`` from ``lstat`` (kept as is: building
# a copy per file was a measurable share of scanning a 60,000-file tree). The reader checks
# inode, size and mtime again before and after reading a file.
FileStat = os.stat_result


def mtime_of(st: FileStat) -> int:
    """Whole seconds, rounded down (also for times before 1970)."""
    return st.st_mtime_ns // 1_000_000_000


@dataclass(slots=True)
class ViewEntry:
    """One path of the view. ``owner`` is a package key, or None for the view's own entries."""

    rel: str
    kind: str
    stat: FileStat
    link: str = ""
    external: bool = False
    owner: str | None = None
    mtime: int = 0


@dataclass(frozen=True)
class SpackPackage:
    name: str
    version: str
    hash: str
    prefix: str = ""  # the original install prefix (from install_manifest.json), "" if unknown
    base: str = ""  # the view-relative directory holding its .spack/<name>/ ("" = view root)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}/{self.hash}" if self.hash else self.name


@dataclass
class View:
    source: str  # the directory that is read (absolute)
    view_path: str
    real_root: str
    name: str
    kind: str  # "spack" or "directory"
    root_stat: FileStat
    packages: list[SpackPackage] = field(default_factory=list)
    entries: list[ViewEntry] = field(default_factory=list)
    store_root: str | None = None
    spack_version: str | None = None

    @property
    def external_symlinks(self) -> list[str]:
        return [e.rel for e in self.entries if e.external]

    def path_of(self, rel: str) -> str:
        return os.path.join(self.source, rel)


def scan_view(
    view_dir: str,
    *,
    root: str | None = None,
    view_path: str | None = None,
    name: str | None = None,
    allow_external_symlinks: bool = False,
) -> View:
    """Walk ``view_dir`` and return what push-view needs to pack it (see the module docstring)."""
    source = os.path.abspath(view_dir)
    if not os.path.lexists(source):
        raise NotFoundError(f"view directory {view_dir} does not exist")
    if not os.path.isdir(source):
        raise InvalidContentError(f"{view_dir} is not a directory")
    real_root = _normalise_root(root) if root else os.path.realpath(source)
    shown_path = _normalise_root(view_path) if view_path else (real_root if root else source)
    view = View(
        source=source,
        view_path=shown_path,
        real_root=real_root,
        name=name or posixpath.basename(shown_path.rstrip("/")) or "view",
        kind="directory",
        root_stat=os.stat(source),
        entries=_walk(os.path.realpath(source)),
    )
    view.source = os.path.realpath(source)
    inside = {real_root, shown_path, source, view.source}
    for entry in view.entries:
        if entry.kind == SYMLINK:
            _classify_link(view, entry, inside, allow_external_symlinks)
    _assign_owners(view)
    return view


def _normalise_root(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidContentError(f"{path!r} must be an absolute path")
    return posixpath.normpath(path)


# -- walking ----------------------------------------------------------------------------


def _display(path: str) -> str:
    """A path for messages: undecodable bytes shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


_by_name = operator.attrgetter("name")


def _listing(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=_by_name)
    except OSError as exc:
        raise LocalIOError(f"cannot read directory {_display(directory)}: {exc.strerror}") from None


def _walk(source: str) -> list[ViewEntry]:
    """Every path below ``source`` in component-wise sorted order (parents first)."""
    entries: list[ViewEntry] = []
    stack = [(iter(_listing(source)), "")]
    while stack:
        items, prefix = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        rel = prefix + item.name
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidContentError(f"{_display(item.path)}: file name is not valid UTF-8") from None
        try:
            st = item.stat(follow_symlinks=False)
        except OSError as exc:
            raise LocalIOError(f"cannot stat {_display(item.path)}: {exc.strerror}") from None
        mode = st.st_mode
        if stat_module.S_ISDIR(mode):
            entries.append(ViewEntry(rel, DIRECTORY, st))
            stack.append((iter(_listing(item.path)), rel + "/"))
        elif stat_module.S_ISREG(mode):
            entries.append(ViewEntry(rel, FILE, st))
        elif stat_module.S_ISLNK(mode):
            entries.append(ViewEntry(rel, SYMLINK, st, link=_readlink(item.path)))
        else:
            raise UnsupportedError(
                f"{_display(item.path)}: is a {_special_kind(mode)}; "
                "push-view packs regular files, directories and symlinks only"
            )
    return entries


def _readlink(path: str) -> str:
    try:
        target = os.readlink(path)
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidContentError(f"{_display(path)}: symlink target is not valid UTF-8") from None
    except OSError as exc:
        raise LocalIOError(f"cannot read symlink {_display(path)}: {exc.strerror}") from None
    return target


def _special_kind(mode: int) -> str:
    if stat_module.S_ISFIFO(mode):
        return "fifo"
    if stat_module.S_ISSOCK(mode):
        return "socket"
    if stat_module.S_ISCHR(mode):
        return "character device"
    if stat_module.S_ISBLK(mode):
        return "block device"
    return "special file"


# -- symlinks ---------------------------------------------------------------------------


def _classify_link(view: View, entry: ViewEntry, inside: set[str], allow_external: bool) -> None:
    """Rewrite absolute in-view targets relative; flag (or refuse) targets outside the view."""
    target = entry.link
    parent = posixpath.dirname(entry.rel) or "."
    if target.startswith("/"):
        norm = posixpath.normpath(target)
        for root in sorted(inside, key=len, reverse=True):
            if norm == root or norm.startswith(root.rstrip("/") + "/"):
                within = norm[len(root) :].lstrip("/") or "."
                entry.link = posixpath.relpath(within, parent)
                return
    else:
        resolved = posixpath.normpath(posixpath.join(parent, target))
        if resolved != ".." and not resolved.startswith("../"):
            return
    if not allow_external:
        raise UnsafeContentError(
            view.path_of(entry.rel), f"symlink to {target} points outside the view ({_external_link_hint(view, target)})"
        )
    entry.external = True


def _external_link_hint(view: View, target: str) -> str:
    """``--root`` when the view is a copy of the tree the link names, else ``--allow-external-symlinks``.

    A view copied elsewhere (``/tmp/x/opt/._view/<hash>``) still links to its original root
    (``/opt/._view/<hash>/bin/...``): if the source path ends with a prefix of the target and the
    rest of the target exists in the copy, that prefix is the real root to pass.
    """
    parts = [p for p in target.split("/") if p]
    for n in range(len(parts), 0, -1):
        candidate = "/" + "/".join(parts[:n])
        copied = view.source != candidate and view.source.endswith(candidate)
        if copied and os.path.lexists(os.path.join(view.source, *parts[n:])):
            return f"the view is a copy of {candidate}: pass --root {candidate}"
    return "pass --allow-external-symlinks to keep it"


# -- ownership --------------------------------------------------------------------------


@dataclass
class _Claim:
    owners: set[str] = field(default_factory=set)
    mtime: int | None = None


def _assign_owners(view: View) -> None:
    files = {e.rel for e in view.entries if e.kind == FILE}
    packages = _find_packages(view, files)
    if not packages:
        package = SpackPackage(view.name, "", "")
        view.packages = [package]
        for entry in view.entries:
            entry.owner = package.key
            entry.mtime = mtime_of(entry.stat)
        return
    view.kind = "spack"
    claims: dict[str, _Claim] = {}
    reference_time: dict[str, int | None] = {}
    for package, manifest in packages:
        reference_time[package.key] = _claim_files(claims, package, manifest)
        # The copied metadata (.spack/<name>/...) belongs to its package even where the
        # manifest does not list it (install_manifest.json does not list itself).
        meta = posixpath.join(package.base, METADATA_DIR, package.name) + "/"
        for entry in view.entries:
            if entry.kind != DIRECTORY and entry.rel.startswith(meta):
                claims.setdefault(entry.rel, _Claim()).owners.add(package.key)
    view.packages = sorted((p for p, _ in packages), key=lambda p: (p.name, p.version, p.hash))
    view.store_root = _store_root(view.packages)
    for entry in view.entries:
        entry.mtime = mtime_of(entry.stat)
        claim = claims.get(entry.rel)
        if entry.kind == DIRECTORY or claim is None or len(claim.owners) != 1:
            continue
        entry.owner = next(iter(claim.owners))
        # Spack copies files into a view at view-creation time, so their mtimes differ
        # between two environments holding the same package. The install tree's mtimes
        # (recorded in install_manifest.json) are the same for every view of that package
        # hash, which keeps its layer shareable; .pyc caches stay valid since they were
        # compiled against those same source mtimes.
        fallback = reference_time.get(entry.owner)
        if claim.mtime is not None:
            entry.mtime = claim.mtime
        elif fallback is not None:
            entry.mtime = fallback


def _find_packages(view: View, files: set[str]) -> list[tuple[SpackPackage, dict[str, Any]]]:
    found = []
    for entry in view.entries:
        if entry.kind != DIRECTORY or posixpath.basename(entry.rel) != METADATA_DIR:
            continue
        base = posixpath.dirname(entry.rel)
        for child in view.entries:
            if child.kind != DIRECTORY or posixpath.dirname(child.rel) != entry.rel:
                continue
            if spec_file_in(child.rel) in files:
                found.append(_read_package(view, base, child.rel, files))
    return found


def _read_json(view: View, rel: str) -> Any:
    try:
        with open(view.path_of(rel), "rb") as fh:
            return json.load(fh)
    except OSError as exc:
        raise LocalIOError(f"cannot read {view.path_of(rel)}: {exc.strerror}") from None
    except ValueError as exc:
        raise InvalidContentError(f"{view.path_of(rel)} is not valid JSON: {exc}") from None


def _read_package(view: View, base: str, meta_dir: str, files: set[str]) -> tuple[SpackPackage, dict[str, Any]]:
    dirname = posixpath.basename(meta_dir)
    spec_path = view.path_of(spec_file_in(meta_dir))
    node = read_spec_file(spec_path).node(dirname)
    if node is None:
        raise InvalidContentError(f"{spec_path} has no node named {dirname!r}")
    manifest: dict[str, Any] = {}
    if f"{meta_dir}/install_manifest.json" in files:
        loaded = _read_json(view, f"{meta_dir}/install_manifest.json")
        manifest = loaded if isinstance(loaded, dict) else {}
    if view.spack_version is None and f"{meta_dir}/install_environment.json" in files:
        env = _read_json(view, f"{meta_dir}/install_environment.json")
        if isinstance(env, dict) and env.get("spack_version"):
            view.spack_version = str(env["spack_version"])
    package = SpackPackage(
        name=dirname,
        version=node.version,
        hash=node.hash,
        prefix=_prefix_of(manifest),
        base=base,
    )
    return package, manifest


def _prefix_of(manifest: dict[str, Any]) -> str:
    """The install prefix: the parent of its ``.spack`` directory, else the common path."""
    for path in manifest:
        if path.endswith("/" + METADATA_DIR):
            return posixpath.dirname(path)
    paths = [p for p in manifest if p.startswith("/")]
    return posixpath.commonpath(paths) if paths else ""


def _claim_files(claims: dict[str, _Claim], package: SpackPackage, manifest: dict[str, Any]) -> int | None:
    """Record which view paths ``package`` owns; return its newest install mtime (or None)."""
    base = package.base + "/" if package.base else ""
    meta = f"{base}{METADATA_DIR}/{package.name}"
    newest: int | None = None
    prefix = package.prefix.rstrip("/") + "/"
    for path, info in manifest.items():
        if not package.prefix or not path.startswith(prefix):
            continue
        inner = path[len(prefix) :]
        if inner == METADATA_DIR or inner.startswith(METADATA_DIR + "/"):
            rel = meta + inner[len(METADATA_DIR) :]
        else:
            rel = base + inner
        claim = claims.setdefault(rel, _Claim())
        claim.owners.add(package.key)
        when = info.get("time") if isinstance(info, dict) else None
        if isinstance(when, (int, float)):
            claim.mtime = int(when // 1)
            newest = claim.mtime if newest is None else max(newest, claim.mtime)
    return newest


def _store_root(packages: list[SpackPackage]) -> str | None:
    """The spack install tree root, when every prefix follows a known spack layout.

    spack 1.x: ``<root>/<platform>-<target>/<name>-<version>-<hash>``;
    spack 0.x: ``<root>/<platform>-<os>-<target>/<compiler>-<version>/<name>-<version>-<hash>``.
    """
    roots = set()
    for package in packages:
        if not package.prefix or not package.hash:
            return None
        leaf = posixpath.basename(package.prefix)
        if not leaf.startswith(f"{package.name}-") or package.hash not in leaf:
            return None
        parent = posixpath.dirname(package.prefix)
        grandparent = posixpath.dirname(parent)
        if posixpath.basename(parent).startswith("linux-") or posixpath.basename(parent).startswith("darwin-"):
            roots.add(grandparent)
        elif posixpath.basename(grandparent).count("-") >= 2:
            roots.add(posixpath.dirname(grandparent))
        else:
            return None
    return roots.pop() if len(roots) == 1 else None
