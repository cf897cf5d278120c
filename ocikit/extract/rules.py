"""The rules every untrusted tree is held to, in one place.

Names (:func:`normalize_name`, :func:`check_reserved`), roots of absolute symlinks
(:func:`check_symlink_root`), times (:func:`clamp_mtime_ns`) and
symlink targets (:func:`check_symlink_target` when an entry arrives, :func:`verify_symlinks`
once the tree is complete) are decided here and nowhere else; the safe extractor applies
them to full pulls, ``--rootfs``, ``--include``, ``get-file`` and node-cache fills alike.

**The symlink rule.** A symlink must resolve inside the tree the way the kernel will
resolve it when the tree is used in place: relative targets from the link's directory,
following the tree's own symlinks, where ``..`` after a symlink goes to the parent of what
the symlink points at (so ``s -> .`` then ``esc -> s/../../f`` escapes although it looks
shallow). Absolute targets are allowed only under one of the policy's roots (a view's
recorded root, rewritten to DEST by relocation); the rest of such a target is resolved
from the tree's root by the same walk, so ``/opt/view/../../etc/passwd`` is refused.
This is PEP 706's ``data`` filter and ``securejoin``'s walk, without clamping at the root.
Container root filesystems (``rootfs``) are used under a chroot, where the runtime
resolves every link inside the rootfs (containerd's rule), so their links are kept as they
are; ocikit itself never writes or reads through a link in any mode.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .safe_tar import ExtractPolicy

from ..errors import InvalidContentError, UnsafeContentError

RESERVED_TOP = ".ocikit"
WHITEOUT_PREFIX = ".wh."  # OCI image-spec layer.md: ``.wh.NAME`` hides NAME of the lower layers
OPAQUE_MARKER = ".wh..wh..opq"  # ...and this hides everything below its directory
MAX_LINK_HOPS = 40  # the kernel's MAXSYMLINKS
_MAX_TIME_NS = (1 << 63) - 1


def normalize_name(name: str, entry: str) -> str:
    """``./a//b/`` → ``a/b``; reject absolute names, ``..`` and NUL bytes."""
    while name.startswith("./"):
        name = name[2:]
    if name.endswith("/"):
        name = name[:-1]
    padded = "/" + name + "/"
    if "//" not in padded and "/./" not in padded and "/../" not in padded and "\x00" not in name:
        return name  # the common case: already clean
    if "\x00" in name:
        raise UnsafeContentError(entry, "invalid name (NUL byte)")
    if name.startswith("/"):
        raise UnsafeContentError(entry, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeContentError(entry, "path traversal")
    return "/".join(parts)


def check_reserved(path: str, entry: str) -> None:
    """``.ocikit`` at the top of a tree is ocikit's (lock, marker): no artifact may write it, in any mode."""
    if path == RESERVED_TOP or path.startswith(RESERVED_TOP + "/"):
        raise UnsafeContentError(entry, "reserved name (.ocikit is ocikit's marker directory)")


def check_symlink_root(root: str, what: str = "view root") -> str:
    """A root absolute symlink targets may point under (a view's recorded root, placeholder):
    an absolute path without ``.``, ``..`` or empty components, and not ``/`` itself.

    ``/opt/view/..`` or ``/..`` would make a target "under the root" that the kernel resolves
    somewhere else entirely (``/../etc/shadow`` is ``/etc/shadow``), so such a root is refused.
    """
    parts = root.rstrip("/").split("/")
    if not root.startswith("/") or len(parts) < 2 or any(p in ("", ".", "..") for p in parts[1:]) or "\x00" in root:
        raise UnsafeContentError(root, f"invalid {what} (symlink roots are clean absolute paths below /)")
    return root.rstrip("/")


def kept_mode_bits(preserve_special_modes: bool) -> int:
    """The permission bits an entry keeps: setuid/setgid are dropped unless asked for; the
    sticky bit is kept, because dropping it would leave a /tmp-like directory world-writable
    without its protection."""
    return 0o7777 if preserve_special_modes else 0o1777


def check_declared_size(size: int, max_size: int | None, entry: str) -> None:
    """A file declaring more than ``max_size`` bytes is refused before any byte is read."""
    if max_size is not None and size > max_size:
        raise UnsafeContentError(entry, f"size limit exceeded (declares {size} bytes, max_size {max_size})")


Admission = Literal["keep", "skip", "resolve"]  # shown; left out (a rootfs's device); a symlink to resolve later
_KINDS = frozenset({"reg", "dir", "symlink", "hardlink", "char", "block", "fifo"})


def admit_entry(name: str, kind: str, linkname: str, size: int, policy: ExtractPolicy) -> tuple[str, Admission]:
    """An entry read from a table of contents (a zTOC) on arrival: its clean path, and whether it
    is kept, skipped, or kept with its symlink target to resolve against the finished tree.

    These are the calls the safe extractor makes as an entry arrives (name, reserved name,
    size, symlink target, devices, type), for the paths that never stream the tar: a mount,
    ``--include``, and the entries those see replaced by a later one, which a full pull writes
    and then replaces, and so refuses when they break a rule.
    """
    path = normalize_name(name, name)
    check_reserved(path, name)
    if kind not in _KINDS:
        raise UnsafeContentError(name, f"unsupported entry type {kind!r}")
    if kind == "reg":
        check_declared_size(size, policy.max_size, name)
    elif kind == "symlink":
        deferred = check_symlink_entry(path, linkname, policy.symlink_roots, policy.external_symlinks,
                                       policy.rootfs, name)
        return path, "resolve" if deferred else "keep"
    elif kind in ("char", "block", "fifo"):
        return path, "keep" if admit_special(kind == "fifo", policy.allow_devices, policy.rootfs, name) else "skip"
    return path, "keep"


def check_hardlink_name(path: str, linkname: str, entry: str, strip_prefix: str = "") -> str:
    """A hard link's target as a clean path of the tree: not outside it, not ``.ocikit``, not itself
    (``strip_prefix``: an ORAS title directory the target must be under, removed like the names')."""
    try:
        target = normalize_name(linkname, entry)
    except UnsafeContentError as exc:
        raise UnsafeContentError(entry, f"hardlink target outside destination ({exc.rule})") from None
    if strip_prefix:
        if not target.startswith(strip_prefix + "/"):
            raise UnsafeContentError(entry, f"hardlink target outside destination (not under {strip_prefix!r})")
        target = target[len(strip_prefix) + 1 :]
    if not target or target.split("/", 1)[0] == RESERVED_TOP:
        raise UnsafeContentError(entry, "hardlink target outside destination")
    if target == path:
        raise UnsafeContentError(entry, "hardlink target missing (links to itself)")
    return target


def check_whiteout(hidden: str, entry: str) -> None:
    """``.wh.NAME`` must name one entry of its directory (not ``.``, ``..``, nothing, or another whiteout)."""
    if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT_PREFIX):
        raise UnsafeContentError(entry, "invalid whiteout")


