"""Turn a scanned view into a layer plan: which entries go into which tar, in which order.

``packages`` mode (the default) makes one layer per package plus one for the view's own
entries, so two views that hold the same package build share that layer's blob:

* a package layer holds the package's files and symlinks (no directories: directory
  mtimes change with every view, and tar creates missing parents anyway), names relative
  to the view root;
* the view layer holds every directory and the files no single package owns; it comes
  last, so on extraction it settles directory modes and mtimes after the files are in;
* a plain directory (no spack metadata) is one package that owns everything, directories
  included, and has no view layer;
* a layer above ``max_layer_size`` (tar bytes) is split at file boundaries into parts
  ``1 … n``; one file larger than the limit gets a part of its own.

``single`` mode makes one layer, never split, whose entries are all named
``<title>/…`` with the root directory included: what ``oras pull`` unpacks into
``<title>/``.

Hardlinks are resolved per layer: the first name of an inode in a layer is stored as a
file, later names as hardlinks to it; a hardlink never points into another layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..formats.tar.writer import DIRECTORY, END_OF_ARCHIVE, FILE, HARDLINK, SYMLINK, TarEntry, member_size
from .view import SpackPackage, View, ViewEntry, mtime_of

PACKAGES, SINGLE = "packages", "single"
ROLE_PACKAGE, ROLE_VIEW, ROLE_SINGLE = "package", "view", "single"
DEFAULT_MAX_LAYER_SIZE = 2 << 30


@dataclass
class LayerPlan:
    role: str
    title: str
    members: list[TarEntry]  # with .rel (view-relative source path) and .stat (the scan's lstat)
    package: SpackPackage | None = None
    part: int = 1
    parts: int = 1
    tar_size: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable identity across pushes (same package, same part): a hint for the digest cache."""
        who = self.package.key if self.package is not None else self.title
        return f"{self.role}:{who}#{self.part}/{self.parts}"


def plan_layers(view: View, mode: str = PACKAGES, max_layer_size: int = DEFAULT_MAX_LAYER_SIZE,
                extension: str = "") -> list[LayerPlan]:
    """The layers of ``view`` in manifest order (see the module docstring)."""
    if mode == SINGLE:
        plans = [_single_layer(view)]
    elif mode == PACKAGES:
        plans = _package_layers(view, max_layer_size, extension)
    else:
        raise ValueError(f"unknown layer mode {mode!r} (expected 'packages' or 'single')")
    for plan in plans:
        _resolve_hardlinks(plan)
        plan.counts = _counts(plan)
    return plans


def _to_member(entry: ViewEntry, prefix: str = "", mtime: int | None = None) -> TarEntry:
    st = entry.stat
    kind = entry.kind
    return TarEntry(
        prefix + entry.rel,
        kind,
        st.st_mode,
        entry.mtime if mtime is None else mtime,
        st.st_size if kind == FILE else 0,
        entry.link,
        entry.rel,
        st,
    )


def _single_layer(view: View) -> LayerPlan:
    title = view.name
    root = TarEntry(title, DIRECTORY, view.root_stat.st_mode, mtime_of(view.root_stat), 0, "", "", view.root_stat)
    # Stored as they are, real mtimes included (the install-manifest mtimes are for sharing
    # package layers, which a single layer never does).
    members = [root] + [_to_member(e, title + "/", mtime_of(e.stat)) for e in view.entries]
    tar_size = sum(member_size(m) for m in members) + len(END_OF_ARCHIVE)
    return LayerPlan(ROLE_SINGLE, title, members, tar_size=tar_size)


def _package_layers(view: View, max_layer_size: int, extension: str) -> list[LayerPlan]:
    by_owner: dict[str | None, list[ViewEntry]] = {}
    for entry in view.entries:
        owner = entry.owner if view.kind == "directory" or entry.kind != DIRECTORY else None
        by_owner.setdefault(owner, []).append(entry)
    plans: list[LayerPlan] = []
    for package in view.packages:
        entries = by_owner.get(package.key, [])
        if entries or view.kind == "directory":
            plans += _split(ROLE_PACKAGE, _package_title(package), entries, max_layer_size, extension, package)
    if view.kind == "spack":
        plans += _split(ROLE_VIEW, f"{view.name}-view", by_owner.get(None, []), max_layer_size, extension, None)
    return plans


def _package_title(package: SpackPackage) -> str:
    if not package.hash:
        return package.name
    return f"{package.name}-{package.version}-{package.hash[:7]}"


def _split(role: str, title: str, entries: list[ViewEntry], limit: int, extension: str,
           package: SpackPackage | None) -> list[LayerPlan]:
    groups: list[list[TarEntry]] = [[]]
    sizes = [len(END_OF_ARCHIVE)]
    for entry in entries:
        member = _to_member(entry)
        cost = member_size(member)
        if groups[-1] and sizes[-1] + cost > limit:
            groups.append([])
            sizes.append(len(END_OF_ARCHIVE))
        groups[-1].append(member)
        sizes[-1] += cost
    count = len(groups)
    return [
        LayerPlan(
            role,
            f"{title}.part{i}of{count}{extension}" if count > 1 else f"{title}{extension}",
            members,
            package=package,
            part=i,
            parts=count,
            tar_size=size,
        )
        for i, (members, size) in enumerate(zip(groups, sizes, strict=True), start=1)
    ]


def _resolve_hardlinks(plan: LayerPlan) -> None:
    first_name: dict[tuple[int, int], str] = {}
    for index, member in enumerate(plan.members):
        if member.kind != FILE or member.stat.st_nlink < 2:
            continue
        inode = (member.stat.st_dev, member.stat.st_ino)
        if inode in first_name:
            plan.members[index] = link = member._replace(kind=HARDLINK, size=0, linkname=first_name[inode])
            plan.tar_size += member_size(link) - member_size(member)
        else:
            first_name[inode] = member.name


def _counts(plan: LayerPlan) -> dict[str, int]:
    counts = {"files": 0, "symlinks": 0, "hardlinks": 0, "directories": 0, "bytes": 0}
    key = {FILE: "files", SYMLINK: "symlinks", HARDLINK: "hardlinks", DIRECTORY: "directories"}
    for member in plan.members:
        counts[key[member.kind]] += 1
        counts["bytes"] += member.size
    return counts
