"""Build real images whose layers overlap in known ways (helper for the similarity tests).

A layer is a real tar archive (``ocikit.testing.images.tar_bytes``, fixed mtime so the
bytes are reproducible) holding one text file, gzip-compressed at a chosen level with mtime 0. The
config lists the true ``diff_ids`` (sha256 of the uncompressed tar). The same layer name
compressed at level 1 and level 9 gives two different blobs with one diff_id — the case
``by="diff-id"`` exists for.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass

from ocikit.content.base import Store, push_bytes, push_manifest
from ocikit.spec import mediatypes as mt
from ocikit.spec.descriptor import Descriptor, Platform
from ocikit.spec.manifest import build_index, build_manifest
from ocikit.testing.images import tar_bytes


@dataclass(frozen=True)
class Layer:
    name: str
    desc: Descriptor  # the compressed blob
    diff_id: str


def layer_tar(name: str) -> bytes:
    """A tar with ``<name>.txt``; the text differs in content and length from name to name."""
    words = [hashlib.sha256(f"{name}/{i}".encode()).hexdigest()[:6] for i in range(40)]
    text = (" ".join(words) + "\n").encode() * (20 + 7 * len(name))
    return tar_bytes({f"{name}.txt": text}, mtime=0)


def make_layer(store: Store, name: str, level: int = 6) -> Layer:
    raw = layer_tar(name)
    blob = gzip.compress(raw, compresslevel=level, mtime=0)
    desc = push_bytes(store, mt.OCI_LAYER_GZIP, blob)
    return Layer(name, desc, "sha256:" + hashlib.sha256(raw).hexdigest())


def push_image(store: Store, layers: list[Layer], tag: str = "", architecture: str = "amd64") -> Descriptor:
    """Push config + manifest (layers must already be in ``store``); tag it if asked."""
    config = {
        "architecture": architecture,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "config": {},
        "history": [{"created_by": f"ADD {layer.name}"} for layer in layers],
    }
    config_desc = push_bytes(store, mt.OCI_CONFIG, json.dumps(config, sort_keys=True).encode())
    raw = build_manifest([layer.desc for layer in layers], config=config_desc)
    return push_manifest(store, raw, mt.OCI_MANIFEST, tag=tag)


def push_index(store: Store, manifests: dict[str, Descriptor], tag: str) -> Descriptor:
    """An index with one manifest per ``"os/arch"`` key."""
    entries = [
        Descriptor(desc.media_type, desc.digest, desc.size, platform=Platform.parse(platform))
        for platform, desc in manifests.items()
    ]
    return push_manifest(store, build_index(entries), mt.OCI_INDEX, tag=tag)
