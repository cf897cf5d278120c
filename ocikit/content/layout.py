"""An OCI image-layout directory as a store (image-spec image-layout.md).

``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``, as skopeo and umoci read them.
Tags are index entries annotated ``org.opencontainers.image.ref.name``; referrers are
untagged index entries whose manifest has a ``subject`` (the way oras-go's OCI store
keeps them), so a layout can carry an artifact's whole referrer graph. ``latest`` (what a
reference without a tag means) falls back to the layout's only image — skopeo's reading
of an untagged layout — and never to a referrer.

Writes are crash-safe: blobs land in ``.ingest/`` and are renamed into place only after
their digest checks out; ``index.json`` is replaced atomically under a lock (a thread lock
plus ``flock`` on the layout directory), so concurrent writers in several processes
neither corrupt it nor lose each other's tags. A failed write (a full disk, a quota)
removes its temporary file and raises :class:`~ocikit.errors.LocalIOError`: no partial
blob or index is ever left under its real name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from ..digest import VerifyingReader, algorithm_of, hex_of, new_hasher, validate_digest
from ..errors import DigestMismatchError, InvalidContentError, LocalIOError, NotFoundError, SizeMismatchError
from ..reference import DEFAULT_TAG
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import build_index, parse_manifest
from .base import MAX_MANIFEST_SIZE, ByteCallback, ByteReader

LAYOUT_VERSION = "1.0.0"
_COPY_CHUNK = 1 << 20


class LayoutStore:
    """A store backed by an OCI image-layout directory (created on first write if absent)."""

    def __init__(self, root: str, create: bool = True) -> None:
        self.root = os.path.abspath(root)
        self._lock = threading.RLock()
        self._subjects: dict[str, str | None] = {}  # manifest digest -> subject digest (cache)
        if os.path.isfile(os.path.join(self.root, "oci-layout")):
            self._check_layout_version()
        elif create:
            self._initialise()
        else:
            raise NotFoundError(f"no OCI image layout at {self.root}")

    def describe(self) -> str:
        return f"oci:{self.root}"

    # -- layout files ------------------------------------------------------------------

    def _initialise(self) -> None:
        try:
            os.makedirs(os.path.join(self.root, "blobs", "sha256"), exist_ok=True)
            with self._index_lock():
                if not os.path.exists(self._path("oci-layout")):
                    self._write_atomic("oci-layout", json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
                if not os.path.exists(self._path("index.json")):
                    self._write_atomic("index.json", build_index([]))
        except OSError as exc:
            raise LocalIOError(f"cannot create OCI layout at {self.root}: {exc.strerror}") from None

    def _check_layout_version(self) -> None:
        try:
            with open(self._path("oci-layout"), "rb") as fh:
                version = json.load(fh).get("imageLayoutVersion")
        except (OSError, ValueError) as exc:
            raise InvalidContentError(f"{self.root}/oci-layout is unreadable: {exc}") from None
        if version != LAYOUT_VERSION:
            raise InvalidContentError(f"{self.root}: unsupported imageLayoutVersion {version!r}")

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def blob_path(self, digest: str) -> str:
        validate_digest(digest)
        return self._path("blobs", algorithm_of(digest), hex_of(digest))

    def _write_atomic(self, name: str, data: bytes) -> None:
        tmp = self._path(f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with self._writing(name):
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self._path(name))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn a failed write (disk full, quota, read-only) into a one-line LocalIOError.

        Only writes go through here: an OSError while *reading* the data being pushed (a
        view file) belongs to the reader and keeps its own meaning.
        """
        try:
            yield
        except LocalIOError:
            raise
        except OSError as exc:
            raise LocalIOError(f"cannot write {what} to {self.describe()}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _read_index(self) -> dict[str, Any]:
        try:
            with open(self._path("index.json"), "rb") as fh:
                index = json.load(fh)
        except FileNotFoundError:
            raise NotFoundError(f"no index.json in OCI layout {self.root}") from None
        except ValueError as exc:
            raise InvalidContentError(f"{self.root}/index.json is not valid JSON: {exc}") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise InvalidContentError(f"{self.root}/index.json is not an image index")
        index.setdefault("manifests", [])
        return index

    def _write_index(self, index: dict[str, Any]) -> None:
        self._write_atomic("index.json", build_index([Descriptor.from_dict(d) for d in index["manifests"]]))

    def entries(self) -> list[Descriptor]:
        """The descriptors listed in ``index.json`` (tagged and untagged)."""
        return [Descriptor.from_dict(d) for d in self._read_index()["manifests"]]

    # -- Store protocol ------------------------------------------------------------------

    def exists(self, desc: Descriptor) -> bool:
        try:
            return os.stat(self.blob_path(desc.digest)).st_size == desc.size
        except FileNotFoundError:
            return False

    def fetch(self, desc: Descriptor) -> VerifyingReader:
        try:
            fh = open(self.blob_path(desc.digest), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {desc.digest} not found in {self.describe()}") from None
        return VerifyingReader(fh, desc.digest, desc.size, what=f"{desc.digest} in {self.describe()}")

    def fetch_range(self, desc: Descriptor, offset: int, length: int) -> bytes:
        try:
            with open(self.blob_path(desc.digest), "rb") as fh:
                fh.seek(offset)
                return fh.read(length)
        except FileNotFoundError:
            raise NotFoundError(f"blob {desc.digest} not found in {self.describe()}") from None

    def push(self, desc: Descriptor, data: "ByteReader | bytes", on_bytes: ByteCallback | None = None) -> None:
        if self.exists(desc):
            return
        hasher = new_hasher(desc.digest)
        size = 0
        with self._ingest(desc.digest) as (tmp, fh):
            for chunk in _chunks(data):
                hasher.update(chunk)
                size += len(chunk)
                if size > desc.size:
                    raise SizeMismatchError(desc.digest, desc.size, size)
                self._write(fh, chunk, desc.digest)
                if on_bytes:
                    on_bytes(len(chunk))
            actual = f"{algorithm_of(desc.digest)}:{hasher.hexdigest()}"
            if size != desc.size:
                raise SizeMismatchError(desc.digest, desc.size, size)
            if actual != desc.digest:
                raise DigestMismatchError(desc.digest, desc.digest, actual)
            self._commit(fh, tmp, desc.digest)
        if desc.is_manifest or desc.is_index:
            self._track_referrer(desc)

    def push_stream(
        self, chunks: Iterable[bytes], media_type: str, on_bytes: ByteCallback | None = None
    ) -> Descriptor:
        hasher = new_hasher("sha256")
        size = 0
        with self._ingest("a blob") as (tmp, fh):
            for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                self._write(fh, chunk, "a blob")
                if on_bytes:
                    on_bytes(len(chunk))
            desc = Descriptor(media_type, f"sha256:{hasher.hexdigest()}", size)
            self._commit(fh, tmp, desc.digest)
        return desc

    @contextlib.contextmanager
    def _ingest(self, what: str) -> Iterator[tuple[str, BinaryIO]]:
        """A temporary file under ``.ingest/``, removed whatever happens unless committed."""
        ingest = self._path(".ingest")
        tmp = os.path.join(ingest, uuid.uuid4().hex)
        with self._writing(what):
            for attempt in range(5):  # another writer may remove the empty dir at any moment here
                try:
                    os.makedirs(ingest, exist_ok=True)
                    fh = open(tmp, "wb")
                    break
                except (FileNotFoundError, FileExistsError):
                    if attempt == 4:
                        raise
        try:
            yield tmp, fh
        finally:
            with contextlib.suppress(OSError):
                fh.close()  # after a failed write the buffer may not flush: the file goes anyway
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            with contextlib.suppress(OSError):
                os.rmdir(ingest)  # only succeeds when no other writer is busy

    def _write(self, fh: BinaryIO, chunk: bytes, what: str) -> None:
        with self._writing(what):
            fh.write(chunk)

    def _commit(self, fh: BinaryIO, tmp: str, digest: str) -> None:
        """Close (the last buffered bytes may still fail to land) and rename into ``blobs/``."""
        with self._writing(digest):
            fh.close()
            target = self.blob_path(digest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(tmp, target)

    def resolve(self, reference: str) -> Descriptor:
        """The entry for a tag or digest; ``""`` means ``latest`` (see :meth:`_only_image`)."""
        reference = reference or DEFAULT_TAG
        entries = self.entries()
        if ":" in reference and reference.split(":", 1)[0] in ("sha256", "sha512"):
            validate_digest(reference)
            for entry in entries:
                if entry.digest == reference:
                    return entry
            return self._descriptor_from_blob(reference)
        for entry in reversed(entries):
            if entry.annotations.get(mt.ANNOTATION_REF_NAME) == reference:
                return entry
        if reference == DEFAULT_TAG:
            return self._only_image(entries)
        raise NotFoundError(f"tag {reference!r} not found in {self.describe()}")

    def _only_image(self, entries: list[Descriptor]) -> Descriptor:
        """``latest`` in a layout that tags nothing ``latest``: its only image, never a referrer.

        skopeo writes ``oci:DIR`` without a tag as one untagged entry and reads a tag-less
        reference as "the only entry"; ocikit keeps that, but counts only images — entries
        whose manifest has no ``subject`` — so a compatibility referrer or a signature listed
        beside one image is never what a tag-less reference means.
        """
        images = {e.digest: e for e in entries if self._subject_of(e) is None}
        if len(images) == 1:
            return next(iter(images.values()))
        if not images:
            subjects = sorted({s for e in entries if (s := self._subject_of(e))})
            held = f"only referrers (of {', '.join(subjects)})" if subjects else "no manifest"
            raise NotFoundError(f"no tag 'latest' in {self.describe()}, which holds {held}; name one with @DIGEST")
        tags = sorted({t for e in images.values() if (t := e.annotations.get(mt.ANNOTATION_REF_NAME))})
        named = f" (tags: {', '.join(tags)})" if tags else ""
        raise NotFoundError(
            f"no tag 'latest' in {self.describe()}, which holds {len(images)} images{named}; "
            "name one with :TAG or @DIGEST"
        )

    def _descriptor_from_blob(self, digest: str) -> Descriptor:
        path = self.blob_path(digest)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise NotFoundError(f"manifest {digest} not found in {self.describe()}") from None
        if size > MAX_MANIFEST_SIZE:
            raise InvalidContentError(f"{digest} in {self.describe()} is too large to be a manifest")
        with open(path, "rb") as fh:
            raw = fh.read()
        parsed = parse_manifest(raw)
        return Descriptor(parsed.media_type, digest, size, artifact_type=parsed.descriptor().artifact_type)

    def tag(self, desc: Descriptor, tag: str) -> None:
        if not self.exists(desc):
            raise NotFoundError(f"cannot tag {desc.digest}: not in {self.describe()}")
        entry = Descriptor(
            desc.media_type,
            desc.digest,
            desc.size,
            annotations={**desc.annotations, mt.ANNOTATION_REF_NAME: tag},
            artifact_type=desc.artifact_type,
            platform=desc.platform,
        )
        with self._index_lock():
            index = self._read_index()
            kept = [d for d in index["manifests"] if (d.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME) != tag]
            index["manifests"] = kept + [entry.to_dict()]
            self._write_index(index)

    # -- capabilities --------------------------------------------------------------------

    def tags(self) -> list[str]:
        names = {e.annotations.get(mt.ANNOTATION_REF_NAME, "") for e in self.entries()}
        return sorted(n for n in names if n)

    def referrers(self, subject: Descriptor, artifact_type: str = "") -> list[Descriptor]:
        found: dict[str, Descriptor] = {}
        for entry in self.entries():
            if entry.digest in found or self._subject_of(entry) != subject.digest:
                continue
            desc = self._referrer_descriptor(entry)
            if not artifact_type or desc.artifact_type == artifact_type:
                found[entry.digest] = desc
        return list(found.values())

    def _subject_of(self, entry: Descriptor) -> str | None:
        if entry.digest not in self._subjects:
            parsed = self._parse_blob(entry)
            self._subjects[entry.digest] = parsed.subject.digest if parsed and parsed.subject else None
        return self._subjects[entry.digest]

    def _referrer_descriptor(self, entry: Descriptor) -> Descriptor:
        parsed = self._parse_blob(entry)
        assert parsed is not None
        return Descriptor(
            parsed.media_type,
            entry.digest,
            entry.size,
            annotations=dict(parsed.annotations),
            artifact_type=parsed.descriptor().artifact_type,
        )

    def _parse_blob(self, entry: Descriptor):  # type: ignore[no-untyped-def]
        if not (entry.is_manifest or entry.is_index) or not self.exists(entry):
            return None
        with open(self.blob_path(entry.digest), "rb") as fh:
            raw = fh.read(MAX_MANIFEST_SIZE + 1)
        if len(raw) > MAX_MANIFEST_SIZE:
            raise InvalidContentError(f"{entry.digest} in {self.describe()} is too large to be a manifest")
        return parse_manifest(raw, entry.media_type)

    def _track_referrer(self, desc: Descriptor) -> None:
        """List a pushed manifest that has a subject in index.json, untagged, so referrers finds it."""
        parsed = self._parse_blob(desc)
        if parsed is None or parsed.subject is None:
            return
        self._subjects[desc.digest] = parsed.subject.digest
        entry = Descriptor(parsed.media_type, desc.digest, desc.size, artifact_type=parsed.descriptor().artifact_type)
        with self._index_lock():
            index = self._read_index()
            if any(d.get("digest") == desc.digest for d in index["manifests"]):
                return
            index["manifests"].append(entry.to_dict())
            self._write_index(index)

    def delete(self, desc: Descriptor) -> None:
        with self._index_lock():
            index = self._read_index()
            index["manifests"] = [d for d in index["manifests"] if d.get("digest") != desc.digest]
            self._write_index(index)
        try:
            os.unlink(self.blob_path(desc.digest))
        except FileNotFoundError:
            raise NotFoundError(f"{desc.digest} not found in {self.describe()}") from None
        self._subjects.pop(desc.digest, None)

    def remove(self) -> None:
        """Delete the whole layout directory."""
        shutil.rmtree(self.root)


def _chunks(data: "ByteReader | bytes") -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for start in range(0, len(view), _COPY_CHUNK):
            yield bytes(view[start : start + _COPY_CHUNK])
        return
    while chunk := data.read(_COPY_CHUNK):
        yield chunk
