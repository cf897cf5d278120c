"""The OCI image-layout store: conformance suite plus layout-specific behaviour."""

import json
import os
import subprocess
import sys

import pytest

from ocikit.content.layout import LayoutStore
from ocikit.errors import NotFoundError
from ocikit.spec import mediatypes as mt
from ocikit.testing.store_tests import StoreTests, make_artifact


class TestLayoutStoreConformance(StoreTests):
    @pytest.fixture
    def store(self, layout_dir):
        return LayoutStore(layout_dir)


def test_layout_files_follow_the_spec(layout_dir):
    store = LayoutStore(layout_dir)
    manifest = make_artifact(store)
    store.tag(manifest, "v1")
    with open(os.path.join(layout_dir, "oci-layout")) as fh:
        assert json.load(fh) == {"imageLayoutVersion": "1.0.0"}
    with open(os.path.join(layout_dir, "index.json")) as fh:
        index = json.load(fh)
    assert index["schemaVersion"] == 2 and index["mediaType"] == mt.OCI_INDEX
    assert index["manifests"][0]["annotations"][mt.ANNOTATION_REF_NAME] == "v1"
    assert os.path.isfile(os.path.join(layout_dir, "blobs", "sha256", manifest.digest.split(":")[1]))
    assert not os.path.exists(os.path.join(layout_dir, ".ingest"))


def test_open_missing_layout_without_create(tmp_path):
    with pytest.raises(NotFoundError):
        LayoutStore(str(tmp_path / "missing"), create=False)


def test_resolve_without_reference_picks_the_only_manifest(layout_dir):
    store = LayoutStore(layout_dir)
    manifest = make_artifact(store)
    store.tag(manifest, "only")
    assert store.resolve("").digest == manifest.digest


_CONCURRENT_TAGGER = """
import sys
from ocikit.content.layout import LayoutStore
from ocikit.testing.store_tests import make_artifact
store = LayoutStore(sys.argv[1])
for i in range(20):
    store.tag(make_artifact(store, f"{sys.argv[2]}-{i}".encode()), f"{sys.argv[2]}-{i}")
"""


def test_concurrent_processes_do_not_lose_tags(layout_dir):
    LayoutStore(layout_dir)
    procs = [
        subprocess.Popen([sys.executable, "-c", _CONCURRENT_TAGGER, layout_dir, name]) for name in ("p", "q", "r")
    ]
    assert [p.wait() for p in procs] == [0, 0, 0]
    tags = LayoutStore(layout_dir).tags()
    assert len(tags) == 60
