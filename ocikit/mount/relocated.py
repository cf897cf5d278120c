"""A view mounted somewhere other than where its bytes point: its recorded files, relocated.

The view's relocation record lists the files (and symlinks) that mention the stored prefix
(the placeholder, or the root the view was built at). When the mount is seen at another path
(``relocate_to``, default the mount point), those files are rewritten exactly as a pull
rewrites them (:func:`ocikit.relocate.plan.relocate_bytes`, the same prefix map and
``$ORIGIN`` rules), so the mount and a pull to the same path hold the same bytes.

What cannot be lazy: a rewritten text file may change size, and ``stat`` must be right from
the first call, so the recorded files are fetched and rewritten when the mount starts (spans
come from the span cache when it has them). Their new content is kept in a private
directory under the cache, removed when the mount ends. Every other file stays lazy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

from ..errors import LocalIOError
from ..extract.whiteout import remove_tree
from ..formats.tar.reader import FILE, SYMLINK
from ..relocate.plan import relocate_bytes
from ..relocate.prefixes import PrefixMap
from ..relocate.tree import relocated_link_target
from ..spec.view_config import RelocationRecord
from .spans import LayerData
from .tree import MountEntry, MountTree


class Relocated:
    """The recorded files' relocated content, by path; set up before the mount starts."""

    def __init__(self, record: RelocationRecord, target: str, tree: MountTree, layers: list[LayerData],
                 cache_dir: str, workers: int = 4) -> None:
        self.old, self.new = record.stored_prefix, target
        self.relative_rpaths = record.relative_rpaths
        self.files: dict[str, str] = {}  # path in the view -> file holding its relocated content
        try:
            os.makedirs(os.path.join(cache_dir, "mount"), exist_ok=True)
            self.dir = tempfile.mkdtemp(prefix="relocated.", dir=os.path.join(cache_dir, "mount"))
        except OSError as exc:
            raise LocalIOError(f"cannot use the cache {cache_dir}: {exc.strerror}") from None
        prefixes = PrefixMap.build(self.old, self.new)
        regular: list[tuple[str, MountEntry]] = []
        for path in record.files:
            entry = tree.lookup(path)
            if entry is None:
                continue
            if entry.kind == SYMLINK:
                mapped = relocated_link_target(path, entry.target, prefixes)
                if mapped is not None:
                    entry.target, entry.size = mapped, len(mapped.encode("utf-8", "surrogateescape"))
            elif entry.kind == FILE:
                regular.append((path, entry))
        regular.sort(key=lambda item: (item[1].layer, item[1].offset))  # span order
        try:
            with ThreadPoolExecutor(max(workers, 1)) as pool:
                for _ in pool.map(lambda item: self._rewrite(item[0], item[1], layers), regular):
                    pass
        except BaseException:
            self.close()
            raise

    def _rewrite(self, path: str, entry: MountEntry, layers: list[LayerData]) -> None:
        data = layers[entry.layer].read(entry.offset, entry.size)
        new = relocate_bytes(data, path, self.old, self.new, relative_rpaths=self.relative_rpaths)
        if new is data or new == data:
            return
        fd, holder = tempfile.mkstemp(dir=self.dir)
        with os.fdopen(fd, "wb") as fh:
            fh.write(new)
        self.files[path] = holder
        entry.size = len(new)

    def content(self, path: str, entry: MountEntry, offset: int, size: int) -> bytes | None:
        """``size`` bytes from ``offset`` of the relocated ``path``, or None when it is served from its layer."""
        holder = self.files.get(path)
        if holder is None:
            return None
        with open(holder, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            remove_tree(self.dir)

