"""Build real (small) OCI images for tests: tar+gzip layers and a proper image config.

Layers are genuine tar archives compressed with gzip, the config carries ``rootfs.diff_ids``,
so skopeo, umoci and container runtimes accept the result.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping

from ..content.base import Store, push_bytes, push_manifest
from ..digest import digest_bytes
from ..spec import mediatypes as mt
from ..spec.descriptor import Descriptor
from ..spec.manifest import build_manifest, canonical_json


def tar_bytes(files: Mapping[str, bytes], mtime: int = 1_700_000_000) -> bytes:
    """A tar archive of regular files (parents created implicitly by extractors)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, mtime
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def make_image(
    store: Store,
    layers: list[Mapping[str, bytes]],
    tag: str = "",
    gzip_level: int = 6,
    architecture: str = "amd64",
    annotations: Mapping[str, str] | None = None,
) -> Descriptor:
    """Push an image with one tar+gzip layer per mapping; return the manifest descriptor."""
    layer_descs, diff_ids = [], []
    for files in layers:
        raw_tar = tar_bytes(files)
        diff_ids.append(digest_bytes(raw_tar))
        compressed = gzip.compress(raw_tar, compresslevel=gzip_level, mtime=0)
        layer_descs.append(push_bytes(store, mt.OCI_LAYER_GZIP, compressed))
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }
    config_desc = push_bytes(store, mt.OCI_CONFIG, canonical_json(config))
    raw = build_manifest(layer_descs, config=config_desc, annotations=annotations)
    return push_manifest(store, raw, tag=tag)

