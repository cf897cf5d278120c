"""A reference without a tag means ``latest`` — for push and pull, registry and layout alike.

And a manifest with a ``subject`` (a referrer: the compatibility metadata push-view attaches,
a signature) is never what a tag-less layout reference resolves to. Layouts written by
skopeo (untagged) and umoci (tagged) keep resolving as they did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from environment import require_binary

import ocikit
from ocikit.content.layout import LayoutStore
from ocikit.errors import NotFoundError
from ocikit.reference import parse_reference
from ocikit.spec import mediatypes as mt
from ocikit.testing.images import make_image

OCIKIT = os.path.join(os.path.dirname(sys.executable), "ocikit")


def _view(tmp_path) -> str:
    view = tmp_path / "view"
    (view / "bin").mkdir(parents=True)
    (view / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (view / "share").mkdir()
    (view / "share" / "data.txt").write_text("payload\n")
    return str(view)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OCIKIT, *args], capture_output=True, text=True, timeout=300)


def _tags(layout: str) -> dict[str, str]:
    with open(os.path.join(layout, "index.json")) as fh:
        entries = json.load(fh)["manifests"]
    return {e["annotations"][mt.ANNOTATION_REF_NAME]: e["digest"] for e in entries if e.get("annotations")}


def test_reference_rule():
    for text in ("oci:/x", "localhost:5000/x"):
        ref = parse_reference(text)
        assert (ref.reference, ref.push_tag) == ("latest", "latest")
    pinned = parse_reference("oci:/x@sha256:" + "a" * 64)
    assert pinned.reference == pinned.digest and pinned.push_tag == ""
    assert parse_reference("oci:/x:v1").push_tag == "v1"


def test_cli_push_view_then_pull_a_tagless_layout(tmp_path):
    layout = str(tmp_path / "layout")
    pushed = _cli("push-view", _view(tmp_path), f"oci:{layout}")
    assert pushed.returncode == 0, pushed.stderr
    assert "latest" in _tags(layout)
    dest = tmp_path / "dest"
    pulled = _cli("pull", f"oci:{layout}", str(dest), "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["digest"] == _tags(layout)["latest"]
    assert (dest / "share" / "data.txt").read_text() == "payload\n"
    assert (dest / "bin" / "tool").exists()


def test_api_push_view_tags_latest_on_a_registry(tmp_path, registry):
    result = ocikit.push_view(_view(tmp_path), f"{registry}/latest/app")
    assert ocikit.resolve(f"{registry}/latest/app:latest").digest == result.digest
    pulled = ocikit.pull(f"{registry}/latest/app", str(tmp_path / "dest"))
    assert pulled.digest == result.digest and pulled.files == 2


def test_copy_between_tagless_layouts_tags_latest(tmp_path):
    source, target = str(tmp_path / "source"), str(tmp_path / "target")
    result = ocikit.push_view(_view(tmp_path), f"oci:{source}")
    ocikit.copy(f"oci:{source}", f"oci:{target}")
    assert _tags(target) == {"latest": result.digest}


def test_tagless_layout_reference_never_resolves_to_a_referrer(tmp_path):
    layout = str(tmp_path / "layout")
    store = LayoutStore(layout)
    image = make_image(store, [{"etc/hello": b"hello\n"}])  # untagged, as skopeo writes oci:DIR
    store.tag(image, "scratch")
    ocikit.attach(f"oci:{layout}:scratch", "application/vnd.example.signature")
    index = os.path.join(layout, "index.json")
    with open(index) as fh:
        document = json.load(fh)
    document["manifests"].reverse()  # the referrer first, the image second, untagged
    for entry in document["manifests"]:
        entry.pop("annotations", None)
    with open(index, "w") as fh:
        json.dump(document, fh)
    assert ocikit.resolve(f"oci:{layout}").digest == image.digest


def test_a_layout_of_referrers_only_is_refused(tmp_path):
    layout = str(tmp_path / "layout")
    assert _cli("push-view", _view(tmp_path), f"oci:{layout}:v1").returncode == 0
    with open(os.path.join(layout, "index.json")) as fh:
        document = json.load(fh)
    view_digest = _tags(layout)["v1"]
    document["manifests"] = [e for e in document["manifests"] if not e.get("annotations")]  # what old push-view left
    with open(os.path.join(layout, "index.json"), "w") as fh:
        json.dump(document, fh)
    pulled = _cli("pull", f"oci:{layout}", str(tmp_path / "dest"))
    assert pulled.returncode == 3, pulled.stderr
    assert pulled.stderr.count("\n") == 1 and f"only referrers (of {view_digest})" in pulled.stderr
    assert not (tmp_path / "dest").exists()


def test_several_images_without_latest_is_refused_naming_the_tags(tmp_path):
    store = LayoutStore(str(tmp_path / "layout"))
    store.tag(make_image(store, [{"a": b"1"}]), "v1")
    store.tag(make_image(store, [{"a": b"2"}]), "v2")
    with pytest.raises(NotFoundError, match=r"holds 2 images \(tags: v1, v2\)"):
        store.resolve("")
    store.tag(make_image(store, [{"a": b"3"}]), "latest")
    assert store.resolve("") == store.resolve("latest")


def test_skopeo_untagged_layout_resolves_to_its_only_image(tmp_path):
    require_binary("skopeo")
    source = str(tmp_path / "source")
    image = make_image(LayoutStore(source), [{"etc/hello": b"hello\n"}], tag="v1")
    target = str(tmp_path / "skopeo")
    subprocess.run(["skopeo", "copy", f"oci:{source}:v1", f"oci:{target}"], check=True, capture_output=True)
    assert _tags(target) == {}  # skopeo wrote no ref.name
    assert ocikit.resolve(f"oci:{target}").digest == image.digest


def test_umoci_latest_tag_wins_over_other_images(tmp_path):
    require_binary("umoci")
    layout = str(tmp_path / "umoci")
    subprocess.run(["umoci", "init", "--layout", layout], check=True, capture_output=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:latest"], check=True, capture_output=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:other"], check=True, capture_output=True)
    ocikit.attach(f"oci:{layout}:latest", "application/vnd.example.signature")
    tags = _tags(layout)
    assert tags["latest"] != tags["other"]
    assert ocikit.resolve(f"oci:{layout}").digest == tags["latest"]
