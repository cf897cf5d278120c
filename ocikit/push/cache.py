"""The push digest cache: skip reading, compressing and uploading layers a store already has.

A compressed layer's digest is only known after compressing it, and a registry can only
be asked about a blob by that digest. Three small tables in one SQLite file make re-pushes
cheap without ever trusting the cache for correctness (every skip is confirmed with
``store.exists``, an HTTP HEAD on registries):

``tars``   layer fingerprint → uncompressed digest, tar size, relocated paths.
           The fingerprint hashes every member's tar header fields plus the source file's
           inode, device, size, mtime and ctime (like git's index): an unchanged tree
           is recognised from ``lstat`` alone, without reading a byte. Entries are not
           recorded when a file changed within 2 s of being read (the "racy" window).
``blobs``  (uncompressed digest, compression) → compressed digest and size.
``hints``  layer identity (package name/version/hash, part) → last uncompressed digest.
           When a fingerprint misses but the same package was pushed before (another
           environment, a fresh copy), the layer is hashed first — reading, no
           compression — and skipped if that digest's blob is already in the store.

The cache lives in ``$OCIKIT_CACHE_DIR`` or ``$XDG_CACHE_HOME/ocikit`` (``~/.cache/ocikit``).
It is an optimisation only: any SQLite error disables it for the rest of the push.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass

from ..cachedirs import cache_home

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tars (fingerprint TEXT PRIMARY KEY, diff_id TEXT NOT NULL,
                                 tar_size INTEGER NOT NULL, relocated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (diff_id TEXT NOT NULL, compression TEXT NOT NULL, digest TEXT NOT NULL,
                                  size INTEGER NOT NULL, PRIMARY KEY (diff_id, compression));
CREATE TABLE IF NOT EXISTS hints (key TEXT PRIMARY KEY, diff_id TEXT NOT NULL);
"""


def default_cache_dir() -> str:
    return cache_home()  # the digest cache sits at the top of ocikit's cache home


@dataclass(frozen=True)
class CachedTar:
    diff_id: str
    tar_size: int
    relocated: tuple[str, ...]


class DigestCache:
    """Thread-safe access to the cache file; ``directory=""`` disables it."""

    FILENAME = "push-digests.sqlite"

    def __init__(self, directory: str | None = None) -> None:
        self.directory = default_cache_dir() if directory is None else directory
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._disabled = not self.directory

    def _connection(self) -> sqlite3.Connection | None:
        if self._disabled:
            return None
        if self._db is None:
            try:
                os.makedirs(self.directory, exist_ok=True)
                db = sqlite3.connect(os.path.join(self.directory, self.FILENAME), timeout=30,
                                     check_same_thread=False, isolation_level=None)
                db.executescript(SCHEMA)
                self._db = db
            except (sqlite3.Error, OSError) as exc:
                self._disable(exc)
                return None
        return self._db

    def _disable(self, exc: BaseException) -> None:
        log.warning("push digest cache disabled: %s", exc)
        self._disabled = True

    def _query(self, sql: str, args: tuple) -> tuple | None:  # type: ignore[type-arg]
        with self._lock:
            db = self._connection()
            if db is None:
                return None
            try:
                return db.execute(sql, args).fetchone()
            except sqlite3.Error as exc:
                self._disable(exc)
                return None

    def _write(self, sql: str, args: tuple) -> None:  # type: ignore[type-arg]
        with self._lock:
            db = self._connection()
            if db is None:
                return
            try:
                db.execute(sql, args)
            except sqlite3.Error as exc:
                self._disable(exc)

    def tar_for(self, fingerprint: str) -> CachedTar | None:
        row = self._query("SELECT diff_id, tar_size, relocated FROM tars WHERE fingerprint = ?", (fingerprint,))
        if row is None:
            return None
        return CachedTar(row[0], int(row[1]), tuple(json.loads(row[2])))

    def remember_tar(self, fingerprint: str, tar: CachedTar) -> None:
        self._write(
            "INSERT OR REPLACE INTO tars VALUES (?, ?, ?, ?)",
            (fingerprint, tar.diff_id, tar.tar_size, json.dumps(list(tar.relocated))),
        )

    def blob_for(self, diff_id: str, compression: str) -> tuple[str, int] | None:
        row = self._query(
            "SELECT digest, size FROM blobs WHERE diff_id = ? AND compression = ?", (diff_id, compression)
        )
        return (row[0], int(row[1])) if row else None

    def remember_blob(self, diff_id: str, compression: str, digest: str, size: int) -> None:
        self._write("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?)", (diff_id, compression, digest, size))

    def hint_for(self, key: str) -> str | None:
        row = self._query("SELECT diff_id FROM hints WHERE key = ?", (key,))
        return row[0] if row else None

    def remember_hint(self, key: str, diff_id: str) -> None:
        self._write("INSERT OR REPLACE INTO hints VALUES (?, ?)", (key, diff_id))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
