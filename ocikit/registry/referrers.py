"""Referrers on a registry: the OCI 1.1 API first, the tag schema where it is missing.

Reading: ``GET /v2/<name>/referrers/<digest>``; a ``404`` that is not ``NAME_UNKNOWN`` (or a
non-index answer) means the registry lacks the API (distribution 2.8), and the fallback
tag ``sha256-<hex>`` is read instead. Which mode works is remembered per repository.

Writing (after a manifest with a ``subject`` is pushed): nothing to do if the registry
answered with ``OCI-Subject`` or is known to have the API. Otherwise the fallback index
is updated safely (distribution-spec v1.1 "referrers tag schema", made safe): hold a per-subject thread + file lock
(2.8 ignores ``If-Match``), read the tag, refuse anything that is not an index or is the
subject itself (GitLab maps the tag to the subject, oras-go #1396), drop entries whose
manifests are gone, add the new entry, push, then re-read to confirm it survived a
concurrent writer in another process, and retry if it did not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from enum import Enum

from ..errors import InvalidContentError, RegistryError, RegistryNotFoundError
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import ParsedManifest, build_index, parse_manifest
from .client import RepositoryClient

_UPDATE_ATTEMPTS = 8


class ReferrersMode(Enum):
    UNKNOWN = "unknown"
    API = "api"
    TAG = "tag-schema"


_MODES: dict[tuple[str, str], ReferrersMode] = {}
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_GLOBAL_LOCK = threading.Lock()


def fallback_tag(digest: str) -> str:
    """The tag-schema tag for a subject: ``<alg>-<ref>`` (``sha256-<64 hex>``)."""
    algorithm, encoded = digest.split(":", 1)
    return f"{algorithm[:32]}-{encoded[:64]}"


class RegistryReferrers:
    """Referrer listing and bookkeeping for one repository."""

    def __init__(self, client: RepositoryClient) -> None:
        self.client = client
        self._key = (client.transport.registry, client.repository)

    @property
    def mode(self) -> ReferrersMode:
        return _MODES.get(self._key, ReferrersMode.UNKNOWN)

    @mode.setter
    def mode(self, value: ReferrersMode) -> None:
        _MODES[self._key] = value

    def find(self, subject: Descriptor, artifact_type: str = "") -> list[Descriptor]:
        if self.mode is not ReferrersMode.TAG:
            page = self.client.get_referrers(subject.digest, artifact_type)
            if page is not None:
                self.mode = ReferrersMode.API
                if artifact_type and not page.filtered:
                    return [d for d in page.manifests if d.artifact_type == artifact_type]
                return page.manifests
            self.mode = ReferrersMode.TAG
        entries = self._read_fallback(subject)
        return [d for d in entries if not artifact_type or d.artifact_type == artifact_type]

    def record(self, pushed: Descriptor, parsed: ParsedManifest, api_confirmed: bool) -> None:
        """Make a just-pushed manifest with a subject discoverable as a referrer."""
        if parsed.subject is None:
            return
        if api_confirmed:  # the registry answered OCI-Subject: it indexes referrers itself
            self.mode = ReferrersMode.API
            return
        if self.mode is ReferrersMode.UNKNOWN:
            probe = self.client.get_referrers(parsed.subject.digest)
            self.mode = ReferrersMode.API if probe is not None else ReferrersMode.TAG
        if self.mode is ReferrersMode.API:
            return
        entry = Descriptor(
            parsed.media_type,
            pushed.digest,
            pushed.size,
            annotations=dict(parsed.annotations),
            artifact_type=parsed.descriptor().artifact_type,
        )
        self._add_to_fallback(parsed.subject, entry)

    # -- the tag schema ----------------------------------------------------------------

    def _read_fallback(self, subject: Descriptor) -> list[Descriptor]:
        tag = fallback_tag(subject.digest)
        try:
            raw, media_type = self.client.get_manifest(tag)
        except RegistryNotFoundError:
            return []
        parsed = parse_manifest(raw, media_type)
        if not parsed.is_index:
            raise InvalidContentError(
                f"referrers tag {self.client.name}:{tag} holds a {parsed.media_type}, not an image index"
            )
        if parsed.digest == subject.digest:
            return []  # the registry mapped the tag onto the subject itself (GitLab)
        return list(parsed.manifests)

    def _add_to_fallback(self, subject: Descriptor, entry: Descriptor) -> None:
        tag = fallback_tag(subject.digest)
        with self._subject_lock(subject.digest):
            for _ in range(_UPDATE_ATTEMPTS):
                current = self._read_fallback(subject)
                kept = self._drop_vanished(current)
                digests = [d.digest for d in kept]
                if entry.digest in digests and len(kept) == len(current):
                    return  # nothing to change
                if entry.digest not in digests:
                    kept.append(entry)
                self.client.put_manifest(tag, build_index(_dedupe(kept)), mt.OCI_INDEX)
                if entry.digest in {d.digest for d in self._read_fallback(subject)}:
                    return
        raise RegistryError(
            self.client.transport.registry,
            f"update referrers index {self.client.name}:{tag}",
            reason=f"the entry kept being overwritten by concurrent writers ({_UPDATE_ATTEMPTS} attempts)",
        )

    def _drop_vanished(self, entries: list[Descriptor]) -> list[Descriptor]:
        # distribution rejects an index with a missing child, so a deleted referrer must go.
        return [d for d in entries if self.client.head_manifest(d.digest) is not None]

    @contextlib.contextmanager
    def _subject_lock(self, subject_digest: str) -> Iterator[None]:
        name = hashlib.sha256(f"{self._key[0]}/{self._key[1]}@{subject_digest}".encode()).hexdigest()[:32]
        with _GLOBAL_LOCK:
            thread_lock = _THREAD_LOCKS.setdefault(name, threading.Lock())
        directory = os.path.join(tempfile.gettempdir(), "ocikit-locks")
        os.makedirs(directory, exist_ok=True)
        with thread_lock:
            fd = os.open(os.path.join(directory, f"{name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)


def _dedupe(entries: list[Descriptor]) -> list[Descriptor]:
    seen: set[str] = set()
    out = []
    for entry in entries:
        if entry.digest not in seen:
            seen.add(entry.digest)
            out.append(entry)
    return out

