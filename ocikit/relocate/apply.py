"""Write planned relocations in two phases so a failure leaves the tree as it was.

Phase one writes every new file (and symlink) next to its original under a temporary name,
with the original's mode, owner and timestamps; any error removes the temporaries and
re-raises, so nothing changed. Phase two renames the temporaries over the originals — renames
in the same directory, which do not fail for want of space. Directories without write
permission (views are often unpacked read-only) are opened up for the duration and restored.

Renaming gives each file a new inode: a hard link elsewhere keeps the old content.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from dataclasses import dataclass

from ..errors import LocalIOError
from ..progress import NULL_PROGRESS, Progress
from .edits import apply_edits
from .plan import FilePlan

_SUFFIX = ".ocikit-relocate"


@dataclass(frozen=True)
class SymlinkPlan:
    path: str  # relative to the tree top
    old_target: str
    new_target: str


def apply_plans(root: str, files: list[FilePlan], links: list[SymlinkPlan], progress: Progress = NULL_PROGRESS) -> None:
    """Write ``files`` and ``links`` under ``root``; all or (short of a failed rename) nothing."""
    staged: list[tuple[str, str]] = []
    progress.start("relocate-write", "relocating", total=len(files) + len(links), unit="files")
    dirs = _WritableDirs()
    try:
        try:
            for plan in files:
                staged.append(_stage_file(root, plan, dirs))
                progress.advance("relocate-write", 1)
            for link in links:
                staged.append(_stage_link(root, link, dirs))
                progress.advance("relocate-write", 1)
        except BaseException:
            for temp, _ in staged:
                _remove(temp)
            raise
        _commit(staged)
    finally:
        dirs.restore()
    progress.finish("relocate-write")


def _commit(staged: list[tuple[str, str]]) -> None:
    for done, (temp, final) in enumerate(staged):
        try:
            os.replace(temp, final)
        except OSError as exc:
            for left, _ in staged[done:]:
                _remove(left)
            raise LocalIOError(
                f"cannot replace {final}: {exc.strerror}; {done} of {len(staged)} files were already relocated"
            ) from exc


def _stage_file(root: str, plan: FilePlan, dirs: _WritableDirs) -> tuple[str, str]:
    path = os.path.join(root, plan.path)
    try:
        with open(path, "rb") as source:
            info = os.fstat(source.fileno())
            if (info.st_size, info.st_mtime_ns) != (plan.size, plan.mtime_ns):
                raise LocalIOError(f"{plan.path} changed while it was being relocated; nothing was changed")
            data = source.read()
        directory = os.path.dirname(path)
        dirs.ensure(directory)
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=_SUFFIX, dir=directory)
    except OSError as exc:
        if isinstance(exc, LocalIOError):
            raise
        raise LocalIOError(f"cannot relocate {plan.path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(apply_edits(data, plan.edits))
        _copy_metadata(info, temp)
    except OSError as exc:
        _remove(temp)
        raise LocalIOError(f"cannot write the relocated {plan.path}: {exc.strerror or exc}") from exc
    return temp, path


def _stage_link(root: str, link: SymlinkPlan, dirs: _WritableDirs) -> tuple[str, str]:
    path = os.path.join(root, link.path)
    directory = os.path.dirname(path)
    try:
        info = os.lstat(path)
        dirs.ensure(directory)
        temp = _temp_symlink(link.new_target, directory, os.path.basename(path))
    except OSError as exc:
        raise LocalIOError(f"cannot relocate the symlink {link.path}: {exc.strerror or exc}") from exc
    try:
        _copy_metadata(info, temp, symlink=True)
    except OSError as exc:
        _remove(temp)
        raise LocalIOError(f"cannot relocate the symlink {link.path}: {exc.strerror or exc}") from exc
    return temp, path


def _temp_symlink(target: str, directory: str, base: str) -> str:
    for _ in range(100):
        temp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}{_SUFFIX}")
        try:
            os.symlink(target, temp)
            return temp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {base}")


def _copy_metadata(info: os.stat_result, path: str, symlink: bool = False) -> None:
    if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(path, info.st_uid, info.st_gid, follow_symlinks=not symlink)
        except PermissionError:
            pass  # not ours to give away; the file keeps the caller's ownership
    if not symlink:
        os.chmod(path, stat.S_IMODE(info.st_mode))  # after chown, which clears set-id bits
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=not symlink)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _WritableDirs:
    """Grant the owner write access to directories while writing, then restore their modes."""

    def __init__(self) -> None:
        self._restore: dict[str, int] = {}

    def ensure(self, directory: str) -> None:
        if directory in self._restore or os.access(directory, os.W_OK | os.X_OK):
            return
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        os.chmod(directory, mode | stat.S_IRWXU)
        self._restore[directory] = mode

    def restore(self) -> None:
        for directory, mode in self._restore.items():
            try:
                os.chmod(directory, mode)
            except OSError:
                pass