def check_not_a_listed_directory(made_as_directory: bool, entry: str) -> None:
    """A later entry of one layer may replace an earlier one, but not a directory the layer
    made (listed, or as the parent of an entry): what was written below it would silently go
    (and a parallel writer may still be filling it)."""
    if made_as_directory:
        raise InvalidContentError(f"{entry!r} replaces a directory made earlier in the same layer")


def check_side_by_side_directory(replaces_a_file: bool, stacked: bool, entry: str) -> None:
    """In layers merged side by side (a view), a directory may not replace a file of its own
    layer: another layer extracted at the same time may have met the file, and the outcome
    would depend on timing. Stacked layers (an image) are extracted apart, so there it may."""
    if replaces_a_file and not stacked:
        raise InvalidContentError(f"{entry!r} makes a directory of a file earlier in the same layer")


def admit_special(is_fifo: bool, allow_devices: bool, rootfs: bool, entry: str) -> bool:
    """Whether a device node or fifo is created (True) or skipped (False); refused otherwise.

    A root filesystem's /dev is skipped: the runtime provides those (containerd skips them too).
    """
    if allow_devices:
        return True
    if rootfs:
        return False
    raise UnsafeContentError(entry, "fifo" if is_fifo else "device node")


def check_symlink_entry(path: str, target: str, roots: Iterable[str], external: frozenset[str], rootfs: bool,
                        entry: str) -> bool:
    """The symlink rule when an entry arrives; True when the link must also be resolved against
    the finished tree (:func:`verify_symlinks`).

    A root filesystem's absolute links resolve inside it under the runtime's chroot, and links
    the publisher declared external are kept as they are.
    """
    if not (rootfs and target.startswith("/")) and path not in external:
        check_symlink_target(path, target, roots, entry)
        deferred = not rootfs
    else:
        deferred = False
    if not target or "\x00" in target:
        raise UnsafeContentError(entry, "symlink target outside destination (empty or invalid target)")
    return deferred


