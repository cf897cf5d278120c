"""A conformance suite every store must pass, unchanged.

Subclass :class:`StoreTests` in a test module and provide a ``store`` fixture (a fresh,
empty store per test). The same assertions then run against the OCI layout store and a
real ``docker-registry``, so the two cannot drift apart.
"""

from __future__ import annotations

import io
import os

import pytest

from ..content.base import (
    Store,
    SupportsDelete,
    SupportsRangeRead,
    SupportsReferrers,
    SupportsTagList,
    fetch_manifest,
    push_bytes,
    push_manifest,
    read_all,
)
from ..errors import NotFoundError, VerificationError
from ..graph.attach import attach_referrer, newest_referrer
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import build_index, build_manifest


def make_artifact(store: Store, payload: bytes = b"hello layer", artifact_type: str = "application/x.test") -> Descriptor:
    """Push a one-layer artifact (config = empty) and return its manifest descriptor."""
    empty = push_bytes(store, mt.OCI_EMPTY, mt.EMPTY_JSON)
    layer = push_bytes(store, mt.OCI_LAYER_TAR, payload)
    raw = build_manifest([layer], config=empty, artifact_type=artifact_type)
    return push_manifest(store, raw)


class StoreTests:
    """Behaviour shared by all stores. Subclasses define a ``store`` fixture."""

    def test_push_fetch_roundtrip(self, store: Store) -> None:
        data = os.urandom(3 * (1 << 20) + 17)
        desc = Descriptor.from_bytes(mt.OCI_LAYER_TAR, data)
        assert not store.exists(desc)
        store.push(desc, io.BytesIO(data))
        assert store.exists(desc)
        with store.fetch(desc) as reader:
            assert reader.readall() == data

    def test_push_is_idempotent(self, store: Store) -> None:
        desc = push_bytes(store, mt.OCI_LAYER_TAR, b"same")
        store.push(desc, b"same")
        assert read_all(store, desc) == b"same"

    def test_push_rejects_wrong_digest(self, store: Store) -> None:
        desc = Descriptor.from_bytes(mt.OCI_LAYER_TAR, b"promised")
        with pytest.raises(VerificationError):
            store.push(desc, b"delivered")
        assert not store.exists(desc)

    def test_push_rejects_short_content(self, store: Store) -> None:
        desc = Descriptor.from_bytes(mt.OCI_LAYER_TAR, b"promised bytes")
        with pytest.raises(VerificationError):
            store.push(desc, io.BytesIO(b"promised"))
        assert not store.exists(desc)

    def test_push_stream_computes_descriptor(self, store: Store) -> None:
        chunks = [os.urandom(100_000) for _ in range(5)]
        desc = store.push_stream(iter(chunks), mt.OCI_LAYER_TAR)
        assert desc == Descriptor.from_bytes(mt.OCI_LAYER_TAR, b"".join(chunks))
        assert read_all(store, desc, limit=1 << 30) == b"".join(chunks)

    def test_fetch_missing_raises_not_found(self, store: Store) -> None:
        desc = Descriptor.from_bytes(mt.OCI_LAYER_TAR, b"never pushed")
        with pytest.raises(NotFoundError):
            with store.fetch(desc) as reader:
                reader.readall()

    def test_resolve_tag_and_digest(self, store: Store) -> None:
        manifest = make_artifact(store)
        store.tag(manifest, "v1")
        by_tag = store.resolve("v1")
        assert (by_tag.digest, by_tag.size, by_tag.media_type) == (manifest.digest, manifest.size, mt.OCI_MANIFEST)
        assert store.resolve(manifest.digest).digest == manifest.digest

    def test_resolve_unknown_tag_raises(self, store: Store) -> None:
        make_artifact(store)
        with pytest.raises(NotFoundError):
            store.resolve("no-such-tag")

    def test_retag_moves_tag(self, store: Store) -> None:
        first = make_artifact(store, b"one")
        second = make_artifact(store, b"two")
        store.tag(first, "moving")
        store.tag(second, "moving")
        assert store.resolve("moving").digest == second.digest

    def test_manifest_bytes_are_kept_exactly(self, store: Store) -> None:
        layer = push_bytes(store, mt.OCI_LAYER_TAR, b"x")
        config = push_bytes(store, mt.OCI_EMPTY, mt.EMPTY_JSON)
        # Non-canonical spacing: the store must keep the bytes, so the digest stays the same.
        raw = (
            b'{ "schemaVersion": 2, "mediaType": "%s", "artifactType": "application/x.test",'
            b' "config": %s, "layers": [%s] }'
        ) % (
            mt.OCI_MANIFEST.encode(),
            _json(config),
            _json(layer),
        )
        desc = push_manifest(store, raw, tag="spaced")
        assert fetch_manifest(store, "spaced").raw == raw
        assert store.resolve("spaced").digest == desc.digest

    def test_index_roundtrip(self, store: Store) -> None:
        child = make_artifact(store)
        raw = build_index([child])
        desc = push_manifest(store, raw, tag="multi")
        parsed = fetch_manifest(store, "multi")
        assert parsed.is_index and parsed.manifests[0].digest == child.digest
        assert desc.media_type == mt.OCI_INDEX

    def test_range_read(self, store: Store) -> None:
        if not isinstance(store, SupportsRangeRead):
            pytest.skip("store has no range reads")
        data = bytes(range(256)) * 1000
        desc = push_bytes(store, mt.OCI_LAYER_TAR, data)
        assert store.fetch_range(desc, 1000, 500) == data[1000:1500]
        assert store.fetch_range(desc, len(data) - 10, 100) == data[-10:]

    def test_tag_list(self, store: Store) -> None:
        if not isinstance(store, SupportsTagList):
            pytest.skip("store cannot list tags")
        manifest = make_artifact(store)
        for tag in ("b", "a", "c"):
            store.tag(manifest, tag)
        assert [t for t in store.tags() if t in {"a", "b", "c"}] == ["a", "b", "c"]

    def test_referrers(self, store: Store) -> None:
        if not isinstance(store, SupportsReferrers):
            pytest.skip("store has no referrers")
        subject = make_artifact(store, b"subject")
        store.tag(subject, "subject")
        assert store.referrers(subject) == []
        refs = [
            attach_referrer(store, subject, kind, annotations={"note": note})
            for kind, note in (("application/x.sig", "a"), ("application/x.sbom", "b"))
        ]
        found = {d.digest: d for d in store.referrers(subject)}
        assert set(found) == {r.digest for r in refs}
        assert {d.artifact_type for d in found.values()} == {"application/x.sig", "application/x.sbom"}
        assert {d.annotations.get("note") for d in found.values()} == {"a", "b"}
        only = store.referrers(subject, artifact_type="application/x.sbom")
        assert [d.digest for d in only] == [refs[1].digest]

    def test_replacing_a_referrer_leaves_the_newest_discoverable(self, store: Store) -> None:
        if not isinstance(store, SupportsReferrers):
            pytest.skip("store has no referrers")
        subject = make_artifact(store, b"replace subject")
        other = attach_referrer(store, subject, "application/x.sbom")
        first = attach_referrer(store, subject, "application/x.index", created="2025-01-01T00:00:00Z")
        ours = lambda d: d.artifact_type == "application/x.index"  # noqa: E731
        second = attach_referrer(store, subject, "application/x.index", created="2025-01-02T00:00:00Z", replace=ours)
        found = [d.digest for d in store.referrers(subject)]
        assert second.digest in found and other.digest in found
        if isinstance(store, SupportsDelete):
            assert first.digest not in found
            for referrer in store.referrers(subject):  # nothing listed that is gone
                fetch_manifest(store, referrer)
        assert newest_referrer(store, subject, "application/x.index") == second


def _json(desc: Descriptor) -> bytes:
    import json

    return json.dumps(desc.to_dict()).encode()
