"""The prepared tree of a mount, kept on disk so a remount or a second pod skips parse and merge.

Preparing a mount parses every layer's zTOC and merges and checks the tree (about a second for
60 000 files). What comes out depends only on the manifest and on the policy's tree-shaping
fields, so it is kept under ``CACHE/mount/trees/<key>`` where ``<key>`` hashes the manifest
digest and :meth:`~ocikit.pull.policy.PullPolicy.tree_key` (the node cache's key for
extracted trees). A kept tree holds the mount's entries and each layer's span geometry and
span digests (the zTOC without its file list), as plain data in :mod:`marshal` form.

The span digests are what every byte served is checked against, so a kept tree is trusted
like the user's own files and nothing more: it is used only when the file and its directory
belong to the user who mounts and nobody else can write them; a damaged or foreign file is
ignored (and rebuilt). Span bytes and documents stay content-addressed as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import stat

from ..formats.zstd_seekable import Frame
from ..ztoc.ztoc import Ztoc
from .keep import keep_file
from .tree import MountEntry, MountTree

FORMAT = 1  # bump when MountEntry, the rules or the zTOC geometry change meaning
_MAGIC = b"ocikit-mount-tree\n"


def tree_path(cache_dir: str, manifest_digest: str, tree_key: str) -> str:
    """Where the prepared tree of ``manifest_digest`` under a policy's ``tree_key`` is kept."""
    key = hashlib.sha256(f"{FORMAT}\n{manifest_digest}\n{tree_key}".encode()).hexdigest()
    return os.path.join(cache_dir, "mount", "trees", key)


def load_tree(path: str) -> tuple[MountTree, list[Ztoc]] | None:
    """The kept tree and span-only zTOCs at ``path``, or None (absent, damaged, or not trusted)."""
    try:
        with open(path, "rb") as fh:
            if not (_trusted(os.fstat(fh.fileno())) and _trusted(os.stat(os.path.dirname(path)))):
                return None
            data = fh.read()
    except OSError:
        return None
    body = data[len(_MAGIC) + 32 :]
    if not data.startswith(_MAGIC) or data[len(_MAGIC) : len(_MAGIC) + 32] != hashlib.sha256(body).digest():
        return None
    try:
        kept = _decode(marshal.loads(body))
    except (ValueError, TypeError, EOFError, KeyError, IndexError):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # last use, for gc
    return kept


def save_tree(path: str, tree: MountTree, ztocs: list[Ztoc]) -> None:
    """Keep ``tree`` and the zTOCs' span geometry at ``path`` (best effort: a full disk costs speed only)."""
    body = marshal.dumps(_encode(tree, ztocs))
    keep_file(path, _MAGIC + hashlib.sha256(body).digest() + body, dir_mode=0o700)


def _trusted(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _encode(tree: MountTree, ztocs: list[Ztoc]) -> dict[str, object]:
    rows = [(e.kind, e.mode, e.size, e.mtime_ns, e.layer, e.offset, e.target, e.nlink, e.rdev,
             tuple(e.children) if e.children is not None else None) for e in tree.entries.values()]
    spans = [(z.compression, z.compressed_archive_size, z.uncompressed_archive_size, tuple(z.span_digests),
              z.span_size, z.checkpoints,
              tuple((f.compressed_offset, f.compressed_size, f.uncompressed_offset, f.uncompressed_size)
                    for f in z.frames), z.version, z.build_tool_identifier) for z in ztocs]
    return {"paths": tuple(tree.entries), "rows": tuple(rows), "links": tuple(tree.links),
            "skipped": tuple(tree.skipped), "data_bytes": tree.data_bytes, "spans": tuple(spans)}


def _decode(document: dict[str, object]) -> tuple[MountTree, list[Ztoc]]:
    paths, rows = document["paths"], document["rows"]
    entries = {}
    for path, row in zip(paths, rows, strict=True):  # type: ignore[call-overload]
        kind, mode, size, mtime_ns, layer, offset, target, nlink, rdev, children = row
        entries[path] = MountEntry(kind, mode, size, mtime_ns, layer, offset, target, nlink, rdev,
                                   list(children) if children is not None else None)
    tree = MountTree(entries, [tuple(link) for link in document["links"]],  # type: ignore[attr-defined,misc]
                     list(document["skipped"]), int(document["data_bytes"]))  # type: ignore[call-overload]
    ztocs = [Ztoc([], compression, csize, usize, list(digests), span_size, checkpoints,
                  [Frame(*f) for f in frames], version, tool)
             for compression, csize, usize, digests, span_size, checkpoints, frames, version, tool
             in document["spans"]]  # type: ignore[attr-defined]
    return tree, ztocs