def clamp_mtime_ns(ns: int) -> int:
    """A time a filesystem can store: outside [epoch, 2262] it becomes the epoch (containerd's ``boundTime``)."""
    return ns if 0 <= ns <= _MAX_TIME_NS else 0


def _under_root(target: str, roots: Iterable[str]) -> str | None:
    """The part of absolute ``target`` below the first root it lies under ('' = the root itself)."""
    for root in roots:
        root = root.rstrip("/")
        if root and (target == root or target.startswith(root + "/")):
            return target[len(root) + 1 :]
    return None


def check_symlink_target(path: str, target: str, roots: Iterable[str], entry: str) -> None:
    """The cheap part of the symlink rule, when the entry arrives: a target that escapes
    without any symlink's help is refused at once (:func:`verify_symlinks` does the rest)."""
    if not target or "\x00" in target:
        raise UnsafeContentError(entry, "symlink target outside destination (empty or invalid target)")
    if target.startswith("/"):
        rest = _under_root(target, roots)
        if rest is None:
            raise UnsafeContentError(entry, f"symlink target outside destination ({target!r} is absolute)")
        depth = 0
    else:
        rest = target
        depth = path.count("/")  # directories between the tree root and the link
    for part in rest.split("/"):
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            raise UnsafeContentError(entry, f"symlink target outside destination ({target!r})")


def verify_symlinks(tree: str, links: Iterable[tuple[str, str]], roots: Iterable[str]) -> None:
    """Resolve every ``(path, target)`` link against the finished tree as the kernel would,
    following the tree's own links; refuse any that leaves the tree."""
    roots = tuple(roots)
    for path, target in links:
        _resolve_inside(tree, path, target, roots)


def _resolve_inside(tree: str, path: str, target: str, roots: tuple[str, ...]) -> None:
    where: list[str] = path.split("/")[:-1]  # real directories (no links), from the tree root
    pending = _start(target, roots, path, where)
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                raise UnsafeContentError(path, f"symlink target outside destination ({target!r} climbs out)")
            where.pop()
            continue
        try:
            st = os.lstat(os.path.join(tree, *where, part))
        except (FileNotFoundError, NotADirectoryError):
            where.append(part)  # nothing there yet: the rest resolves by name only
            continue
        except OSError as exc:  # ENAMETOOLONG: deeper than a path can name
            raise UnsafeContentError(path, f"symlink cannot be verified ({exc.strerror})") from None
        if not stat.S_ISLNK(st.st_mode):
            if pending and not stat.S_ISDIR(st.st_mode):
                return  # a file in the middle: the kernel stops here (ENOTDIR), nothing escapes
            where.append(part)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            return  # the kernel gives ELOOP: the link resolves to nothing
        inner = os.readlink(os.path.join(tree, *where, part))
        pending.extend(_start(inner, roots, path, where, outer=target))


def _start(target: str, roots: tuple[str, ...], path: str, where: list[str], outer: str = "") -> list[str]:
    """The components still to walk for ``target`` (reversed, to pop from the end); an absolute
    target restarts at the tree root when it lies under a root."""
    if target.startswith("/"):
        rest = _under_root(target, roots)
        if rest is None:
            raise UnsafeContentError(path, f"symlink target outside destination ({outer or target!r} leads to {target!r})")
        where.clear()
        target = rest
    return list(reversed(target.split("/")))
